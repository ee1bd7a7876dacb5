"""What this process's compiled library was built with, read once.

The library carries its build record (torch version, CUDA archs, nvcc, how it
was built: setup.py's ``build_info_source``) as a string in its file;
``binary.read_build_info`` reads it whether or not the library loaded, and
``build_info`` keeps what it read.
"""

from __future__ import annotations

from typing import Any, Optional

from ..binary import read_build_info
from . import library

_build_info: Optional[dict[str, Any]] = None


def build_info() -> Optional[dict[str, Any]]:
    """What the compiled library was built with (``read_build_info``), cached;
    None when there is no library or it predates build info."""
    global _build_info
    if _build_info is None:
        path = library.binary_path()
        _build_info = read_build_info(path) if path else None
    return _build_info
