"""Statistics of an A/B run: per-arm intervals and the paired plugin/baseline ratio.

A run has ``n`` rounds; in each round both arms ran the same load (same
prompts, same concurrency) close together in time. Each round of an arm gives
one value per metric (output tokens/s, TTFT, TPOT as ``vllm bench serve``
reports them for that round).

Per arm: the median of the round values, and a 95% t-interval for their mean.
A distribution-free interval for a median needs at least 6 rounds to reach
95% coverage (with n rounds the widest order-statistic interval covers
1 - 2 * 0.5**n), so with the 3-5 rounds a GPU budget allows only a
t-interval is usable; each round value is itself an average over hundreds of
requests, so it is close to normal.

Plugin/baseline: a t-interval on the paired log-ratios
``d_i = ln(plugin_i / baseline_i)``, back-transformed:
``exp(mean(d) +- t(0.975, n-1) * sd(d) / sqrt(n))``, point estimate
``exp(mean(d))`` (the geometric mean ratio). Why this and not a bootstrap:
pairing removes what both arms of a round share (GPU clocks and
temperature, server state, time of day), so the log-ratios vary much less than
the raw values; logs make the interval symmetric for ratio and inverse ratio;
and a bootstrap over 3-5 pairs has only a handful of distinct resamples, so
its percentile interval is far too narrow. Where the interval contains 1 the
report says "no significant difference".

Plain Python (no scipy): Student's t quantile from the regularized incomplete
beta function (continued fraction), inverted by bisection.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Optional

LEVEL = 0.95
NO_DIFFERENCE = "no significant difference"


def _beta_cf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-15
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 500):
        for num in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                    -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + num * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + num / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < eps:
            break
    return h


def incomplete_beta(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta function I_x(a, b), 0 <= x <= 1."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return math.exp(log_front) * _beta_cf(a, b, x) / a
    return 1.0 - math.exp(log_front) * _beta_cf(b, a, 1.0 - x) / b


def t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * incomplete_beta(df / 2.0, 0.5, df / (df + t * t))
    return 1.0 - tail if t >= 0 else tail


def t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t (0.5 < p < 1), ``df`` >= 1."""
    if not 0.5 < p < 1.0 or df < 1:
        raise ValueError(f"need 0.5 < p < 1 and df >= 1, got p={p}, df={df}")
    lo, hi = 0.0, 1.0
    while t_cdf(hi, df) < p:
        hi *= 2.0
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if t_cdf(mid, df) < p:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12 * max(1.0, hi):
            break
    return 0.5 * (lo + hi)


@dataclass(frozen=True)
class Interval:
    """A point estimate with its interval (None where n < 2)."""

    n: int
    point: float
    low: Optional[float] = None
    high: Optional[float] = None

    @property
    def contains_one(self) -> Optional[bool]:
        """Whether 1 lies inside [low, high]; None without an interval."""
        if self.low is None or self.high is None:
            return None
        return self.low <= 1.0 <= self.high


def mean_interval(values: Sequence[float], level: float = LEVEL) -> tuple[float, Optional[float],
                                                                         Optional[float]]:
    """(mean, low, high): the t-interval for the mean of ``values``
    (low/high None for fewer than 2 values)."""
    if not values:
        raise ValueError("no values")
    mean = statistics.fmean(values)
    if len(values) < 2:
        return mean, None, None
    half = t_quantile(0.5 + level / 2.0, len(values) - 1) * statistics.stdev(values) \
        / math.sqrt(len(values))
    return mean, mean - half, mean + half


def arm_interval(values: Sequence[float], level: float = LEVEL) -> Interval:
    """One arm's metric over its rounds: the median, and the t-interval of
    the mean (module docstring: why not an interval for the median)."""
    _, low, high = mean_interval(values, level)
    return Interval(len(values), statistics.median(values), low, high)


def paired_ratio(baseline: Sequence[float], plugin: Sequence[float],
                 level: float = LEVEL) -> Interval:
    """plugin/baseline over paired rounds (same index = same round): the
    geometric mean of the ratios and the back-transformed t-interval of the
    log-ratios. Every value must be > 0."""
    if len(baseline) != len(plugin) or not baseline:
        raise ValueError(f"need the same number (> 0) of values: {len(baseline)} vs {len(plugin)}")
    if min(*baseline, *plugin) <= 0:
        raise ValueError("ratios need positive values")
    logs = [math.log(p / b) for b, p in zip(baseline, plugin)]
    mean, low, high = mean_interval(logs, level)
    if low is None or high is None:
        return Interval(len(logs), math.exp(mean))
    return Interval(len(logs), math.exp(mean), math.exp(low), math.exp(high))


def verdict(ratio: Interval, higher_is_better: bool, subject: str = "plugin") -> str:
    """``<subject> better`` / ``<subject> worse`` (the ratio's numerator arm)
    when the ratio's interval excludes 1, ``no significant difference`` when
    it contains 1, ``-`` without an interval."""
    inside = ratio.contains_one
    if inside is None:
        return "-"
    if inside:
        return NO_DIFFERENCE
    better = ratio.point > 1.0 if higher_is_better else ratio.point < 1.0
    return f"{subject} better" if better else f"{subject} worse"
