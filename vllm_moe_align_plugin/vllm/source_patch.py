"""Static patches of a vLLM tree: find it, read its version, check, apply, revert.

The change (the same for every vLLM line; only the diff context differs) adds
one guarded block per function the plugin replaces (a ``Site``):

- ``vllm/model_executor/layers/fused_moe/moe_align_block_size.py``: at the end
  of the file, rebinding the module's ``moe_align_block_size``;
- ``vllm/_custom_ops.py``: right after the op-level ``moe_align_block_size``;
- in vLLM >= 0.33 also ``fused_globalize_align_block_size``: at the end of
  ``vllm/model_executor/layers/fused_moe/fused_globalize_align_block_size.py``
  and right after its op-level wrapper in ``vllm/_custom_ops.py``.

Each block imports ``vllm_moe_align_plugin.vllm.source_hook`` and, when that import
fails, does nothing, so a patched vLLM without this package behaves as before.

Rules (every refusal raises :class:`PatchError` with a message naming the file
and the reason):

- ``apply`` needs every file pristine: no block of ours, each definition found,
  and its parameters exactly those of the tree's contract line
  (``contract.contract_for_vllm`` of the tree's version, ``contract.parameters``);
  on a tree already patched it changes nothing and says so.
- ``revert`` needs at least one file patched and none modified: it removes the
  block byte for byte (removing and re-adding it must give the file back).
- A file with our marker but not exactly our block where we put it, or one we
  cannot parse, is ``modified``; a file whose function has other parameters
  than the plugin's for the tree's line is ``unsupported``: both commands refuse.
- Writes are all-or-nothing: every new content is computed and written to
  temporary files first, then moved into place; a failure restores the files
  already replaced.

The shipped ``patches/*.patch`` files are what ``patches/make_patches.py``
makes from each line's reference release (``tests/test_patches.py`` checks
that they are).
"""

from __future__ import annotations

import ast
import difflib
import importlib.util
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ..contract import (
    GLOBALIZE_OP,
    GLOBALIZE_PYTHON,
    OP,
    PYTHON,
    REQUIRED,
    V0_9,
    V0_13,
    V0_17,
    V0_31,
    Contract,
    Param,
    contract_for_vllm,
    has_globalize,
    parameters_mismatch,
)
from .env import vllm_version

PY_FILE = "vllm/model_executor/layers/fused_moe/moe_align_block_size.py"
OPS_FILE = "vllm/_custom_ops.py"
GLOBALIZE_FILE = "vllm/model_executor/layers/fused_moe/fused_globalize_align_block_size.py"
NAME = "moe_align_block_size"
GLOBALIZE_NAME = "fused_globalize_align_block_size"


@dataclass(frozen=True)
class Site:
    """One function a patch rebinds: in file ``rel``, vLLM's ``name`` of
    ``kind`` (passed to source_hook.replacement). A module-level function's
    block goes at the end of its file; an op-level wrapper's right after it."""

    rel: str
    kind: str
    name: str

    @property
    def at_end(self) -> bool:
        return self.kind in (PYTHON, GLOBALIZE_PYTHON)


#: the sites of every vLLM line, in diff order, and those of vLLM >= 0.33
SITES = (Site(OPS_FILE, OP, NAME), Site(PY_FILE, PYTHON, NAME))
GLOBALIZE_SITES = (Site(OPS_FILE, GLOBALIZE_OP, GLOBALIZE_NAME),
                   Site(GLOBALIZE_FILE, GLOBALIZE_PYTHON, GLOBALIZE_NAME))
_NAMES = {site.kind: site.name for site in SITES + GLOBALIZE_SITES}


def sites_for(version: str) -> tuple[Site, ...]:
    """The functions a patch of vLLM ``version`` rebinds."""
    return SITES + (GLOBALIZE_SITES if has_globalize(version) else ())


def files_for(version: str) -> list[tuple[str, tuple[Site, ...]]]:
    """The files a patch of vLLM ``version`` changes, each with its sites, in
    diff order."""
    out: dict[str, list[Site]] = {}
    for site in sites_for(version):
        out.setdefault(site.rel, []).append(site)
    return [(rel, tuple(sites)) for rel, sites in out.items()]


BEGIN = "# >>> vllm-moe-align-plugin static patch >>>"
END = "# <<< vllm-moe-align-plugin static patch <<<"

