"""One A/B harness for vLLM: the same workload with vLLM's ``moe_align_block_size``
and with the plugin's, two loads.

Loads (each a package with a ``driver`` and a ``__main__``):

- ``offline``  ``vllm.LLM(...).generate`` on small dummy-weight models, one run per
               variant in its own process tree, align time per engine step from
               the workers' profiler traces;
- ``serve``    ``vllm serve`` loaded by ``vllm bench serve`` in paired rounds, per
               arm and level the median and 95% interval of tok/s, TTFT and TPOT,
               and the plugin/baseline ratios.

Shared by both:

- ``models``       MoE model configs (small ones for ``offline``, full-size shapes
                   for ``serve``), dummy weights, token-id prompts;
- ``environment``  the arms' process environments, the engine settings every run
                   shares, process groups that end with their run, the machine's name;
- ``logs``         the plugin's log line, per vLLM process;
- ``attribution``  which GPU work in a profiler trace is an align call, and whose;
- ``trace``        align time per engine step from the workers' traces;
- ``stats``        t-intervals of means and of paired ratios;
- ``report``       table cells, CSV and interval charts.

``python -m benchmarks.vllm_ab offline|serve [options]`` runs one load; so do
``python -m benchmarks.vllm_ab.offline`` and ``python -m benchmarks.vllm_ab.serve``.
Nothing here is imported at package import: a baseline run's processes import
only what their load needs. The CPU tests run both loads against stand-in vLLMs
(``tests/vllm_serve_standin.py``, ``tests/fake_trace.py``).
"""
