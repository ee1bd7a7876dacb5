"""vllm-moe-align-plugin: a faster ``moe_align_block_size`` for vLLM.

- ``moe_align_block_size``: the drop-in (vLLM 0.33's signature and contract).
- ``register`` / ``unregister``: vLLM's plugin entry point and its undo
  (``vllm_moe_align_plugin.vllm.runtime``).
- ``reference.moe_align_block_size_reference``: the pure-torch oracle.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .api import moe_align_block_size
from .vllm.runtime import register, unregister

__all__ = ["__version__", "moe_align_block_size", "register", "unregister"]
