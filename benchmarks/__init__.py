"""Benchmarks of the plugin, run from the repository root as modules:

- ``python -m benchmarks.benchmark_moe_align_block_size``: the kernel benchmark;
- ``python -m benchmarks.launch_model``: launches and bytes per call against measured time;
- ``python -m benchmarks.vllm_ab offline|serve``: vLLM with and without the plugin (the A/B
  harness: offline inference, or ``vllm serve`` under load).
"""
