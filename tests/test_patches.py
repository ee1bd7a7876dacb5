"""The static vLLM patches (patches/, vllm_moe_align_plugin.vllm.source_patch, source_hook).

- A copy of the installed vLLM is patched with `vllm-moe-align patch apply`,
  imported in a subprocess with VLLM_PLUGINS="" (the runtime plugin off), and
  vLLM's three bindings of moe_align_block_size (and in vLLM >= 0.33 the two
  of fused_globalize_align_block_size) must return the plugin's results on
  CPU tensors (vLLM's own ops have no CPU kernel); without the plugin
  importable the patched vLLM must behave as before; revert restores the files
  byte for byte.
- Refusals (already patched, not patched, modified, half-patched, unsupported,
  unknown version, failed write) leave every file untouched.
- Each shipped .patch applies (`patch`, `git apply`) to its line's reference
  release sdist from PyPI (cached in .cache/vllm-sdists/), gives exactly what
  `patch apply` gives, and is what patches/make_patches.py makes.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Callable

import pytest

from patches import make_patches
from vllm_moe_align_plugin import cli
from vllm_moe_align_plugin.contract import V0_31
from vllm_moe_align_plugin.vllm import source_hook, source_patch
from vllm_moe_align_plugin.vllm.env import running_vllm_version as installed_vllm_version

REPO = Path(__file__).resolve().parents[1]
PATCHES = REPO / "patches"
#: every file a patch may touch (the globalize one only in vLLM >= 0.33)
TARGETS = (source_patch.OPS_FILE, source_patch.PY_FILE, source_patch.GLOBALIZE_FILE)


def digests(root: Path) -> dict[str, str]:
    return {rel: hashlib.sha256((root / rel).read_bytes()).hexdigest() for rel in TARGETS
            if (root / rel).is_file()}


def run_cli(*args: str) -> tuple[int, str]:
    """(exit code, stdout + stderr) of `vllm-moe-align patch ...` run in-process."""
    import contextlib
    import io

    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out):
        rc = cli.main(["patch", *args])
    return rc, out.getvalue()


def installed_vllm_dir() -> Path:
    spec = importlib.util.find_spec("vllm")
    assert spec is not None and spec.submodule_search_locations
    return Path(list(spec.submodule_search_locations)[0])


def small_tree(dest: Path) -> Path:
    """The installed vLLM's files a patch touches and its _version.py under ``dest``."""
    src = installed_vllm_dir()
    for rel in (*TARGETS, "vllm/_version.py"):
        if not (src / rel[len("vllm/"):]).is_file():
            continue
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / rel[len("vllm/"):], out)
    return dest


# --------------------------------------------------------------------------- real vLLM, patched

