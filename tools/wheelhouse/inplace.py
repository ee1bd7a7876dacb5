"""Entry points for a project built in place, without pip.

vLLM finds plugins through the entry points of installed distributions. A
project built with ``setup.py build_ext --inplace`` and put on PYTHONPATH has
none, so this writes a minimal ``NAME-VERSION.dist-info`` (METADATA and
entry_points.txt, from pyproject.toml's ``[project]`` and the package's
``__version__``) into a folder that goes
on PYTHONPATH next to it. Nothing is written into the interpreter's environment.

    python -m tools.wheelhouse.inplace PROJECT_ROOT META_DIR
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path
from typing import Any, Optional


def _parse_toml_subset(text: str) -> dict[str, Any]:
    """``[project]`` name/version and ``[project.entry-points."GROUP"]`` tables
    of a pyproject.toml, for interpreters without tomllib."""
    project: dict[str, Any] = {"entry-points": {}}
    table: Optional[dict[str, str]] = None
    for raw in text.splitlines():
        line = raw.split("#", 1)[0].strip() if not raw.strip().startswith("#") else ""
        header = re.fullmatch(r"\[([^\]]+)\]", line)
        if header:
            name = header.group(1).strip()
            group = re.fullmatch(r'project\.entry-points\."?([^"]+)"?', name)
            table = project if name == "project" else (
                project["entry-points"].setdefault(group.group(1), {}) if group else None)
            continue
        pair = re.fullmatch(r'"?([^"=\s]+)"?\s*=\s*"([^"]*)"', line)
        if pair and table is not None:
            table[pair.group(1)] = pair.group(2)
    return {"project": project}


def read_project(root: Path) -> tuple[str, str, dict[str, dict[str, str]]]:
    """(name, version, entry-point groups) of the project at ``root``."""
    text = (root / "pyproject.toml").read_text()
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]

        data = tomllib.loads(text)
    except ImportError:  # Python < 3.11
        data = _parse_toml_subset(text)
    project = data["project"]
    version = project.get("version") or package_version(root, project["name"])
    return project["name"], version, project.get("entry-points", {})


def package_version(root: Path, dist_name: str) -> str:
    """The package's ``__version__`` (pyproject.toml takes it from there:
    ``[tool.setuptools.dynamic]``), read from the source without importing
    it; where ``root`` has no source package (a copy of the repository
    tested against an installed wheel), the installed distribution's."""
    init = root / "vllm_moe_align_plugin" / "__init__.py"
    if not init.exists():
        import importlib.metadata

        return importlib.metadata.version(dist_name)
    m = re.search(r'^__version__\s*=\s*"([^"]+)"', init.read_text(), re.M)
    if m is None:
        raise ValueError(f"no __version__ = \"...\" line in {init}")
    return m.group(1)


def write_metadata(root: Path, meta: Path) -> Path:
    """Replaces ``meta``'s content with the project's dist-info; returns it."""
    name, version, groups = read_project(root)
    dist = meta / f"{re.sub(r'[-_.]+', '_', name)}-{version}.dist-info"
    shutil.rmtree(meta, ignore_errors=True)
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    lines = []
    for group, entries in groups.items():
        lines.append(f"[{group}]")
        lines += [f"{key} = {value}" for key, value in entries.items()]
        lines.append("")
    (dist / "entry_points.txt").write_text("\n".join(lines))
    return dist


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(f"usage: python -m tools.wheelhouse.inplace PROJECT_ROOT META_DIR\n\n{__doc__}")
    print(write_metadata(Path(sys.argv[1]), Path(sys.argv[2])))
