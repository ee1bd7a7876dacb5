"""Regenerates patches/*.patch from each line's reference vLLM release.

    python patches/make_patches.py          # writes the four .patch files
    python patches/make_patches.py --check  # exit 1 if any differs from what it would write

Each release's sdist comes from PyPI (its URL from the simple JSON API) and is
cached in .cache/vllm-sdists/ (not committed); only the few files the patch and
the version detection need are read from it. tests/test_patches.py uses the same
helpers.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import tarfile
import urllib.request
from pathlib import Path

from vllm_moe_align_plugin.vllm import source_patch

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache" / "vllm-sdists"
SIMPLE_URL = "https://pypi.org/simple/vllm/"
#: files read from an sdist: those a patch may touch, and the version
MEMBERS = (
    "PKG-INFO",
    "vllm/_version.py",
    source_patch.OPS_FILE,
    source_patch.PY_FILE,
    source_patch.GLOBALIZE_FILE,
)
#: members only some releases have (the globalize file: vLLM >= 0.33)
OPTIONAL = {"vllm/_version.py", source_patch.GLOBALIZE_FILE}


class FetchError(Exception):
    """PyPI could not be reached, or it has no sdist of the release."""


def sdist(version: str, cache: Path = CACHE, timeout: float = 60.0) -> Path:
    """The cached sdist of vLLM ``version``, downloaded (sha256-checked) if absent."""
    name = f"vllm-{version}.tar.gz"
    path = cache / name
    if path.is_file():
        return path
    try:
        req = urllib.request.Request(SIMPLE_URL,
                                     headers={"Accept": "application/vnd.pypi.simple.v1+json"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            files = json.load(resp)["files"]
        entry = next((f for f in files if f["filename"] == name), None)
        if entry is None:
            raise FetchError(f"PyPI has no {name}")
        with urllib.request.urlopen(entry["url"], timeout=timeout) as resp:
            data = resp.read()
    except OSError as exc:
        raise FetchError(f"cannot download {name} from PyPI ({exc})") from exc
    want = entry.get("hashes", {}).get("sha256")
    if want and hashlib.sha256(data).hexdigest() != want:
        raise FetchError(f"{name}: sha256 differs from PyPI's {want}")
    cache.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part")
    tmp.write_bytes(data)
    os.replace(tmp, path)
    return path


def extract(archive: Path, dest: Path) -> Path:
    """Writes MEMBERS of the sdist under ``dest`` (as ``dest/vllm/...``); returns ``dest``."""
    with tarfile.open(archive) as tar:
        found = set()
        for member in tar.getmembers():
            rel = member.name.split("/", 1)[-1]
            if rel in MEMBERS and member.isfile():
                out = dest / rel
                out.parent.mkdir(parents=True, exist_ok=True)
                src = tar.extractfile(member)
                assert src is not None
                out.write_bytes(src.read())
                found.add(rel)
    missing = set(MEMBERS) - found - OPTIONAL
    if missing:
        raise FetchError(f"{archive.name} lacks {', '.join(sorted(missing))}")
    return dest


def unified_diff(target: source_patch.Target) -> str:
    """The git-style unified diff (paths a/vllm/..., b/vllm/...) that ``apply``
    makes on ``target``, which must be pristine: a patch is made from the
    release as published (``source_patch.unified_diff`` writes the diff)."""
    if target.status() != source_patch.PRISTINE:
        states = "; ".join(f"{f.rel}: {f.status}" for f in target.files)
        raise source_patch.PatchError(f"a patch is made from a pristine tree: {states}")
    return source_patch.unified_diff(target)


def patch_file_text(target: source_patch.Target) -> str:
    """The text of ``patches/<line>.patch`` made from ``target`` (the line's
    reference release): a header saying what it is, then the diff."""
    line = target.line
    globalize = ""
    if any(f.rel == source_patch.GLOBALIZE_FILE for f in target.files):
        globalize = f"""

In vLLM >= 0.33 it does the same for fused_globalize_align_block_size: one
block after its op-level wrapper in {source_patch.OPS_FILE} and one at the
end of {source_patch.GLOBALIZE_FILE}."""
    header = f"""\
vllm-moe-align-plugin static patch for vLLM {line.contract.versions} ({line.contract.name} contract)

Applies to: vLLM {line.contract.versions} through `vllm-moe-align patch apply`, which
places the same lines in any release of this line (and refuses one whose
moe_align_block_size has other parameters than the plugin's for the line).
Made from the {line.reference} release; as a file (`patch -p1`, `git apply`)
it applies to releases {line.verbatim}, whose lines around the change are
the same.

What it changes: one guarded block after vLLM's own moe_align_block_size in
  {source_patch.OPS_FILE} (the op-level wrapper) and at the end of
  {source_patch.PY_FILE}
  (the Python-level function). With vllm_moe_align_plugin importable each block
  rebinds moe_align_block_size to the plugin's function for this line (unless
  the plugin's op failed to load, VLLM_MOE_ALIGN_DISABLE=1 is set, or the
  signatures differ: then vLLM keeps its own); without the package it does
  nothing. No kernel code is in the patch; it lives in the package.{globalize}

Use (in the directory that contains vllm/):
  patch -p1 --dry-run < {line.contract.patch_file} && patch -p1 < {line.contract.patch_file}
  revert: patch -R -p1 < {line.contract.patch_file}
or: vllm-moe-align patch check|apply|revert [PATH]   (see patches/README.md)

"""
    return header + unified_diff(target)


def expected(line_index: int, workdir: Path) -> str:
    """The .patch text of line ``line_index`` of ``source_patch.LINES``."""
    line = source_patch.LINES[line_index]
    root = extract(sdist(line.reference), workdir / f"vllm-{line.reference}")
    return patch_file_text(source_patch.load_target(str(root)))


def main() -> int:
    import tempfile

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, line in enumerate(source_patch.LINES):
            text = expected(i, Path(tmp))
            path = HERE / line.contract.patch_file
            if args.check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    stale.append(path.name)
            else:
                path.write_text(text, encoding="utf-8")
                print(f"wrote {path} (from vLLM {line.reference})")
    if stale:
        print(f"out of date: {', '.join(stale)}; run python patches/make_patches.py", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