PROBE = r"""
import json, logging, sys
logging.basicConfig(level=logging.INFO)
if sys.argv[2] == "blocked":
    sys.modules["vllm_moe_align_plugin"] = None  # as if the package were not installed
import torch
import vllm
report = {"vllm_file": vllm.__file__, "version": vllm.__version__}
from vllm.model_executor.layers.fused_moe import moe_align_block_size as defining
from vllm.model_executor.layers.fused_moe import fused_moe
import vllm._custom_ops as ops
ids = torch.randint(0, 64, (37, 8), generator=torch.Generator().manual_seed(3))
def run(name, call):
    try:
        report[name] = [t.tolist() for t in call()]
    except Exception as exc:
        report[name] = "error: " + type(exc).__name__
def op_level():
    size = ids.numel() + 64 * 15
    out = (torch.empty(size, dtype=torch.int32), torch.empty((size + 15) // 16, dtype=torch.int32),
           torch.empty(1, dtype=torch.int32))
    ops.moe_align_block_size(ids, 64, 16, *out)
    return out
run("python", lambda: defining.moe_align_block_size(ids, 16, 64))
run("fused_moe", lambda: fused_moe.moe_align_block_size(ids, 16, 64))
run("op", op_level)
GLOBALIZE = hasattr(ops, "fused_globalize_align_block_size")
report["globalize"] = GLOBALIZE
local = torch.randint(-1, 8, (6, 4), generator=torch.Generator().manual_seed(5))
psum = torch.tensor([2, 5], dtype=torch.int32)
ints = (8, 32, 8, 4)  # rank_expert_offset, global and local experts, block_size
def globalize_op():
    ids = local.clone()
    size = ids.numel() + 8 * 3
    out = (torch.empty(size, dtype=torch.int32), torch.empty((size + 3) // 4, dtype=torch.int32),
           torch.empty(1, dtype=torch.int32), torch.empty((ids.numel(), 1), dtype=torch.int32))
    ops.fused_globalize_align_block_size(ids, psum, *ints, *out)
    return (ids, *out)
if GLOBALIZE:
    from vllm.model_executor.layers.fused_moe import fused_globalize_align_block_size as gmod
    run("globalize_python",
        lambda: gmod.fused_globalize_align_block_size(local.clone(), psum, *ints, True))
    run("globalize_op", globalize_op)
if sys.argv[2] != "blocked":
    from vllm_moe_align_plugin.contract import contract_for_vllm
    from vllm_moe_align_plugin.reference import moe_align_block_size_reference
    from vllm_moe_align_plugin.vllm.runtime import is_registered
    want = moe_align_block_size_reference(ids, 16, 64, contract=contract_for_vllm(vllm.__version__))
    report["want"] = [t.tolist() for t in want]
    report["plugin_registered"] = is_registered()
    if GLOBALIZE:
        from vllm_moe_align_plugin.globalize_reference import (
            fused_globalize_align_block_size_reference as gref,
        )
        report["want_globalize"] = [t.tolist() for t in gref(local.clone(), psum, *ints, True)]
print("PROBE-JSON " + json.dumps(report))
"""


