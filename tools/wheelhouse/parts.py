"""A folder as ``part-NN.tar.xz`` files of a bounded size, and back.

``pack`` splits by files, so every part unpacks on its own, in any order; every
part carries the manifest (``.wheelhouse-parts/manifest.json``: the part names
and what the folder holds). It fails rather than write a part over the limit,
and a single file whose compressed size exceeds the limit is an error.
``unpack`` is idempotent (one marker per part, holding the part's sha256), fails
on a damaged part and never leaves a marker for a part it did not finish.
Packing needs ``tar`` and ``xz``; unpacking only the standard library.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MIB = 1 << 20
MANIFEST_DIR = ".wheelhouse-parts"  # inside the packed and the unpacked folder
MANIFEST = "manifest.json"
MARKER_SUFFIX = ".done"
PART_GLOB = "part-*.tar.xz"


def strip_tree(site: Path, strip: Iterable[str], placeholders: dict[str, str],
               required: Iterable[str]) -> list[str]:
    """Removes the ``strip`` paths (files or folders, relative to ``site``),
    writes each placeholder module (path -> docstring text), drops
    ``__pycache__`` folders and checks that every ``required`` path exists.
    Returns what was removed."""
    removed = []
    for rel in strip:
        target = site / rel
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
            removed.append(rel + "/")
        elif target.exists() or target.is_symlink():
            target.unlink()
            removed.append(rel)
    for rel, text in placeholders.items():
        body = f"Placeholder written by tools/wheelhouse: {text}".replace("\\", "\\\\").replace('"""', "'''")
        (site / rel).parent.mkdir(parents=True, exist_ok=True)
        (site / rel).write_text(f'"""{body}\n"""\n')
    for cache in sorted(site.rglob("__pycache__"), reverse=True):
        shutil.rmtree(cache, ignore_errors=True)
    missing = [rel for rel in required if not (site / rel).exists()]
    if missing:
        raise FileNotFoundError(f"{site}: required files missing after strip: {missing}")
    return removed


@dataclass
class Part:
    """Files of one part and their estimated compressed size (bytes)."""

    files: list[str] = field(default_factory=list)
    estimate: float = 0.0


def plan_parts(sizes: dict[str, int], estimates: dict[str, float], capacity: float) -> list[Part]:
    """Splits files into parts whose estimated compressed sizes stay within
    ``capacity``. Large files (estimate >= capacity / 8) go first, largest
    first, each into the first part with room; the rest follow in path order,
    each into the first part with room (first fit: the parts fill up tightly,
    and files of one package mostly stay together).

    ``sizes``: path -> raw size; ``estimates``: path -> estimated compressed
    size. Raises ValueError when one file alone does not fit."""
    parts: list[Part] = []

    def place(path: str) -> None:  # first fit
        target = next((p for p in parts if p.estimate + estimates[path] <= capacity), None)
        if target is None:
            target = Part()
            parts.append(target)
        target.files.append(path)
        target.estimate += estimates[path]

    big = sorted((p for p in sizes if estimates[p] >= capacity / 8), key=lambda p: -estimates[p])
    for path in big:
        if estimates[path] > capacity:
            raise ValueError(f"{path}: about {estimates[path] / MIB:.1f} MiB compressed, over the "
                             f"{capacity / MIB:.1f} MiB a part may hold")
        place(path)
    for path in sorted(p for p in sizes if estimates[p] < capacity / 8):
        place(path)
    return parts


def _xz_size(path: Path, xz_opts: list[str]) -> int:
    with open(path, "rb") as src:
        proc = subprocess.run(["xz", *xz_opts, "-c"], stdin=src, stdout=subprocess.PIPE, check=True)
    return len(proc.stdout)


def _tar_xz(site: Path, files: list[str], out: Any, xz_opts: list[str]) -> None:
    """``tar -c files | xz`` into the open binary file ``out``."""
    with tempfile.TemporaryDirectory() as tmp:
        lst = Path(tmp) / "files"
        lst.write_text("\n".join(files) + "\n")
        tar = subprocess.Popen(
            ["tar", "-C", str(site), "-cf", "-", "--no-recursion", "--owner=0", "--group=0",
             "--numeric-owner", "-T", str(lst)], stdout=subprocess.PIPE)
        subprocess.run(["xz", *xz_opts, "-c"], stdin=tar.stdout, stdout=out, check=True)
        if tar.wait() != 0:
            raise RuntimeError(f"tar failed in {site}")


def measure(site: Path, files: list[str], xz_opts: list[str], cache_path: Path,
            big_bytes: int) -> dict[str, float]:
    """Estimated compressed size of each file: files of at least ``big_bytes``
    are compressed alone (results cached in ``cache_path`` by path, content
    hash and xz options); smaller ones get the ratio of all small files
    compressed together."""
    cache: dict[str, int] = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    estimates: dict[str, float] = {}
    small = []
    for rel in files:
        st = (site / rel).lstat()
        if st.st_size >= big_bytes and not (site / rel).is_symlink():
            digest = hashlib.sha256((site / rel).read_bytes()).hexdigest()[:20]
            key = f"{rel}:{st.st_size}:{digest}:{' '.join(xz_opts)}"
            if key not in cache:
                print(f"  measuring {rel} ({st.st_size / MIB:.1f} MiB) ...", flush=True)
                cache[key] = _xz_size(site / rel, xz_opts)
            estimates[rel] = float(cache[key])
        else:
            small.append(rel)
    cache_path.write_text(json.dumps(cache, indent=1))
    if small:
        raw = sum((site / rel).lstat().st_size for rel in small)
        with tempfile.TemporaryFile() as packed:
            _tar_xz(site, small, packed, xz_opts)
            ratio = os.fstat(packed.fileno()).st_size / max(raw, 1)  # tar headers and padding included
        print(f"  {len(small)} small files: {raw / MIB:.1f} MiB raw, ratio {ratio:.3f}", flush=True)
        for rel in small:
            estimates[rel] = (site / rel).lstat().st_size * ratio
    return estimates


