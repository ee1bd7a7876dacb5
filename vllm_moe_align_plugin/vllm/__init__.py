"""Everything that touches vLLM, one job per module:

- ``env``: the off switches and the vLLM version;
- ``runtime``: the plugin entry point, ``register()`` / ``unregister()``,
  patching vLLM's bindings in a running process;
- ``source_patch``: patching a vLLM tree on disk (``vllm-moe-align patch``);
- ``source_hook``: what a statically patched vLLM calls at import time.

Each replacement keeps vLLM's own function as its fallback for devices the
plugin cannot serve (``vllm_moe_align_plugin.devices``).
"""
