"""Shared fixtures: the ``device`` parameter, and the cuda marker on its CUDA
cases; ``launch_mode``, programmatic dependent launch off and on. Plain
helpers live in helpers.py."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from helpers import DEVICES

from vllm_moe_align_plugin import _ops


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test parametrized on device "cuda" gets the cuda marker."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "cuda":
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture(params=[False, True], ids=["launch", "dependent-launch"])
def launch_mode(request: pytest.FixtureRequest) -> Iterator[bool]:
    """Runs a CUDA test with programmatic dependent launch off, then on (on
    GPUs of compute capability 9.0 and newer it changes how the kernels
    start; elsewhere both runs launch the same way)."""
    before = _ops.dependent_launch()
    _ops.dependent_launch(request.param)
    yield request.param
    _ops.dependent_launch(before)
