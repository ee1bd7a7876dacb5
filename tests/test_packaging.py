"""What an install ships: every package of the source tree is listed for the
wheel (an editable install would hide a missing one)."""

from __future__ import annotations

from pathlib import Path

import tomllib

ROOT = Path(__file__).resolve().parents[1]


def test_every_subpackage_is_in_the_wheel() -> None:
    listed = set(tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
                 ["packages"])
    on_disk = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "vllm_moe_align_plugin").rglob("__init__.py")
    }
    assert on_disk == listed, f"pyproject lists {sorted(listed)}, the tree has {sorted(on_disk)}"
