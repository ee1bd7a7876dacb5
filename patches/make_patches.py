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

HERE = Path(__file__).resolve().parent
CACHE = HERE.parent / ".cache" / "vllm-sdists"
SIMPLE_URL = "https://pypi.org/simple/vllm/"
#: files read from an sdist: the two the patch touches, and the version
MEMBERS = (
    "PKG-INFO",
    "vllm/_version.py",
    "vllm/_custom_ops.py",
    "vllm/model_executor/layers/fused_moe/moe_align_block_size.py",
)


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
    missing = set(MEMBERS) - found - {"vllm/_version.py"}
    if missing:
        raise FetchError(f"{archive.name} lacks {', '.join(sorted(missing))}")
    return dest


def expected(line_index: int, workdir: Path) -> str:
    """The .patch text of line ``line_index`` of ``patching.LINES``."""
    from vllm_moe_align_plugin import patching

    line = patching.LINES[line_index]
    root = extract(sdist(line.reference), workdir / f"vllm-{line.reference}")
    return patching.patch_file_text(patching.load_target(str(root)))


def main() -> int:
    import tempfile

    from vllm_moe_align_plugin import patching

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    args = parser.parse_args()
    stale = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, line in enumerate(patching.LINES):
            text = expected(i, Path(tmp))
            path = HERE / line.patch_file
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