def probe(root: Path, mode: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "VLLM_MOE_ALIGN_DISABLE"}
    env.update(VLLM_PLUGINS="", CUDA_VISIBLE_DEVICES="",
               PYTHONPATH=os.pathsep.join([str(root), env.get("PYTHONPATH", "")]).rstrip(os.pathsep))
    proc = subprocess.run([sys.executable, "-c", PROBE, str(root), mode], env=env, cwd=root,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE-JSON "))
    report = json.loads(line[len("PROBE-JSON "):])
    report["log"] = proc.stdout + proc.stderr
    return report


@pytest.fixture(scope="module")
def vllm_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The whole installed vLLM package under a new root: files hard-linked
    where possible (patching replaces files, never writes into them), the
    patched files real copies."""
    root = tmp_path_factory.mktemp("vllm-copy")

    def link_or_copy(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    shutil.copytree(installed_vllm_dir(), root / "vllm", copy_function=link_or_copy,
                    ignore=shutil.ignore_patterns("__pycache__"))
    for rel in TARGETS:
        path = root / rel
        if not path.is_file():
            continue
        data = path.read_bytes()
        path.unlink()
        path.write_bytes(data)
    return root


@pytest.mark.vllm
@pytest.mark.skipif(installed_vllm_version() is None, reason="vLLM is not installed")
def test_patched_vllm_copy_uses_the_plugin_without_plugins(vllm_copy: Path) -> None:
    root = vllm_copy
    before = digests(root)
    rc, out = run_cli("check", str(root))
    assert rc == 0 and "state: pristine" in out, out
    rc, out = run_cli("apply", str(root))
    assert rc == 0, out
    assert digests(root) != before
    rc, out = run_cli("check", str(root))
    assert rc == 0 and "state: patched" in out, out

    report = probe(root, "plugin")
    assert report["vllm_file"].startswith(str(root)), report["vllm_file"]
    assert report["plugin_registered"] is False
    for name in ("python", "fused_moe", "op"):
        assert report[name] == report["want"], (name, report[name])
    sites = 4 if report["globalize"] else 2
    if report["globalize"]:
        for name in ("globalize_python", "globalize_op"):
            assert report[name] == report["want_globalize"], (name, report[name])
    assert report["log"].count("static patch:") == sites, report["log"][-3000:]
    assert report["log"].count(f"replaced (vLLM {report['version']}") == sites, report["log"][-3000:]

    # Without the package the patched vLLM is vLLM: its own ops, which have no CPU kernel.
    blocked = probe(root, "blocked")
    assert blocked["vllm_file"].startswith(str(root))
    names = ("python", "fused_moe", "op") + (("globalize_python", "globalize_op")
                                             if blocked["globalize"] else ())
    for name in names:
        assert isinstance(blocked[name], str) and blocked[name].startswith("error: "), name
    assert "static patch:" not in blocked["log"]

    rc, out = run_cli("revert", str(root))
    assert rc == 0, out
    assert digests(root) == before
    rc, out = run_cli("check", str(root))
    assert rc == 0 and "state: pristine" in out, out


@pytest.mark.vllm
@pytest.mark.skipif(installed_vllm_version() is None, reason="vLLM is not installed")
def test_check_on_the_installed_vllm() -> None:
    rc, out = run_cli("check")
    assert rc == 0, out
    assert f"vLLM {installed_vllm_version()} at {installed_vllm_dir().parent}" in out
    assert "state: pristine" in out or "state: patched" in out


# --------------------------------------------------------------------------- refusals


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    if installed_vllm_version() is None:
        pytest.skip("vLLM is not installed")
    return small_tree(tmp_path / "tree")


@pytest.mark.vllm
def test_apply_twice_is_a_no_op(tree: Path) -> None:
    assert run_cli("apply", str(tree))[0] == 0
    after = digests(tree)
    rc, out = run_cli("apply", str(tree))
    assert rc == 0 and "already applied" in out, out
    assert digests(tree) == after


@pytest.mark.vllm
def test_revert_pristine_refuses(tree: Path) -> None:
    before = digests(tree)
    rc, out = run_cli("revert", str(tree))
    assert rc == 1 and "is not patched, nothing reverted" in out, out
    assert digests(tree) == before


@pytest.mark.vllm
@pytest.mark.parametrize("state", ["pristine", "patched"])
def test_edited_block_is_modified_and_both_commands_refuse(tree: Path, state: str) -> None:
    run_cli("apply", str(tree))
    path = tree / source_patch.PY_FILE
    path.write_text(path.read_text().replace("pass\n", "pass  # edited\n"))
    if state == "pristine":  # the other file reverted by hand: marker only in the edited one
        ops = tree / source_patch.OPS_FILE
        ops.write_text(ops.read_text().replace("\n\n" + source_patch.block("op"), ""))
    before = digests(tree)
    for action in ("apply", "revert", "check"):
        rc, out = run_cli(action, str(tree))
        assert rc == 1, out
        assert "modified" in out and source_patch.PY_FILE in out, out
    assert digests(tree) == before


@pytest.mark.vllm
@pytest.mark.parametrize("removed", [("op", "globalize_op"), ("op",)],
                         ids=["ops-file-pristine", "ops-file-partly"])
def test_half_patched_tree_refuses_apply_and_reverts(tree: Path, removed: tuple[str, ...]) -> None:
    """Some blocks gone (by hand, or a tree patched by a plugin version that
    rebound fewer functions): apply refuses, revert restores every file."""
    pristine = digests(tree)
    run_cli("apply", str(tree))
    ops = tree / source_patch.OPS_FILE
    if "globalize_op" not in ops.read_text() and len(removed) == 1:
        pytest.skip("this vLLM has one block in _custom_ops.py")
    for kind in removed:
        ops.write_text(ops.read_text().replace("\n\n" + source_patch.block(kind), ""))
    rc, out = run_cli("apply", str(tree))
    assert rc == 1 and "half-patched" in out, out
    rc, out = run_cli("revert", str(tree))
    assert rc == 0, out
    assert digests(tree) == pristine


@pytest.mark.vllm
def test_signature_of_another_line_is_unsupported(tree: Path) -> None:
    before = digests(tree)
    rc, out = run_cli("apply", str(tree), "--vllm-version", "0.26.0")
    assert rc == 1 and "unsupported" in out and "vllm 0.17-0.30 contract" in out, out
    assert digests(tree) == before


@pytest.mark.vllm
def test_unknown_version_and_not_a_tree_refuse(tree: Path, tmp_path: Path) -> None:
    rc, out = run_cli("check", str(tree), "--vllm-version", "0.99.0")
    assert rc == 1 and "vLLM 0.99.0" in out and "not a version this plugin has a patch for" in out
    (tree / "vllm" / "_version.py").unlink()
    rc, out = run_cli("apply", str(tree))
    assert rc == 1 and "cannot read the vLLM version" in out, out
    rc, out = run_cli("check", str(tmp_path / "nowhere"))
    assert rc == 1 and "is not a vLLM tree" in out, out


@pytest.mark.vllm
def test_vllm_package_dir_is_accepted(tree: Path) -> None:
    rc, out = run_cli("check", str(tree / "vllm"))
    assert rc == 0 and f"at {tree}" in out, out


@pytest.mark.vllm
def test_failed_write_leaves_both_files_untouched(tree: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    before = digests(tree)
    real_replace = os.replace
    calls = []

    def second_fails(src: str, dst: str) -> None:
        calls.append(dst)
        if len(calls) == 2:
            raise PermissionError(13, "Permission denied", str(dst))
        real_replace(src, dst)

    monkeypatch.setattr(source_patch.os, "replace", second_fails)
    rc, out = run_cli("apply", str(tree))
    assert rc == 1 and "no file was changed" in out and "Permission denied" in out, out
    assert len(calls) == 2
    assert digests(tree) == before
    leftovers = [p for p in tree.rglob("*") if p.name.endswith(".vmap")]
    assert leftovers == []


# --------------------------------------------------------------------------- source_hook


#: releases whose op and globalize signatures the stand-ins below copy
SAME_SIGNATURES = ("0.33.0", "0.34.0")


def _op_like(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,  # type: ignore[no-untyped-def]
             num_tokens_post_pad, expert_map=None, scatter_idx=None):
    raise AssertionError("not called")


def _op_other(topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,  # type: ignore[no-untyped-def]
              num_tokens_post_pad, expert_map=None, extra=None):
    raise AssertionError("not called")


@pytest.mark.vllm
@pytest.mark.skipif(installed_vllm_version() not in SAME_SIGNATURES,
                    reason="signatures below are those of SAME_SIGNATURES' releases")
@pytest.mark.parametrize(
    "kind,original,env,replaced",
    [("op", _op_like, {}, True),
     ("op", _op_other, {}, False),
     ("op", _op_like, {"VLLM_MOE_ALIGN_DISABLE": "1"}, False),
     ("nonsense", _op_like, {}, False)],
    ids=["same-signature", "other-signature", "disabled", "unknown-kind"],
)
def test_replacement_falls_back_to_the_original(
    kind: str, original: Callable, env: dict, replaced: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("VLLM_MOE_ALIGN_DISABLE", raising=False)
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    fn = source_hook.replacement(kind, original)
    assert (fn is not original) == replaced
    if replaced:
        assert fn.__module__ == "vllm_moe_align_plugin.api"


def _globalize_op_like(topk_idx, psum, rank_expert_offset, global_num_experts,  # type: ignore[no-untyped-def]
                       local_num_experts, block_size, sorted_ids, expert_ids,
                       num_tokens_post_pad, scatter_idx=None):
    raise AssertionError("not called")


def _globalize_like(recv_topk_idx, psum_recv_per_rank, rank_expert_offset,  # type: ignore[no-untyped-def]
                    global_num_experts, local_num_experts, block_size, return_scatter_idx=False):
    raise AssertionError("not called")


@pytest.mark.vllm
@pytest.mark.skipif(installed_vllm_version() not in SAME_SIGNATURES,
                    reason="signatures below are those of SAME_SIGNATURES' releases")
@pytest.mark.parametrize(
    "kind,original,version,replaced",
    [("globalize_op", _globalize_op_like, None, True),
     ("globalize_python", _globalize_like, None, True),
     ("globalize_python", _globalize_op_like, None, False),
     ("globalize_op", _globalize_op_like, "0.32.0", False)],
    ids=["op", "python", "other-signature", "vllm-without-it"],
)
def test_globalize_replacement(kind: str, original: Callable, version: str | None, replaced: bool,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("VLLM_MOE_ALIGN_DISABLE", raising=False)
    if version is not None:
        monkeypatch.setattr(source_hook, "running_vllm_version", lambda: version)
    fn = source_hook.replacement(kind, original)
    assert (fn is not original) == replaced
    if replaced:
        assert fn.__module__ == "vllm_moe_align_plugin.globalize"
        assert fn.__name__ == "fused_globalize_align_block_size"


def test_replacement_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(kind: str, original: Callable) -> None:
        raise RuntimeError("broken")

    monkeypatch.setattr(source_hook, "_build", boom)
    assert source_hook.replacement("op", _op_like) is _op_like


# --------------------------------------------------------------------------- what patching needs


def test_source_patch_imports_neither_torch_nor_the_library() -> None:
    """Patching a source tree is text work: importing source_patch (and the
    package above it) loads neither torch nor the compiled library."""
    probe = ("import sys; import vllm_moe_align_plugin.vllm.source_patch; "
             "print(sorted(m for m in ('torch', 'vllm_moe_align_plugin._C', "
             "'vllm_moe_align_plugin._ops') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=REPO,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout


# --------------------------------------------------------------------------- the .patch files


@pytest.fixture(scope="module")
def sdist_trees(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    made: dict[str, Path] = {}

    def get(version: str) -> Path:
        if version not in made:
            try:
                archive = make_patches.sdist(version)
            except make_patches.FetchError as exc:
                pytest.skip(f"vLLM {version} sdist unavailable: {exc}")
            made[version] = make_patches.extract(archive, tmp_path_factory.mktemp(f"sdist-{version}"))
        return made[version]

    return get


def _copy(src: Path, dest: Path) -> Path:
    shutil.copytree(src, dest)
    return dest


#: (line, release): each line's reference release, and the newest release a
#: line's file is said to apply to where that is another one (``verbatim``)
PATCH_RELEASES = [(line, line.reference) for line in source_patch.LINES] + [
    (source_patch.line_for(V0_31), "0.34.0"),
]


@pytest.mark.parametrize("line,version", PATCH_RELEASES,
                         ids=[f"{line.contract.patch_file}-{v}" for line, v in PATCH_RELEASES])
def test_patch_file_applies_to_its_release(
    line: source_patch.PatchLine, version: str, sdist_trees: Callable[[str], Path], tmp_path: Path
) -> None:
    release = sdist_trees(version)
    patch_path = PATCHES / line.contract.patch_file
    pristine = digests(release)

    target = source_patch.load_target(str(release))
    assert target.line == line and target.version == version
    if version == line.reference:
        assert patch_path.read_text(encoding="utf-8") == make_patches.patch_file_text(target), (
            f"{patch_path.name} is stale: run python patches/make_patches.py")

    by_cli = _copy(release, tmp_path / "cli")
    rc, out = run_cli("apply", str(by_cli))
    assert rc == 0, out

    if shutil.which("patch"):
        by_patch = _copy(release, tmp_path / "patch")
        for args in (["--dry-run"], []):
            proc = subprocess.run(["patch", "-p1", "-F0", *args, "-i", str(patch_path)], cwd=by_patch,
                                  capture_output=True, text=True)
            assert proc.returncode == 0, proc.stdout + proc.stderr
            assert "fuzz" not in proc.stdout, proc.stdout
        assert digests(by_patch) == digests(by_cli)
        proc = subprocess.run(["patch", "-R", "-p1", "-i", str(patch_path)], cwd=by_patch,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert digests(by_patch) == pristine
    if shutil.which("git"):
        proc = subprocess.run(["git", "apply", "--check", str(patch_path)], cwd=release,
                              capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr

    rc, out = run_cli("revert", str(by_cli))
    assert rc == 0, out
    assert digests(by_cli) == pristine
