"""What vLLM's engine measured during a load, read from the server's ``/metrics``.

The client (``vllm bench serve``) times each token when it reaches the
client: after the engine core made it, the API server detokenized and
streamed it, and the client's own event loop read it. When either of those
processes is busy all the time (many requests in flight), the client's times
follow the host as much as the GPU. The API server also keeps Prometheus
histograms whose gaps between a request's tokens are read on the engine
core's clock (vLLM 0.26: the time the engine core built each step's
outputs), so the host between engine and client stays out of them:

- ``vllm:inter_token_latency_seconds``: every gap between two tokens of a
  request;
- ``vllm:iteration_tokens_total``: tokens per engine step that produced
  output, one observation a step;
- counters ``vllm:generation_tokens_total`` and
  ``vllm:num_preemptions_total``.

``scrape`` reads them (summed over label sets: engines, models); ``window``
takes two scrapes, one before and one after a load, and gives the load's own
figures (the ``FIELDS`` of ``results.JobRecord``):

- ``engine_itl_mean_ms``: mean gap between two tokens of a request (with
  every request of a load as long as the others, the mean of the requests'
  TPOTs on the engine's clock);
- ``engine_itl_fast_share``: share of the gaps inside the histogram's first
  bucket (``FAST_S``, 10 ms); where a load's decode-only steps are shorter
  than that and its steps with a prefill chunk longer, it is the share of
  decode-only steps (near one half, a load's median ITL jumps between the
  two kinds of step);
- ``engine_steps``: engine steps that produced tokens;
- ``preemptions``: requests preempted (KV cache full) during the load.

The API server records a step's figures just after it hands the step's tokens
on, so a scrape right after the last token may miss the last step:
``settle`` scrapes again until the generation-token counter has grown by the
load's output tokens.
"""

from __future__ import annotations

import re
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from typing import Optional

ITL = "vllm:inter_token_latency_seconds"
STEPS = "vllm:iteration_tokens_total"
TOKENS = "vllm:generation_tokens_total"
PREEMPTIONS = "vllm:num_preemptions_total"
FAST_S = "0.01"  # the ITL histogram's first bucket bound (s), as vLLM writes it
FAST_BUCKET = f"{ITL}_bucket:le={FAST_S}"
# the series read: histogram sums and counts, one bucket, counters
SERIES = (f"{ITL}_sum", f"{ITL}_count", FAST_BUCKET, f"{STEPS}_count", TOKENS, PREEMPTIONS)
# the JobRecord fields ``window`` fills
FIELDS = ("engine_itl_mean_ms", "engine_itl_fast_share", "engine_steps", "preemptions")

_SAMPLE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(?:\{(.*)\})?\s+(\S+)")
_LE = re.compile(r'(?:^|,)\s*le="([^"]*)"')

Sample = dict[str, float]


def parse(text: str) -> Sample:
    """The ``SERIES`` in Prometheus text ``text``, each summed over its label
    sets (a bucket keyed ``<name>_bucket:le=<bound>``); a series not in the
    text is left out."""
    out: Sample = {}
    for line in text.splitlines():
        m = _SAMPLE.match(line)
        if not m:
            continue  # comments (# HELP, # TYPE) and blank lines
        name, labels, value = m.groups()
        if name.endswith("_bucket"):
            le = _LE.search(labels or "")
            name = f"{name}:le={le.group(1)}" if le else name
        if name in SERIES:
            try:
                out[name] = out.get(name, 0.0) + float(value)
            except ValueError:
                continue
    return out


def scrape(url: str, timeout: float = 10.0) -> Optional[Sample]:
    """The ``SERIES`` of the server at ``url`` (``<url>/metrics``); None
    when it cannot be read (a server without metrics, one that stopped)."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=timeout) as resp:
            return parse(resp.read().decode(errors="replace"))
    except (urllib.error.URLError, OSError, ValueError):
        return None


def settle(read: Callable[[], Optional[Sample]], before: Sample, tokens: int,
           timeout: float = 3.0, poll: float = 0.05) -> Optional[Sample]:
    """``read()`` until the generation tokens since ``before`` reach
    ``tokens`` or ``timeout`` seconds pass; the last scrape (None if none
    could be read)."""
    deadline = time.monotonic() + timeout
    while True:
        after = read()
        grown = (after or {}).get(TOKENS, 0.0) - before.get(TOKENS, 0.0)
        if (after is not None and grown >= tokens) or time.monotonic() >= deadline:
            return after
        time.sleep(poll)


def _ratio(num: float, den: float, scale: float = 1.0) -> Optional[float]:
    return num / den * scale if den > 0 else None


def window(before: Optional[Mapping[str, float]],
           after: Optional[Mapping[str, float]]) -> dict[str, Optional[float]]:
    """The load's figures (``FIELDS``) from a scrape before and one after
    it; None where a scrape or a series is missing or nothing was observed."""
    out: dict[str, Optional[float]] = dict.fromkeys(FIELDS)
    if before is None or after is None:
        return out

    def grown(series: str) -> Optional[float]:
        if series not in after:
            return None
        return after[series] - before.get(series, 0.0)

    n, total, fast = grown(f"{ITL}_count"), grown(f"{ITL}_sum"), grown(FAST_BUCKET)
    if n is not None and total is not None:
        out["engine_itl_mean_ms"] = _ratio(total, n, 1e3)
    if n is not None and fast is not None:
        out["engine_itl_fast_share"] = _ratio(fast, n)
    out["engine_steps"] = grown(f"{STEPS}_count")
    out["preemptions"] = grown(PREEMPTIONS)
    return out


def describe(fields: Mapping[str, object]) -> str:
    """``, engine ITL 8.61 ms (62% <= 10 ms), 1480 steps`` for a progress
    line ('' without engine figures), with the preemptions if any."""
    itl, share, steps = (fields.get(k) for k in ("engine_itl_mean_ms", "engine_itl_fast_share",
                                                 "engine_steps"))
    if not isinstance(itl, (int, float)):
        return ""
    text = f", engine ITL {itl:.2f} ms"
    if isinstance(share, (int, float)):
        text += f" ({100 * share:.0f}% <= {float(FAST_S) * 1e3:.0f} ms)"
    if isinstance(steps, (int, float)):
        text += f", {steps:.0f} steps"
    preempted = fields.get("preemptions")
    if isinstance(preempted, (int, float)) and preempted:
        text += f", {preempted:.0f} preemptions"
    return text