PRISTINE, PATCHED, MODIFIED = "pristine", "patched", "modified"
#: a file with the blocks of some of its functions, not all
PARTLY = "partly patched"
#: a release file whose function has other parameters than the plugin's for its line
UNSUPPORTED = "unsupported"


class PatchError(Exception):
    """A refusal: the message says which tree or file and why."""


@dataclass(frozen=True)
class PatchLine:
    """One shipped patch file: the vLLM line it serves and what it was made from."""

    contract: Contract  # names the releases (``versions``) and the file (``patch_file``)
    reference: str  # the release the .patch file's context comes from
    verbatim: str  # the releases whose files match that context (checked with patch/git apply)


LINES = (
    PatchLine(V0_9, "0.10.0", "0.9.2 to 0.11.0"),
    PatchLine(V0_13, "0.13.0", "0.13.0 to 0.16.0"),
    PatchLine(V0_17, "0.26.0", "0.17.0 to 0.30.0"),
    PatchLine(V0_31, "0.33.0", "0.33.0 to 0.34.0"),
)


def line_for(contract: Contract) -> PatchLine:
    for line in LINES:
        if line.contract == contract:
            return line
    raise PatchError(f"no static patch for the {contract.name} contract")


# --------------------------------------------------------------------------- the block


def block(kind: str) -> str:
    """The lines a patch adds for the function of ``kind`` ("python", "op",
    "globalize_python" or "globalize_op")."""
    name = _NAMES[kind]
    return (
        f"{BEGIN}\n"
        "# Added by vllm-moe-align-plugin (its patches/README.md says how to revert):\n"
        f"# with that package importable, {name} is the plugin's;\n"
        "# without it, this block does nothing.\n"
        "try:\n"
        "    from vllm_moe_align_plugin.vllm.source_hook import replacement as _vmap_replacement\n"
        "except ImportError:\n"
        "    pass\n"
        "else:\n"
        f'    {name} = _vmap_replacement("{kind}", {name})\n'
        "    del _vmap_replacement\n"
        f"{END}\n"
    )


def _implementation(tree: ast.Module, name: str) -> Optional[ast.FunctionDef]:
    """The last top-level ``def name`` that is not an @overload stub."""
    found = None
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == name:
            names = {d.id if isinstance(d, ast.Name) else getattr(d, "attr", "") for d in
                     node.decorator_list}
            if "overload" not in names:
                found = node
    return found


def _insert(text: str, site: Site) -> str:
    """``text`` with the block of ``site`` added (a module-level function: at
    the end; an op-level wrapper: right after the function, before the two
    blank lines that follow it)."""
    if not text.endswith("\n"):
        raise PatchError(f"{site.rel}: does not end with a newline")
    if site.at_end:
        return text + "\n\n" + block(site.kind)
    fn = _implementation(ast.parse(text), site.name)
    if fn is None or fn.end_lineno is None:
        raise PatchError(f"{site.rel}: no top-level def {site.name} found")
    lines = text.splitlines(keepends=True)
    return ("".join(lines[: fn.end_lineno]) + "\n\n" + block(site.kind)
            + "".join(lines[fn.end_lineno:]))


def _insert_all(text: str, sites: tuple[Site, ...]) -> str:
    for site in sites:
        text = _insert(text, site)
    return text


def _ast_params(fn: ast.FunctionDef) -> tuple[Param, ...]:
    """The parameters of a ``def`` as ``contract.Param`` s (defaults are literals in
    every vLLM release)."""
    a = fn.args
    positional = a.posonlyargs + a.args
    defaults = [REQUIRED] * (len(positional) - len(a.defaults))
    defaults += [ast.literal_eval(d) for d in a.defaults]
    params = [Param(p.arg, d) for p, d in zip(positional, defaults)]
    if a.vararg is not None:
        params.append(Param(f"*{a.vararg.arg}"))
    params += [Param(p.arg, REQUIRED if d is None else ast.literal_eval(d), keyword_only=True)
               for p, d in zip(a.kwonlyargs, a.kw_defaults)]
    if a.kwarg is not None:
        params.append(Param(f"**{a.kwarg.arg}"))
    return tuple(params)


