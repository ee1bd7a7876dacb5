"""``python -m tools.wheelhouse``: a wheelhouse for a GPU machine without network.

Where a package index is reachable:
  build     download, check, (install into a tree and strip,) pack into parts
  pins      print the requirement lines a build would download
  closure   check the requirements of a folder of wheels against the target
  strip     strip an installed tree as a profile says
  pack      pack any folder into parts
On the machine without network:
  unpack    unpack every carried part into a folder (idempotent, one part at a time)
  status    exit 0 when every part of the folder's wheelhouse is unpacked
  install   offline ``pip install`` from an unpacked wheels-mode wheelhouse
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path
from typing import Optional

from . import build as build_mod
from . import parts
from .closure import check_closure
from .spec import MODES, Profile, load_profile, read_names, read_requirements


def _target_options(p: argparse.ArgumentParser, with_requirements: bool = True) -> None:
    p.add_argument("--profile", type=Path, help="profile INI (e.g. tools/wheelhouse/vllm-0.26.ini)")
    if with_requirements:
        p.add_argument("requirements", nargs="*", metavar="REQ", help="requirement, e.g. numpy==2.1.3")
        p.add_argument("-r", "--requirement", dest="requirement_files", action="append", type=Path,
                       default=[], metavar="FILE", help="pip requirements file (repeatable)")
        p.add_argument("--no-deps", dest="no_deps", action="store_const", const=True,
                       help="download exactly the pins, not their dependencies")
        p.add_argument("--mode", choices=MODES, help="tree (PYTHONPATH) or wheels (offline pip install)")
    p.add_argument("--python-version", help="target CPython, e.g. 3.12 (default: the profile's, else 3.12)")
    p.add_argument("--platform", help="target wheel platform, e.g. manylinux_2_35_x86_64")
    p.add_argument("--target-packages", type=Path, action="append", default=[], metavar="FILE",
                   help="packages the target already has (names or `pip freeze` output; repeatable)")


def profile_from_args(args: argparse.Namespace) -> Profile:
    """The profile file (if any) with the command line's additions and overrides."""
    profile = load_profile(args.profile) if args.profile else Profile()
    for name in ("python_version", "platform", "no_deps", "mode"):
        if getattr(args, name, None) is not None:
            setattr(profile, name, getattr(args, name))
    for path in getattr(args, "requirement_files", []):
        profile.requirements += read_requirements(path)
    profile.requirements += getattr(args, "requirements", [])
    for path in args.target_packages:
        profile.target_packages |= read_names(path)
    profile.__post_init__()
    return profile


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m tools.wheelhouse", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    b = sub.add_parser("build", help="build the parts of a wheelhouse")
    _target_options(b)
    b.add_argument("--work", type=Path, default=build_mod.DEFAULT_WORK,
                   help="work folder (default: .wheelhouse in the repository; ignored by git)")
    b.add_argument("--parts", type=Path, help="folder for part-NN.tar.xz (default: WORK/parts)")
    b.add_argument("--part-size", type=float, default=0.0, metavar="MIB",
                   help="largest part in MiB (default 0: no limit, one part)")
    b.add_argument("--xz-opts", default="-9 -T0", help="xz options (default: %(default)s)")
    b.add_argument("--wheel", type=Path, action="append", default=[], help="an already downloaded wheel")
    b.add_argument("--pip-arg", action="append", default=[], metavar="ARG",
                   help="extra pip download option, e.g. --pip-arg=--index-url=URL (repeatable)")
    b.add_argument("--no-pack", action="store_true", help="stop before packing")
    b.add_argument("--python", default=sys.executable, help="interpreter whose pip is used")
    pins = sub.add_parser("pins", help="print the requirement lines")
    _target_options(pins)
    c = sub.add_parser("closure", help="check the requirements of a folder of wheels")
    c.add_argument("wheels", type=Path)
    _target_options(c, with_requirements=False)
    s = sub.add_parser("strip", help="strip an installed tree as the profile says")
    s.add_argument("tree", type=Path)
    s.add_argument("--profile", type=Path, required=True)
    p = sub.add_parser("pack", help="pack a folder into parts")
    p.add_argument("tree", type=Path)
    p.add_argument("parts", type=Path)
    p.add_argument("--part-size", type=float, default=0.0, metavar="MIB")
    p.add_argument("--xz-opts", default="-9 -T0")
    p.add_argument("--work", type=Path, default=None, help="where to cache size estimates")
    u = sub.add_parser("unpack", help="unpack every part of a folder")
    u.add_argument("parts", type=Path)
    u.add_argument("dest", type=Path)
    t = sub.add_parser("status", help="exit 0 when every part is unpacked")
    t.add_argument("dest", type=Path)
    i = sub.add_parser("install", help="offline pip install from an unpacked wheels-mode wheelhouse")
    i.add_argument("dest", type=Path)
    i.add_argument("pip_args", nargs="*", help="more pip install options, after --")
    i.add_argument("--python", default=sys.executable)
    return ap


def main(argv: Optional[list[str]] = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return _run(args)
    except (ValueError, FileNotFoundError, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "build":
        opts = build_mod.BuildOptions(
            work=args.work, parts_dir=args.parts, part_mib=args.part_size, xz_opts=args.xz_opts.split(),
            wheels=args.wheel, pip_args=args.pip_arg, pack=not args.no_pack, python=args.python)
        return build_mod.build(profile_from_args(args), opts)
    if args.cmd == "pins":
        print("\n".join(profile_from_args(args).requirements))
        return 0
    if args.cmd == "closure":
        profile = profile_from_args(args)
        report = check_closure(sorted(args.wheels.glob("*.whl")), profile.python_version,
                               profile.target_packages, profile.left_out, profile.platform)
        print("\n".join(report.lines(profile.left_out)))
        return 0 if report.ok else 1
    if args.cmd == "strip":
        profile = load_profile(args.profile)
        for rel in parts.strip_tree(args.tree, profile.strip, profile.placeholders, profile.required):
            print(f"removed {rel}")
        return 0
    if args.cmd == "pack":
        work = args.work or args.parts.parent
        work.mkdir(parents=True, exist_ok=True)
        made = parts.pack(args.tree, args.parts, args.part_size, args.xz_opts.split(), work, {})
        print(f"{len(made)} parts, {sum(s for _, s, _ in made) / parts.MIB:.2f} MiB in all, in {args.parts}")
        return 0
    if args.cmd == "unpack":
        parts.unpack(args.parts, args.dest)
        have, missing = parts.status(args.dest)
        print(f"wheelhouse in {args.dest}: {len(have)} of {len(have) + len(missing)} parts unpacked"
              + (f"; still to copy here: {', '.join(missing)}" if missing else "; complete"))
        return 0
    if args.cmd == "status":
        have, missing = parts.status(args.dest)
        print(f"{len(have)} parts unpacked; missing: {', '.join(missing) or 'none'}")
        return 0 if not missing else 1
    if args.cmd == "install":
        have, missing = parts.status(args.dest)
        if missing:
            print(f"incomplete: still to copy here: {', '.join(missing)}", file=sys.stderr)
            return 1
        return subprocess.call(build_mod.install_command(args.dest, args.python, args.pip_args))
    return 2
