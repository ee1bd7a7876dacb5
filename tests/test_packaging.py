"""What an install ships: every package of the imported tree (the source tree,
or an installed wheel) is listed for the wheel (an editable install would hide
a missing one)."""

from __future__ import annotations

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