def _signature_problem(text: str, site: Site, contract: Contract) -> Optional[str]:
    """None when vLLM's function has the parameters of ``contract``'s line;
    otherwise what differs."""
    fn = _implementation(ast.parse(text), site.name)
    if fn is None:
        return f"no top-level def {site.name}"
    mismatch = parameters_mismatch(_ast_params(fn), contract, site.kind)
    return None if mismatch is None else f"its {site.name} differs: {mismatch}"


# --------------------------------------------------------------------------- state of a tree


@dataclass
class FileState:
    rel: str
    sites: tuple[Site, ...]
    status: str  # PRISTINE | PATCHED | MODIFIED | UNSUPPORTED
    detail: str
    text: str = ""
    patched_text: str = ""  # the file with the block
    pristine_text: str = ""  # the file without it


@dataclass
class Target:
    """A vLLM tree: ``root`` holds ``vllm/``."""

    root: Path
    version: str
    version_source: str
    contract: Contract
    line: PatchLine
    files: list[FileState] = field(default_factory=list)

    def status(self) -> str:
        """PRISTINE or PATCHED when every file is; MODIFIED (else UNSUPPORTED)
        when any file is; "half-patched" otherwise (a PARTLY patched file
        included)."""
        states = {f.status for f in self.files}
        for bad in (MODIFIED, UNSUPPORTED):
            if bad in states:
                return bad
        if len(states) == 1 and PARTLY not in states:
            return states.pop()
        return "half-patched"


def _inspect_file(root: Path, rel: str, sites: tuple[Site, ...], contract: Contract) -> FileState:
    path = root / rel
    if not path.is_file():
        return FileState(rel, sites, MODIFIED, f"{path} does not exist")
    try:
        text = path.read_bytes().decode("utf-8")
        ast.parse(text)
    except (UnicodeDecodeError, SyntaxError) as exc:
        return FileState(rel, sites, MODIFIED, f"cannot be parsed ({type(exc).__name__}: {exc})")
    marks = text.count(BEGIN)
    if marks == 0:
        try:
            patched = _insert_all(text, sites)
        except PatchError as exc:
            return FileState(rel, sites, MODIFIED, str(exc), text)
        for site in sites:
            problem = _signature_problem(text, site, contract)
            if problem is not None:
                return FileState(rel, sites, UNSUPPORTED, problem, text)
        return FileState(rel, sites, PRISTINE, "no static patch", text, patched, text)
    padded = {site: "\n\n" + block(site.kind) for site in sites}
    present = tuple(site for site in sites if padded[site] in text)
    if marks == len(present) and all(text.count(padded[site]) == 1 for site in present):
        original = text
        for site in present:
            original = original.replace(padded[site], "", 1)
        try:
            again = _insert_all(original, present)
        except PatchError:
            again = None
        if again == text:
            if len(present) == len(sites):
                return FileState(rel, sites, PATCHED, "static patch in place", text, text,
                                 original)
            # e.g. patched by a plugin version that did not rebind every function yet
            names = ", ".join(site.name for site in present)
            return FileState(rel, sites, PARTLY, f"static patch in place for {names} only", text,
                             "", original)
    return FileState(rel, sites, MODIFIED,
                     "has the static patch marker but not exactly the blocks this plugin "
                     "writes, where it writes them (edited by hand or by another version?)", text)


# --------------------------------------------------------------------------- finding the tree

def find_root(path: Optional[str]) -> Path:
    """The directory holding the ``vllm`` package: of the installed vLLM when
    ``path`` is None; else ``path`` itself (a source tree or site-packages) or
    its parent when ``path`` is the ``vllm`` package directory."""
    if path is None:
        spec = importlib.util.find_spec("vllm")
        if spec is None or not spec.submodule_search_locations:
            raise PatchError("vLLM is not installed in this Python environment; pass the path "
                             "of a vLLM tree (the directory that contains vllm/)")
        return Path(list(spec.submodule_search_locations)[0]).resolve().parent
    p = Path(path).resolve()
    if (p / OPS_FILE).is_file():
        return p
    if p.name == "vllm" and (p / "_custom_ops.py").is_file():
        return p.parent
    raise PatchError(f"{p} is not a vLLM tree: neither {p / OPS_FILE} nor {p / '_custom_ops.py'} "
                     "exists")


