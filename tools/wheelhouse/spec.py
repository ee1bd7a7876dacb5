"""What goes into a wheelhouse: requirement lists, package-name lists and profiles.

A *profile* (an INI file, e.g. ``vllm-0.26.ini``) bundles everything the build
needs to know about one target:

``[target]``        ``base`` (optional: another profile, next to this one,
                    to start from; see ``load_profile``), ``python_version``,
                    ``platform`` (one wheel tag; a
                    ``manylinux_2_N_ARCH`` tag stands for every glibc from 2.17 to
                    2.N), ``requirements`` and ``target_packages`` (files next to
                    the profile), ``no_deps`` (download exactly the listed pins)
                    and ``mode`` (``tree``: one unpacked site-packages tree to put
                    on PYTHONPATH; ``wheels``: the wheels, for an offline
                    ``pip install``).
``[left-out]``      ``package = reason``: requirements deliberately not bundled.
``[strip]``         ``path = reason``: removed from the tree after installing.
``[placeholders]``  ``path = text``: small modules written into the tree (their
                    docstring is the text).
``[required]``      paths that must exist in the tree after stripping.
"""

from __future__ import annotations

import configparser
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

MODES = ("tree", "wheels")


def normalize(name: str) -> str:
    """PEP 503 name: lower case, runs of ``-_.`` as one ``-``."""
    return re.sub(r"[-_.]+", "-", name).lower()


def requirement_name(line: str) -> str:
    """The project name of a requirement line (``name[extra]==1.0; marker``)."""
    match = re.match(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)", line)
    if match is None:
        raise ValueError(f"not a requirement: {line!r}")
    return match.group(1)


def read_requirements(path: Path) -> list[str]:
    """Requirement lines of a pip requirements file: comments (``#`` at the start
    or after whitespace) and blank lines dropped, ``-r FILE`` followed (relative
    to the including file). Other pip options are refused: the wheelhouse passes
    its own index and platform options."""
    out: list[str] = []
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if not line:
            continue
        if line.startswith(("-r ", "--requirement ", "--requirement=")):
            include = re.split(r"[ =]", line, maxsplit=1)[1].strip()
            out += read_requirements(path.parent / include)
        elif line.startswith("-"):
            raise ValueError(f"{path}: pip option not supported here: {line!r}")
        else:
            out.append(line)
    return out


def read_names(path: Path) -> set[str]:
    """Normalized package names of a list: one per line, as plain names or in
    ``pip freeze`` form (``name==1.0``, ``name @ url``); ``#`` comments."""
    names = set()
    for raw in path.read_text().splitlines():
        line = re.sub(r"(^|\s)#.*$", "", raw).strip()
        if line and not line.startswith("-"):
            names.add(normalize(requirement_name(line)))
    return names


def exact_pins(requirements: list[str]) -> Optional[dict[str, str]]:
    """``{normalized name: version}`` when every line is ``name==version``
    (markers allowed), else None."""
    pins = {}
    for line in requirements:
        match = re.fullmatch(r"\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;,]+)\s*(;.*)?", line)
        if match is None:
            return None
        pins[normalize(match.group(1))] = match.group(2)
    return pins


def platform_tags(platform: str) -> list[str]:
    """pip ``--platform`` values for one tag. pip matches manylinux tags exactly,
    so ``manylinux_2_N_ARCH`` becomes every ``manylinux_2_M_ARCH`` with
    17 <= M <= N, plus the legacy aliases; any other tag is taken as it is."""
    match = re.fullmatch(r"manylinux_2_(\d+)_(\w+)", platform)
    if match is None:
        return [platform]
    glibc, arch = int(match.group(1)), match.group(2)
    tags = [f"manylinux_2_{n}_{arch}" for n in range(glibc, 16, -1)]
    if glibc >= 17:
        tags.append(f"manylinux2014_{arch}")
    if glibc >= 5 and arch in ("x86_64", "i686"):
        tags.append(f"manylinux1_{arch}")
    return tags


def platform_machine(platform: str) -> str:
    """The ``platform_machine`` marker value of a wheel platform tag."""
    for arch in ("x86_64", "aarch64", "ppc64le", "s390x", "armv7l", "i686"):
        if platform.endswith(arch):
            return arch
    return platform.rsplit("_", 1)[-1]


@dataclass
class Profile:
    """A target and what to bundle for it (see the module docstring)."""

    name: str = "wheelhouse"
    python_version: str = "3.12"
    platform: str = "manylinux_2_17_x86_64"
    requirements: list[str] = field(default_factory=list)
    target_packages: set[str] = field(default_factory=set)
    no_deps: bool = False
    mode: str = "tree"
    left_out: dict[str, str] = field(default_factory=dict)  # normalized name -> reason
    strip: dict[str, str] = field(default_factory=dict)  # path -> reason
    placeholders: dict[str, str] = field(default_factory=dict)  # path -> docstring
    required: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, not {self.mode!r}")


def load_profile(path: Path, _seen: tuple[Path, ...] = ()) -> Profile:
    """Reads a profile; file names in ``[target]`` are relative to it.

    With ``base = FILE`` in ``[target]`` it starts from that profile: the
    base's requirements come first, then its own; ``[left-out]``,
    ``[strip]``, ``[placeholders]`` and ``[required]`` add to the base's
    (an entry of the same key replaces the base's); a ``[target]`` key it
    does not give keeps the base's value."""
    if path.resolve() in _seen:
        raise ValueError(f"{path}: profiles name each other as base ({' -> '.join(map(str, _seen))})")
    parser = configparser.ConfigParser(allow_no_value=True, interpolation=None, delimiters=("=",))
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep paths' case
    if not parser.read(path):
        raise FileNotFoundError(path)
    target = parser["target"] if parser.has_section("target") else {}
    here = path.parent
    start = (load_profile(here / target["base"], _seen + (path.resolve(),)) if "base" in target
             else Profile())

    def section(name: str) -> dict[str, str]:
        return {k: (v or "").strip() for k, v in parser.items(name)} if parser.has_section(name) else {}

    no_deps = target.get("no_deps")
    return Profile(
        name=path.stem,
        python_version=target.get("python_version", start.python_version),
        platform=target.get("platform", start.platform),
        requirements=start.requirements
        + (read_requirements(here / target["requirements"]) if "requirements" in target else []),
        target_packages=read_names(here / target["target_packages"]) if "target_packages" in target
        else set(start.target_packages),
        no_deps=start.no_deps if no_deps is None
        else no_deps.strip().lower() in ("1", "true", "yes", "on"),
        mode=target.get("mode", start.mode),
        left_out={**start.left_out, **{normalize(k): v for k, v in section("left-out").items()}},
        strip={**start.strip, **section("strip")},
        placeholders={**start.placeholders, **section("placeholders")},
        required=list(dict.fromkeys(start.required + list(section("required")))),
    )
