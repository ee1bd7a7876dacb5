"""What an install ships: every package of the imported tree (the source tree,
or an installed wheel) is listed for the wheel (an editable install would hide
a missing one)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

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
