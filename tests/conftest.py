"""Shared fixtures: the ``device`` parameter, and the cuda marker on its CUDA cases.
Plain helpers live in helpers.py."""

from __future__ import annotations

import pytest
from helpers import DEVICES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test parametrized on device "cuda" gets the cuda marker."""
    for item in items:
        callspec = getattr(item, "callspec", None)
        if callspec is not None and callspec.params.get("device") == "cuda":
            item.add_marker(pytest.mark.cuda)


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    return request.param
