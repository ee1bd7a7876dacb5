"""The offline load: ``vllm.LLM(...).generate`` with and without the plugin.

``driver`` (runs, checks, report files), ``child`` (one run in its own process),
``report`` (its rows, markdown and chart); ``python -m benchmarks.vllm_ab.offline``.
"""
