"""vllm-moe-align-plugin: a faster ``moe_align_block_size`` for vLLM.

- ``moe_align_block_size``: the drop-in (vLLM 0.33's signature and contract).
- ``fused_globalize_align_block_size``: vLLM 0.33's fused globalize + align
  of DeepEP v2's decode path (``globalize``; CPU kernel so far).
- ``register`` / ``unregister``: vLLM's plugin entry point and its undo
  (``vllm_moe_align_plugin.vllm.runtime``).
- ``reference.moe_align_block_size_reference``: the pure-torch oracle.

Importing the package imports neither torch nor the compiled library (so
patching a vLLM tree needs neither); the functions load both on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

__all__ = ["__version__", "fused_globalize_align_block_size", "moe_align_block_size", "register",
           "unregister"]

# The functions imported when first asked for: name -> module. ``register``
# too (vLLM's entry point reads it with getattr), so the package root imports
# none of its modules and the runtime may read ``__version__`` from it.
_LAZY = {"moe_align_block_size": "api", "fused_globalize_align_block_size": "globalize",
         "register": "vllm.runtime", "unregister": "vllm.runtime"}


def __getattr__(name: str) -> Any:
    """The functions of ``_LAZY``, imported from their module when first asked for."""
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
