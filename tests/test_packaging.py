"""What an install ships: every package of the imported tree (the source tree,
or an installed wheel) is listed for the wheel (an editable install would hide
a missing one), and the source distribution holds every file the build reads."""

from __future__ import annotations

import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import tomllib

import vllm_moe_align_plugin

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    package = Path(vllm_moe_align_plugin.__file__).parent
    on_disk = {
        ".".join(init.parent.relative_to(package.parent).parts)
        for init in package.rglob("__init__.py")
    }
    assert on_disk == listed, f"pyproject lists {sorted(listed)}, the tree has {sorted(on_disk)}"


ENTRY_POINT_PROBE = """
import sys
import vllm_moe_align_plugin as package
loaded = sorted(m for m in sys.modules if m == "torch" or m.startswith("vllm_moe_align_plugin."))
from importlib.metadata import EntryPoint
register = EntryPoint("moe_align", "vllm_moe_align_plugin:register", "vllm.general_plugins").load()
from vllm_moe_align_plugin.vllm import runtime
print(loaded, register is runtime.register, package.unregister is runtime.unregister)
"""


def test_entry_point_loads_register_from_a_root_that_imports_nothing() -> None:
    """The package root imports none of its modules (nor torch); vLLM's entry
    point (``vllm_moe_align_plugin:register``, read with getattr) still gets
    the runtime's ``register``."""
    out = subprocess.run([sys.executable, "-c", ENTRY_POINT_PROBE], capture_output=True, text=True,
                         cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[] True True", out.stdout


def test_source_distribution_ships_every_file_the_build_reads(tmp_path: Path) -> None:
    """pip builds from the sdist where no wheel fits (another platform, or
    ``--no-binary``): it must hold every file under csrc/, headers included,
    which setuptools leaves out unless MANIFEST.in names them. Built from a
    copy of the sources: an egg-info folder left by an earlier build would
    add the files its SOURCES.txt lists."""
    if not (ROOT / "vllm_moe_align_plugin").is_dir():
        pytest.skip("no source tree here (the suite runs against an installed wheel)")
    src = tmp_path / "src"
    src.mkdir()
    for name in ("setup.py", "pyproject.toml", "README.md", "MANIFEST.in"):
        shutil.copy2(ROOT / name, src / name)
    skip = shutil.ignore_patterns("*.so", "__pycache__", "*.egg-info")
    for name in ("csrc", "vllm_moe_align_plugin"):
        shutil.copytree(ROOT / name, src / name, ignore=skip)
    out = subprocess.run([sys.executable, "setup.py", "-q", "sdist", "--dist-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=src, timeout=300)
    assert out.returncode == 0, out.stderr
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(sdist) as tar:
        shipped = {Path(*Path(m.name).parts[1:]).as_posix() for m in tar.getmembers() if m.isfile()}
    csrc = {p.relative_to(ROOT).as_posix() for p in (ROOT / "csrc").rglob("*") if p.is_file()}
    assert csrc and csrc <= shipped, f"missing from the sdist: {sorted(csrc - shipped)}"
    assert {"setup.py", "pyproject.toml", "vllm_moe_align_plugin/__init__.py"} <= shipped
