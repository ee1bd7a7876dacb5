"""Serving benchmark: ``vllm serve`` with and without the plugin, paired A/B rounds.

``python -m benchmarks.vllm_ab.serve [options]`` (``--help``; ``--dry-run`` prints the
plan and commands). For each model shape (``benchmarks.vllm_ab.models.FULL_MODELS``:
full-size configs, dummy weights, a generated tokenizer) the harness runs the
OpenAI-compatible server with vLLM's default settings, loads it with vLLM's
own client ``vllm bench serve`` (random dataset, fixed seeds) at several
concurrency levels, in paired rounds that alternate the arms (baseline:
vLLM's ``moe_align_block_size``; plugin: this package's), and reports per arm
the median and 95% interval of output tokens/s, TTFT and TPOT, and the
plugin/baseline ratios with their 95% intervals. It checks that greedy
requests give identical tokens in every server and that every server process
of the plugin arm logged the plugin's line, and exits non-zero otherwise.

Modules: ``options`` (command line, strategy choice), ``commands`` (server
and client command lines, environments), ``cli_check`` (those command lines
through the installed vLLM's parsers, before anything starts), ``tokenizer``
(the generated tokenizer), ``server`` (process tree, readiness, HTTP, stop),
``jobs`` (loads, warm-up, checks, profiled loads on a running server),
``results`` (the client's result JSON), ``checks`` (greedy tokens, plugin
line), ``profiling`` (traces of the profiled loads), ``summary`` (records to
intervals, with the shared ``benchmarks.vllm_ab.stats``), ``report``
(markdown, CSV, chart), ``state`` (what a run finished, for ``--resume``),
``driver`` (strategies and rounds of one model), ``__main__`` (all models,
exit status); the CPU tests run all of it against a stand-in vLLM
(``tests/vllm_serve_standin.py``). How to run it on GPU machines:
``benchmarks/vllm_ab/serve/README.md``.
"""
