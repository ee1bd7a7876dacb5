"""Building a wheelhouse where a package index is reachable.

1. ``pip download`` the requirements as wheels for the target's CPython version
   and platform (``--no-deps`` when the profile says so: then nothing the target
   already has, e.g. torch, is fetched, and every requirement must be a pin);
2. check the requirement closure of the wheels against the target;
3. ``tree`` mode: install them into one site-packages-style folder (``pip
   install --target``) and strip it; ``wheels`` mode: keep the wheels;
4. pack that folder into parts of at most ``--part-size`` MiB.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from . import parts
from .closure import check_closure
from .spec import Profile, exact_pins, normalize, platform_tags

REPO = Path(__file__).resolve().parents[2]
DEFAULT_WORK = REPO / ".wheelhouse"


@dataclass
class BuildOptions:
    """Where and how to build (the target itself is the Profile)."""

    work: Path = DEFAULT_WORK
    parts_dir: Optional[Path] = None  # default: work/parts
    part_mib: float = 0.0  # 0: no limit, one part
    xz_opts: list[str] = field(default_factory=lambda: ["-9", "-T0"])
    wheels: list[Path] = field(default_factory=list)  # already downloaded wheels to reuse
    pip_args: list[str] = field(default_factory=list)  # extra pip download options (index, ...)
    pack: bool = True
    python: str = sys.executable  # the interpreter whose pip downloads and installs


def ensure_ignored(folder: Path) -> None:
    """Creates ``folder`` with a ``.gitignore`` that ignores all of it, so that
    a wheelhouse inside a checkout never shows up as untracked files."""
    folder.mkdir(parents=True, exist_ok=True)
    ignore = folder / ".gitignore"
    if not ignore.exists():
        ignore.write_text("# written by tools/wheelhouse: build output, not for version control\n*\n")


def target_args(profile: Profile) -> list[str]:
    """pip options that select wheels for the target instead of this machine."""
    args = ["--only-binary=:all:", "--python-version", profile.python_version, "--implementation", "cp"]
    for tag in platform_tags(profile.platform):
        args += ["--platform", tag]
    return args


def download_command(profile: Profile, wheels_dir: Path, opts: BuildOptions) -> list[str]:
    return [opts.python, "-m", "pip", "download", "-q", *(["--no-deps"] if profile.no_deps else []),
            *target_args(profile), *opts.pip_args, "-d", str(wheels_dir), *profile.requirements]


def install_tree_command(profile: Profile, wheels: Sequence[Path], site: Path, python: str) -> list[str]:
    return [python, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", "--no-index",
            *target_args(profile), "--target", str(site), *map(str, wheels)]


def wheel_name_version(path: Path) -> tuple[str, str]:
    """(normalized name, version) from a wheel's file name."""
    name, version = path.name.split("-")[:2]
    return normalize(name), version


def prune(wheels_dir: Path, pins: dict[str, str]) -> list[str]:
    """Removes every wheel that is not one of ``pins`` (a stale version would
    be installed too) and checks that each pin has its wheel. Returns the
    removed file names."""
    removed = []
    for wheel in sorted(wheels_dir.glob("*.whl")):
        name, version = wheel_name_version(wheel)
        if pins.get(name) != version:
            wheel.unlink()
            removed.append(wheel.name)
    have = {wheel_name_version(w)[0] for w in wheels_dir.glob("*.whl")}
    missing = sorted(set(pins) - have)
    if missing:
        raise FileNotFoundError(f"wheels missing after download: {missing}")
    return removed


def _run(cmd: list[str]) -> None:
    print("+ " + " ".join(cmd[:6]) + (" ..." if len(cmd) > 6 else ""), flush=True)
    subprocess.run(cmd, check=True)


def build(profile: Profile, opts: BuildOptions) -> int:
    """Steps 1-4 of the module docstring; 0 when the parts (or, without
    packing, the folder) are ready, 1 when the closure check failed."""
    if not profile.requirements:
        raise ValueError("nothing to bundle: no requirements given")
    pins = exact_pins(profile.requirements)
    if profile.no_deps and pins is None:
        raise ValueError("no_deps needs every requirement as NAME==VERSION")
    ensure_ignored(opts.work)
    folder = opts.work / f"{profile.name}-py{profile.python_version}"
    wheels_dir, site = folder / "wheels", folder / "site"
    parts_dir = opts.parts_dir or opts.work / "parts"
    print(f"== wheelhouse {profile.name}: CPython {profile.python_version}, {profile.platform}, "
          f"mode {profile.mode}; work {folder}, parts {parts_dir}", flush=True)

    print("== 1. download", flush=True)
    wheels_dir.mkdir(parents=True, exist_ok=True)
    for wheel in opts.wheels:
        shutil.copy2(wheel, wheels_dir / wheel.name)
    _run(download_command(profile, wheels_dir, opts))  # pip reuses wheels already in wheels_dir
    if profile.no_deps and pins is not None:
        for name in prune(wheels_dir, pins):
            print(f"removed {name} (not pinned)")
    else:
        print(f"note: pip resolved the dependencies; wheels of earlier builds stay in {wheels_dir} "
              "(delete it for a clean resolution)")
    wheels = sorted(wheels_dir.glob("*.whl"))
    print(f"{len(wheels)} wheels in {wheels_dir}")

    print("== 2. requirement closure", flush=True)
    report = check_closure(wheels, profile.python_version, profile.target_packages, profile.left_out,
                           profile.platform)
    print("\n".join(report.lines(profile.left_out)))
    if not report.ok:
        return 1

    if profile.mode == "tree":
        print("== 3. tree", flush=True)
        shutil.rmtree(site, ignore_errors=True)
        _run(install_tree_command(profile, wheels, site, opts.python))
        for rel in parts.strip_tree(site, profile.strip, profile.placeholders, profile.required):
            print(f"removed {rel}")
        tree = site
    else:
        print("== 3. wheels (no tree)", flush=True)
        tree = wheels_dir
    size = sum((tree / f).lstat().st_size for f in parts.list_files(tree))
    print(f"{tree}: {size / parts.MIB:.1f} MiB", flush=True)
    if not opts.pack:
        print(f"ready in {tree} (no parts made)")
        return 0

    limit = f"at most {opts.part_mib:g} MiB each" if opts.part_mib > 0 else "no size limit"
    print(f"== 4. parts ({limit}, xz {' '.join(opts.xz_opts)})", flush=True)
    manifest = {"profile": profile.name, "mode": profile.mode, "python_version": profile.python_version,
                "platform": profile.platform, "no_deps": profile.no_deps,
                "requirements": profile.requirements}
    made = parts.pack(tree, parts_dir, opts.part_mib, opts.xz_opts, folder, manifest)
    total = sum(size for _, size, _ in made)
    print(f"{len(made)} parts, {total / parts.MIB:.2f} MiB in all, in {parts_dir}")
    return 0


def install_command(dest: Path, python: str, pip_args: Sequence[str] = ()) -> list[str]:
    """The offline ``pip install`` of an unpacked ``wheels``-mode wheelhouse."""
    manifest = parts.read_manifest(dest)
    if manifest.get("mode") != "wheels":
        raise ValueError(f"{dest}: not an unpacked wheels-mode wheelhouse (mode "
                         f"{manifest.get('mode')!r}); a tree goes on PYTHONPATH instead")
    return [python, "-m", "pip", "install", "--no-index", "--find-links", str(dest),
            *(["--no-deps"] if manifest.get("no_deps") else []), *pip_args, *manifest["requirements"]]
