"""The correctness checks of a serving run, per server start.

- Greedy tokens: the same token-id prompts (``models.make_prompts``, fixed
  seed) go to every server through ``POST /v1/completions`` (temperature 0,
  EOS ignored, ``return_token_ids``); every server of both arms must generate
  the same token ids as the first baseline server.
- Plugin line: in the server's log every vLLM process (API server, engine
  core, each worker: ``logs.expected_processes``) of a plugin server logs the
  plugin's " on for vLLM " line once; no process of a baseline server does
  (``logs.check_plugin_log``).
- Compiled graph: every server's printed computation graph (``compiled``)
  must be the first server's, and its capture sizes are recorded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Union

from benchmarks.vllm_ab import logs
from benchmarks.vllm_ab.models import make_prompts

Tokens = list[list[int]]


@dataclass(frozen=True)
class GreedySpec:
    """The greedy requests: ``prompts`` prompts of ``min_len``-``max_len``
    token ids, ``max_tokens`` generated tokens each."""

    prompts: int = 8
    min_len: int = 16
    max_len: int = 256
    max_tokens: int = 32
    seed: int = 1234

    def token_prompts(self, vocab_size: int) -> Tokens:
        return make_prompts(self.prompts, self.min_len, self.max_len, vocab_size, self.seed)


def completion_payload(model: str, prompts: Tokens, max_tokens: int) -> dict[str, Any]:
    """The ``/v1/completions`` body: a batch of token-id prompts, greedy."""
    return {"model": model, "prompt": prompts, "max_tokens": max_tokens, "temperature": 0.0,
            "ignore_eos": True, "return_token_ids": True, "stream": False}


def tokens_from_response(response: dict[str, Any], count: int) -> Union[Tokens, list[str]]:
    """The generated token ids per prompt (choices ordered by ``index``);
    the texts instead where the server returned no ``token_ids``."""
    choices = sorted(response.get("choices", []), key=lambda c: c.get("index", 0))
    if len(choices) != count:
        raise ValueError(f"{len(choices)} choices for {count} prompts")
    if all(isinstance(c.get("token_ids"), list) for c in choices):
        return [[int(t) for t in c["token_ids"]] for c in choices]
    return [str(c.get("text", "")) for c in choices]


def compare_tokens(reference: Any, other: Any) -> Optional[str]:
    """None when ``other`` equals ``reference`` (same prompts' outputs),
    else what differs: how many prompts, and the first differing position."""
    if reference == other:
        return None
    if not isinstance(reference, list) or not isinstance(other, list) or len(reference) != len(other):
        return "the outputs differ in shape"
    diff = [i for i, (a, b) in enumerate(zip(reference, other)) if a != b]
    i = diff[0]
    a, b = reference[i], other[i]
    pos = next((k for k, (x, y) in enumerate(zip(a, b)) if x != y), min(len(a), len(b)))
    return (f"{len(diff)} of {len(reference)} prompts differ (first: prompt {i} at position "
            f"{pos})")


@dataclass
class ServerCheck:
    """The checks of one server start."""

    tag: str
    arm: str
    processes: str = "-"  # "<with plugin line>/<processes logged>"
    plugin_problems: Optional[list[str]] = None
    tokens: Optional[Any] = None
    token_problem: Optional[str] = None
    ready_s: Optional[float] = None
    reference: bool = False  # its tokens are the ones the others are compared with
    graph: Optional[str] = None  # compiled.CompileInfo.graph
    graph_problem: Optional[str] = None  # differs from the first server's graph
    capture_sizes: Optional[str] = None
    max_num_batched_tokens: Optional[int] = None
    compile_cache: Optional[str] = None  # compiled.CompileInfo.cache

    @property
    def tokens_verdict(self) -> str:
        """What the report says about this server's greedy tokens."""
        if self.token_problem:
            return self.token_problem
        if self.tokens is None:
            return "-"
        return "reference" if self.reference else "identical"

    @property
    def graph_verdict(self) -> str:
        """What the report says about this server's compiled graph."""
        if self.graph is None:
            return "-"
        return f"{self.graph}{': DIFFERS' if self.graph_problem else ''}"

    @property
    def ok(self) -> bool:
        return (not self.plugin_problems and not self.token_problem and not self.graph_problem
                and self.tokens is not None)


def plugin_check(log_text: str, arm: str, tp: int, dp: int = 1,
                 dependent_launch: bool = False) -> tuple[str, list[str]]:
    """(summary "k/n", problems) of a server's log for an arm
    (``logs.check_plugin_log``)."""
    log = logs.parse_plugin_log(log_text)
    return log.summary, logs.check_plugin_log(log, arm, tp, dp, dependent_launch)
