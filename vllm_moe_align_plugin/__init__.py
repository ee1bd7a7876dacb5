"""vllm-moe-align-plugin: a faster ``moe_align_block_size`` for vLLM.

- ``moe_align_block_size``: the drop-in (vLLM 0.33's signature and contract).
- ``register`` / ``unregister``: vLLM's plugin entry point and its undo
  (``vllm_moe_align_plugin.vllm.runtime``).
- ``reference.moe_align_block_size_reference``: the pure-torch oracle.

Importing the package imports neither torch nor the compiled library (so
patching a vLLM tree needs neither); ``moe_align_block_size`` loads both on
first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from .vllm.runtime import register, unregister

__all__ = ["__version__", "moe_align_block_size", "register", "unregister"]


def __getattr__(name: str) -> Any:
    """``moe_align_block_size``, imported from ``api`` when first asked for."""
    if name == "moe_align_block_size":
        from .api import moe_align_block_size

        globals()[name] = moe_align_block_size
        return moe_align_block_size
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
