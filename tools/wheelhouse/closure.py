"""The requirement closure of a set of wheels on a target.

Every requirement of every wheel (its marker evaluated for the target, extras
not requested) must be bundled in a version it accepts, already present on the
target, or deliberately left out. Needs ``packaging`` (or pip's vendored copy).
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .spec import normalize, platform_machine


def _requirement_class() -> Any:
    try:
        from packaging.requirements import Requirement
    except ImportError:  # pip's vendored copy
        from pip._vendor.packaging.requirements import Requirement  # type: ignore[no-redef]
    return Requirement


def wheel_metadata(path: Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) of a wheel."""
    with zipfile.ZipFile(path) as zf:
        meta_name = next(n for n in zf.namelist() if re.match(r"[^/]+\.dist-info/METADATA$", n))
        text = zf.read(meta_name).decode("utf-8", "replace")
    headers = text.split("\n\n", 1)[0].splitlines()
    get = {k: v for k, _, v in (h.partition(": ") for h in headers) if k in ("Name", "Version")}
    reqs = [h.split(": ", 1)[1] for h in headers if h.startswith("Requires-Dist: ")]
    return get["Name"], get["Version"], reqs


def marker_env(python_version: str, platform: str = "manylinux_2_17_x86_64") -> dict[str, str]:
    """Marker environment of CPython ``python_version`` on Linux, with the
    machine of the wheel platform tag ``platform``."""
    return {
        "python_version": python_version, "python_full_version": python_version + ".0",
        "sys_platform": "linux", "platform_system": "Linux",
        "platform_machine": platform_machine(platform),
        "implementation_name": "cpython", "platform_python_implementation": "CPython",
        "os_name": "posix", "platform_release": "", "platform_version": "", "extra": "",
    }


@dataclass
class ClosureReport:
    """Result of ``check_closure``: requirement -> who needs it, by outcome."""

    bundled: dict[str, str] = field(default_factory=dict)  # name -> version
    on_target: dict[str, list[str]] = field(default_factory=dict)
    left_out: dict[str, list[str]] = field(default_factory=dict)
    missing: dict[str, list[str]] = field(default_factory=dict)
    wrong_version: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.missing and not self.wrong_version

    def lines(self, reasons: dict[str, str]) -> list[str]:
        """A readable report; ``reasons``: left-out name -> why."""
        out = [f"{len(self.bundled)} wheels: "
               + ", ".join(f"{n}=={v}" for n, v in sorted(self.bundled.items())),
               f"on the target already ({len(self.on_target)}): " + ", ".join(sorted(self.on_target))]
        for dep, who in sorted(self.left_out.items()):
            out.append(f"left out: {dep} ({reasons.get(dep, '')}; required by {', '.join(sorted(set(who)))})")
        out += [f"MISSING: {dep} required by {'; '.join(who)}" for dep, who in sorted(self.missing.items())]
        out += [f"VERSION: {line}" for line in self.wrong_version]
        return out


def check_closure(wheels: list[Path], python_version: str, target: set[str],
                  left_out: dict[str, str], platform: str = "manylinux_2_17_x86_64") -> ClosureReport:
    """Sorts every (marker-true, non-extra) requirement of ``wheels`` into
    bundled / on the target / deliberately left out / missing; a bundled
    version outside a requirement's specifier is reported too. ``target`` and
    ``left_out`` hold normalized names."""
    requirement_cls = _requirement_class()
    env = marker_env(python_version, platform)
    report = ClosureReport()
    metas = [wheel_metadata(w) for w in wheels]
    for name, version, _ in metas:
        report.bundled[normalize(name)] = version
    for name, _, reqs in metas:
        for line in reqs:
            req = requirement_cls(line)
            if req.marker is not None and not req.marker.evaluate(env):
                continue
            dep = normalize(req.name)
            if dep in report.bundled:
                if req.specifier and not req.specifier.contains(report.bundled[dep], prereleases=True):
                    report.wrong_version.append(f"{name} needs {line}; bundled {report.bundled[dep]}")
            elif dep in target:
                report.on_target.setdefault(dep, []).append(name)
            elif dep in left_out:
                report.left_out.setdefault(dep, []).append(name)
            else:
                report.missing.setdefault(dep, []).append(f"{name} ({line})")
    return report