def load_target(path: Optional[str] = None, version: Optional[str] = None) -> Target:
    """The tree at ``path`` (installed vLLM if None) with its files inspected.
    ``version`` overrides the version read from the tree."""
    root = find_root(path)
    if version is not None:
        found: Optional[tuple[str, str]] = (version, "--vllm-version")
    else:
        found = vllm_version(root)
    if found is None:
        raise PatchError(f"cannot read the vLLM version of {root} (no vllm/_version.py, PKG-INFO "
                         "or single vllm-*.dist-info); pass --vllm-version")
    contract = contract_for_vllm(found[0])
    if contract is None:
        known = ", ".join(line.contract.versions for line in LINES)
        raise PatchError(f"vLLM {found[0]} at {root} (from {found[1]}) is not a version this "
                         f"plugin has a patch for (known: {known})")
    target = Target(root, found[0], found[1], contract, line_for(contract))
    target.files = [_inspect_file(root, rel, sites, contract)
                    for rel, sites in files_for(found[0])]
    return target


# --------------------------------------------------------------------------- writing


def _write_all(root: Path, contents: dict[str, tuple[str, str]]) -> None:
    """Replaces every file ``rel -> (old, new)`` or none: temporary files first,
    then ``os.replace``; on a failure the files already replaced get ``old`` back."""
    temps: dict[str, str] = {}
    done: list[str] = []
    current = ""
    try:
        for rel, (_, new) in contents.items():
            current = rel
            path = root / rel
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".vmap", dir=path.parent)
            temps[rel] = tmp
            with os.fdopen(fd, "wb") as f:
                f.write(new.encode("utf-8"))
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        for rel in contents:
            current = rel
            os.replace(temps[rel], root / rel)
            del temps[rel]
            done.append(rel)
    except OSError as exc:
        for rel in done:  # files this call created (os.replace), so written in place
            (root / rel).write_bytes(contents[rel][0].encode("utf-8"))
        raise PatchError(f"could not write {root / current} ({exc}); no file was changed") from exc
    finally:
        for tmp in temps.values():
            if os.path.exists(tmp):
                os.unlink(tmp)


def _describe(target: Target) -> str:
    return "; ".join(f"{f.rel}: {f.status} ({f.detail})" for f in target.files)


def unified_diff(target: Target) -> str:
    """The git-style unified diff (paths ``a/vllm/...``, ``b/vllm/...``; apply
    with ``patch -p1`` or ``git apply`` in the directory holding ``vllm/``) of
    the change ``apply`` makes to ``target``: from its files as they are when
    pristine, to them as they are when patched. Refuses any other tree."""
    status = target.status()
    if status not in (PRISTINE, PATCHED):
        raise PatchError(f"vLLM {target.version} at {target.root} is {status}, no diff to show: "
                         f"{_describe(target)}")
    out = []
    for f in target.files:
        before, after = (f.text, f.patched_text) if status == PRISTINE else (f.pristine_text, f.text)
        out.append(f"diff --git a/{f.rel} b/{f.rel}\n")
        out.extend(difflib.unified_diff(before.splitlines(keepends=True),
                                        after.splitlines(keepends=True),
                                        fromfile=f"a/{f.rel}", tofile=f"b/{f.rel}", n=3))
    return "".join(out)


def apply(target: Target) -> list[str]:
    """Patches every file; returns their paths, or [] when the tree is already
    patched. Refuses any other tree that is not pristine."""
    status = target.status()
    if status == PATCHED:
        return []
    if status != PRISTINE:
        what = {PATCHED: "already patched", MODIFIED: "modified", UNSUPPORTED: "unsupported",
                "half-patched": "half-patched"}.get(status, status)
        raise PatchError(f"vLLM {target.version} at {target.root} is {what}, not patching it: "
                         f"{_describe(target)}")
    _write_all(target.root, {f.rel: (f.text, f.patched_text) for f in target.files})
    return [str(target.root / f.rel) for f in target.files]


def revert(target: Target) -> list[str]:
    """Removes the block from every patched file; returns their paths. Refuses
    when no file is patched or any file is modified."""
    status = target.status()
    if status in (PRISTINE, MODIFIED, UNSUPPORTED):
        what = "not patched" if status == PRISTINE else status
        raise PatchError(f"vLLM {target.version} at {target.root} is {what}, nothing reverted: "
                         f"{_describe(target)}")
    patched = [f for f in target.files if f.status in (PATCHED, PARTLY)]
    _write_all(target.root, {f.rel: (f.text, f.pristine_text) for f in patched})
    return [str(target.root / f.rel) for f in patched]
