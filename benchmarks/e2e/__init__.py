"""End-to-end vLLM benchmarks: real vLLM runs with and without the plugin.

Shared by every end-to-end benchmark:

- ``models``       the MoE models (config.json, dummy weights): small ones for the
                   offline benchmark, full-size ones for the serving benchmark
                   (``benchmarks.serve``), and token-id prompts;
- ``environment``  the variants' process environments, the engine settings every run
                   shares, process groups that end with their run;
- ``logs``         the plugin's log line, per vLLM process;
- ``attribution``  which GPU work in a profiler trace is an align call, and whose;
- ``trace``        align time per engine step from the workers' traces;
- ``report``       rows, markdown, CSV and charts.

The offline benchmark (``vllm.LLM(...).generate``): ``offline`` (the driver)
and ``child`` (one run in its own process); ``python -m benchmarks.e2e``.
"""