def list_files(site: Path) -> list[str]:
    """Every regular file and symlink under ``site``, relative, sorted."""
    out = []
    for root, dirs, names in os.walk(site):
        dirs.sort()
        for name in sorted(names):
            path = Path(root) / name
            if path.is_file() or path.is_symlink():
                out.append(str(path.relative_to(site)))
    return out


def write_part(site: Path, files: list[str], dest: Path, xz_opts: list[str]) -> int:
    """tar | xz of ``files`` (relative to ``site``) into ``dest``; its size."""
    tmp_dest = dest.with_suffix(".partial")
    with open(tmp_dest, "wb") as out:
        _tar_xz(site, files, out, xz_opts)
    tmp_dest.replace(dest)
    return dest.stat().st_size


def pack(site: Path, out: Path, part_mib: float, xz_opts: list[str], work: Path,
         manifest: dict[str, Any]) -> list[tuple[str, int, int]]:
    """Packs ``site`` into ``out/part-NN.tar.xz``, each at most ``part_mib``
    MiB (0: no limit, one part), every part with the manifest (``manifest``
    plus the part names and file counts). Plans again with a smaller capacity
    when an estimate fell short. Returns (name, bytes, files) per part."""
    limit = int(part_mib * MIB) if part_mib > 0 else 0
    files = [f for f in list_files(site) if not f.startswith(MANIFEST_DIR + "/")]
    sizes = {f: (site / f).lstat().st_size for f in files}
    if limit:
        estimates = measure(site, files, xz_opts, work / "xz-sizes.json", big_bytes=4 * MIB)
        capacity = limit * 0.985  # the estimates came within 0.5% of the real sizes
    else:
        estimates, capacity = {f: float(s) for f, s in sizes.items()}, math.inf
    for _attempt in range(6):
        plan = plan_parts(sizes, estimates, capacity)
        names = [f"part-{i:02d}.tar.xz" for i in range(len(plan))]
        full = {**manifest, "parts": names, "files": len(files), "bytes_unpacked": sum(sizes.values())}
        (site / MANIFEST_DIR).mkdir(exist_ok=True)
        (site / MANIFEST_DIR / MANIFEST).write_text(json.dumps(full, indent=1) + "\n")
        out.mkdir(parents=True, exist_ok=True)
        for old in out.glob(PART_GLOB):
            old.unlink()
        result = []
        over = 0.0
        for name, part in zip(names, plan):
            members = [*part.files, f"{MANIFEST_DIR}/{MANIFEST}"]
            size = write_part(site, members, out / name, xz_opts)
            result.append((name, size, len(members)))
            print(f"  {name}: {size / MIB:6.2f} MiB ({len(members)} files; estimated "
                  f"{part.estimate / MIB:.2f})", flush=True)
            over = max(over, size / limit) if limit else 0.0
        if over <= 1.0:
            return result
        capacity = capacity / over * 0.98
        print(f"  a part came out over {part_mib} MiB; planning again with {capacity / MIB:.1f} MiB",
              flush=True)
    raise RuntimeError("could not pack within the part size limit")


def _marker(dest: Path, part: Path) -> Path:
    return dest / MANIFEST_DIR / (part.name + MARKER_SUFFIX)


def unpack(parts_dir: Path, dest: Path) -> list[str]:
    """Unpacks every ``part-*.tar.xz`` of ``parts_dir`` that has no marker yet
    into ``dest`` (marker: ``dest/.wheelhouse-parts/<part>.done`` holding the
    part's sha256; a part whose content changed is unpacked again). Returns the
    names unpacked now."""
    done = []
    dest.mkdir(parents=True, exist_ok=True)
    for part in sorted(parts_dir.glob(PART_GLOB)):
        digest = hashlib.sha256(part.read_bytes()).hexdigest()
        marker = _marker(dest, part)
        if marker.exists() and marker.read_text().strip() == digest:
            print(f"{part.name}: already unpacked")
            continue
        with tarfile.open(part, "r:xz") as tar:
            if hasattr(tarfile, "data_filter"):
                tar.extractall(dest, filter="data")
            else:  # Python without extraction filters: archives made by pack()
                tar.extractall(dest)  # noqa: S202
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(digest + "\n")
        done.append(part.name)
        print(f"{part.name}: unpacked into {dest}")
    return done


def read_manifest(dest: Path) -> dict[str, Any]:
    """The manifest of an unpacked folder ({} before the first part)."""
    path = dest / MANIFEST_DIR / MANIFEST
    return json.loads(path.read_text()) if path.exists() else {}


def status(dest: Path) -> tuple[list[str], list[str]]:
    """(parts unpacked, parts still missing) according to the manifest."""
    manifest = read_manifest(dest)
    if not manifest:
        return [], ["(no part unpacked yet)"]
    names = manifest["parts"]
    have = [n for n in names if (dest / MANIFEST_DIR / (n + MARKER_SUFFIX)).exists()]
    return have, [n for n in names if n not in have]
