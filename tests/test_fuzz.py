"""Seeded differential fuzzing: on every device the op equals the CPU op and the
pure-torch reference, bit for bit, over random cases of every option.

Each case is derived from one integer seed alone (``make_case``), so a failure
is reproduced by its seed: every failure message carries a one-line command.

Environment:

- ``VLLM_MOE_ALIGN_FUZZ_CASES``: cases per device (default ``DEFAULT_CASES``,
  sized for a CPU CI run of about a minute on two cores; ``make stress-gpu``
  runs more).
- ``VLLM_MOE_ALIGN_FUZZ_SEED``: first seed (default 0); case ``i`` has seed
  ``first + i``.
- ``VLLM_MOE_ALIGN_FUZZ_HUGE``: number of opt-in cases of 2^20 to 2^24 routes
  (default 0: skipped; seeds divisible by 8 have exactly 2^24 routes).
- ``VLLM_MOE_ALIGN_FUZZ_REPRO``: ``small:SEED`` or ``huge:SEED``: ``test_repro``
  runs that one case.
"""

from __future__ import annotations

import math
import os
import random
import traceback
from dataclasses import asdict, dataclass
from typing import Callable, Optional

import pytest
import torch
from helpers import POISON, assert_same, call_api, env_int

from vllm_moe_align_plugin import contract as C
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

CASES_ENV = "VLLM_MOE_ALIGN_FUZZ_CASES"
SEED_ENV = "VLLM_MOE_ALIGN_FUZZ_SEED"
HUGE_ENV = "VLLM_MOE_ALIGN_FUZZ_HUGE"
REPRO_ENV = "VLLM_MOE_ALIGN_FUZZ_REPRO"

DEFAULT_CASES = 10000
BATCH = 500  # cases per pytest test: collection stays small
MAX_REPORTED = 10  # failures listed per batch (all are counted)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1

# Values next to the size-regime boundaries of the kernels (tiny up to 64
# routes; spread up to 8192, in tiles of 32 routes up to 32 x SMs (4224 on an
# H100) and of 64 above; tiles of 1024..16384 routes; warps of 32 or 128).
SPECIAL_NUMELS = [1, 2, 3, 31, 32, 33, 63, 64, 65, 127, 128, 129, 255, 256, 257, 511, 512, 513,
                  1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096, 4097, 4224, 4225, 8191, 8192,
                  8193,
                  16383, 16384, 16385, 32767, 32769, 65535, 65536, 65537, 2**18 - 1, 2**18 + 1,
                  2**20]
SPECIAL_EXPERTS = [1, 2, 3, 4, 7, 8, 16, 31, 32, 33, 64, 127, 128, 129, 255, 256, 257, 384, 511,
                   512, 513, 1023, 1024, 1025, 2047, 2048, 2049, 4095, 4096]
SPECIAL_BLOCKS = [1, 2, 3, 4, 8, 15, 16, 17, 32, 64, 127, 128, 256]
TOP_KS = [1, 2, 4, 6, 8, 10, 16]

DTYPES = {"int32": torch.int32, "int64": torch.int64, "int16": torch.int16,
          "int8": torch.int8, "uint8": torch.uint8}
CONTRACTS = {c.name: c for c in C.ALL}
LAYOUTS = ["flat", "2d", "transposed", "strided", "offset", "scalar"]
DISTS = ["uniform", "hot", "single", "sorted", "zipf", "window"]
MAP_MODES = ["none", "map_after", "map_while_counting"]
MAP_KINDS = ["ep_random", "ep_contiguous", "all_local", "none_local", "junk"]
APIS = ["drop_in", "drop_in_kwargs", "op_level"]


@dataclass(frozen=True)
class Case:
    """One fuzz case; every field follows from ``kind`` and ``seed``."""

    kind: str  # "small" (numel <= 2^20) or "huge" (2^20 < numel <= 2^24)
    seed: int
    numel: int
    num_experts: int
    block_size: int
    dtype: str
    layout: str
    top_k: int
    dist: str
    invalid_frac: float
    contract: str
    api: str
    map_mode: str
    map_kind: str
    ignore_without_map: bool  # ignore_invalid_experts=True with no expert_map
    pad_sorted_ids: bool
    return_scatter_idx: bool
    slack: int  # op_level: extra sorted_token_ids slots (expert_ids gets slack // 16 + 1 blocks)

    def describe(self) -> str:
        fields = asdict(self)
        fields["invalid_frac"] = round(self.invalid_frac, 3)
        return " ".join(f"{k}={v}" for k, v in fields.items())

    def repro(self) -> str:
        """A one-line command that reruns exactly this case, then its parameters."""
        return (f"{REPRO_ENV}={self.kind}:{self.seed} python -m pytest -q tests/test_fuzz.py::test_repro"
                f"  # {self.describe()}")


def _loguniform(rng: random.Random, lo: int, hi: int) -> int:
    """An integer in [lo, hi], log-uniformly (lo >= 1)."""
    return min(hi, max(lo, int(math.exp(rng.uniform(math.log(lo), math.log(hi + 1))))))


def make_case(seed: int, kind: str = "small") -> Case:
    """The case of ``seed``: mostly small inputs, every option, the kernels'
    regime boundaries often."""
    rng = random.Random(f"moe-align-fuzz-{kind}-{seed}")
    if kind == "huge":
        numel = 2**24 if seed % 8 == 0 else _loguniform(rng, 2**20 + 1, 2**24)
    else:
        r = rng.random()
        if r < 0.05:
            numel = 0
        elif r < 0.17:
            numel = rng.choice(SPECIAL_NUMELS)
        elif r < 0.96:
            numel = _loguniform(rng, 1, 2**16)
        else:
            numel = _loguniform(rng, 2**16, 2**20)
    num_experts = rng.choice(SPECIAL_EXPERTS) if rng.random() < 0.2 else _loguniform(rng, 1, 4096)
    r = rng.random()
    if r < 0.25:
        block_size = rng.choice(SPECIAL_BLOCKS)
    elif r < 0.97:
        block_size = _loguniform(rng, 1, 256)
    else:  # up to the op's limit
        block_size = rng.choice([1024, _loguniform(rng, 257, 1024)])
    dtype = rng.choices(list(DTYPES), weights=[40, 33, 19, 4, 4])[0]
    if dtype == "int8":
        num_experts = min(num_experts, 120)  # ids up to num_experts + 7 must fit
    elif dtype == "uint8":
        num_experts = min(num_experts, 248)
    layout = rng.choices(LAYOUTS, weights=[30, 40, 10, 10, 7, 3])[0]
    top_k = rng.choice([k for k in TOP_KS if numel % k == 0] or [1])
    if layout in ("2d", "transposed") and top_k == 1:
        layout = "flat"
    if layout == "scalar" and numel != 1:
        layout = "offset"
    dist = rng.choices(DISTS, weights=[40, 18, 7, 10, 15, 10])[0]
    invalid_frac = 0.0 if rng.random() < 0.4 else rng.uniform(0.0, 0.5)
    contract = CONTRACTS[rng.choice(list(CONTRACTS))]
    api = rng.choices(APIS, weights=[60, 10, 30])[0]
    map_mode = rng.choices(MAP_MODES, weights=[40, 30, 30])[0]
    if map_mode == "map_while_counting" and not contract.has_ignore_invalid_experts:
        map_mode = "map_after"
    if api == "op_level" and map_mode == "map_after":  # the op-level wrapper maps while counting
        map_mode = "map_while_counting" if contract.has_ignore_invalid_experts else "none"
    map_kind = rng.choices(MAP_KINDS, weights=[35, 25, 15, 10, 15])[0] if map_mode != "none" else "-"
    ignore_without_map = (map_mode == "none" and api != "op_level"
                          and contract.has_ignore_invalid_experts and rng.random() < 0.2)
    pad_sorted_ids = rng.random() < 0.5
    scatter_ok = contract.has_scatter_idx and map_mode != "map_after"
    return_scatter_idx = scatter_ok and rng.random() < 0.5
    slack = rng.choice([0, 0, 0, 1, rng.randint(2, 100)]) if api == "op_level" else 0
    return Case(kind, seed, numel, num_experts, block_size, dtype, layout, top_k, dist,
                invalid_frac, contract.name, api, map_mode, map_kind, ignore_without_map,
                pad_sorted_ids, return_scatter_idx, slack)


def _invalid_pool(num_experts: int, dtype: torch.dtype) -> list[int]:
    """Ids the op must drop, as far as ``dtype`` holds them: just outside the
    range, the dtype's extremes, and int64 ids whose low 32 bits are a valid
    expert (a kernel truncating to int32 would count them)."""
    info = torch.iinfo(dtype)
    pool = [-1, -2, -3, -5, num_experts, num_experts + 1, num_experts + 7, info.max, info.min]
    if dtype == torch.int64:
        pool += [2**31, INT32_MIN - 1, 2**32, 2**32 + num_experts - 1, -(2**32) + 1, -(2**40), 2**40]
    return sorted({v for v in pool if info.min <= v <= info.max and not 0 <= v < num_experts})


def make_inputs(case: Case) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """(flat ids on the CPU in the case's dtype, expert_map or None)."""
    n, E = case.numel, case.num_experts
    dtype = DTYPES[case.dtype]
    rng = random.Random(f"inputs-{case.kind}-{case.seed}")
    g = torch.Generator().manual_seed(case.seed + (1 << 40 if case.kind == "huge" else 0))
    if case.dist == "uniform":
        ids = torch.randint(0, E, (n,), generator=g)
    elif case.dist == "hot":
        hot = torch.randint(0, E, (rng.randint(1, min(E, 8)),), generator=g)
        ids = hot[torch.randint(0, hot.numel(), (n,), generator=g)]
    elif case.dist == "single":
        ids = torch.full((n,), rng.randrange(E), dtype=torch.int64)
    elif case.dist == "sorted":
        ids = torch.randint(0, E, (n,), generator=g).sort().values
    elif case.dist == "zipf":
        weights = torch.arange(1, E + 1, dtype=torch.float64) ** -rng.uniform(0.5, 2.0)
        cdf = torch.cumsum(weights, 0) / weights.sum()
        rank = torch.searchsorted(cdf, torch.rand(n, generator=g, dtype=torch.float64))
        ids = torch.randperm(E, generator=g)[rank.clamp(max=E - 1)]
    else:  # window: a few neighbouring experts, as one EP rank's share
        width = rng.randint(1, max(1, E // 4))
        ids = (rng.randrange(E) + torch.randint(0, width, (n,), generator=g)) % E
    pool = _invalid_pool(E, dtype)
    if case.invalid_frac > 0 and n > 0 and pool:
        bad = torch.rand(n, generator=g) < case.invalid_frac
        values = torch.tensor(pool, dtype=torch.int64)[torch.randint(0, len(pool), (n,), generator=g)]
        ids = torch.where(bad, values, ids)
    ids = ids.to(dtype)

    emap: Optional[torch.Tensor] = None
    if case.map_mode != "none":
        if case.map_kind == "ep_random":
            local = torch.rand(E, generator=g) < rng.uniform(0.1, 0.9)
            emap = torch.full((E,), -1, dtype=torch.int64)
            emap[local] = torch.randperm(int(local.sum()), generator=g)
        elif case.map_kind == "ep_contiguous":  # vLLM's layout: rank r owns a contiguous range
            ranks = rng.choice([r for r in (1, 2, 4, 8, 16, 32) if r <= E])
            per = -(-E // ranks)
            first = rng.randrange(-(-E // per)) * per
            emap = torch.full((E,), -1, dtype=torch.int64)
            emap[first:first + per] = torch.arange(min(per, E - first))
        elif case.map_kind == "all_local":
            emap = torch.randperm(E, generator=g)
        elif case.map_kind == "none_local":
            emap = torch.full((E,), -1, dtype=torch.int64)
        else:  # junk: duplicates, out-of-range local ids, int32 extremes
            emap = torch.randint(-3, E + 4, (E,), generator=g)
            extreme = torch.rand(E, generator=g) < 0.05
            emap = torch.where(extreme, torch.tensor([INT32_MIN, INT32_MAX])[
                torch.randint(0, 2, (E,), generator=g)], emap)
        emap = emap.to(torch.int32)
    return ids, emap


def apply_layout(flat: torch.Tensor, case: Case) -> torch.Tensor:
    """The case's view of ``flat`` (on flat's device): 1-D, [T, k], a transposed
    [k, T] view, every other element of a larger buffer, an offset slice, 0-D."""
    n, k = case.numel, case.top_k
    if case.layout == "2d":
        return flat.view(n // k, k)
    if case.layout == "transposed":
        return flat.view(n // k, k).t()
    if case.layout == "strided":
        base = torch.zeros(2 * n, dtype=flat.dtype, device=flat.device)
        base[::2] = flat
        return base[::2]
    if case.layout == "offset":
        base = torch.full((n + 3,), 1, dtype=flat.dtype, device=flat.device)
        base[3:] = flat
        return base[3:]
    if case.layout == "scalar":
        return flat.view(())
    return flat


def call_op(case: Case, ids: torch.Tensor, emap: Optional[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The plugin's result for ``case`` through the case's entry point (on ids' device)."""
    return call_api(case.api, ids, case.num_experts, case.block_size, emap,
                    contract=CONTRACTS[case.contract], pad_sorted_ids=case.pad_sorted_ids,
                    ignore_invalid_experts=case.map_mode == "map_while_counting" or case.ignore_without_map,
                    return_scatter_idx=case.return_scatter_idx, slack=case.slack)


def expected(case: Case, ids: torch.Tensor, emap: Optional[torch.Tensor]) -> tuple[torch.Tensor, ...]:
    """The reference's result for ``case``; for the op-level entry point with
    oversized buffers, extended by what the op writes there (padding, tail)."""
    contract = CONTRACTS[case.contract]
    ignore = case.map_mode == "map_while_counting" or case.ignore_without_map
    want = reference(ids, case.block_size, case.num_experts, emap, case.pad_sorted_ids, ignore,
                     case.return_scatter_idx, contract=contract)
    if case.api != "op_level" or case.slack == 0:
        return want
    extra_blocks = case.slack // 16 + 1
    size = want[0].numel() + case.slack
    blocks = -(-size // case.block_size) + extra_blocks
    sorted_ids = torch.cat([want[0], torch.full((size - want[0].numel(),), case.numel,
                                                dtype=torch.int32)])
    # the op-level wrapper maps while counting, so the tail is the contract's, unmapped
    tail = torch.full((blocks - want[1].numel(),), contract.expert_ids_tail, dtype=torch.int32)
    return (sorted_ids, torch.cat([want[1], tail])) + want[2:]


def check_case(case: Case, device: str) -> None:
    """Runs one case on the CPU (and on ``device`` when it is not the CPU):
    every result equals the reference bit for bit (and so each other), lives
    on the input's device, and the inputs are left as they were."""
    flat, emap = make_inputs(case)
    ids = apply_layout(flat, case)
    want = expected(case, ids, emap)
    saved = ids.clone()
    devices = ["cpu"] + ([device] if device != "cpu" else [])
    results = {}
    for dev in devices:
        dev_ids = apply_layout(flat.to(dev), case)
        dev_map = None if emap is None else emap.to(dev)
        got = call_op(case, dev_ids, dev_map)
        for t in got:
            assert t.device.type == dev, f"{dev}: an output is on {t.device}"
        assert_same(got, want, f"{dev} vs reference:")
        assert torch.equal(dev_ids.cpu(), saved), f"{dev}: topk_ids was modified"
        if dev_map is not None:
            assert torch.equal(dev_map.cpu(), emap), f"{dev}: expert_map was modified"
        if case.api == "op_level":  # every element of the caller's buffers was written
            for t in got:
                assert not bool((t == POISON).any()), f"{dev}: a buffer slot was not written"
        results[dev] = got
    if device != "cpu":
        assert_same(results[device], results["cpu"], f"{device} vs cpu:")


def _first_seed() -> int:
    return int(os.environ.get(SEED_ENV, "0"))


def run_cases(cases: list[Case], device: str, check: Callable[[Case, str], None] = check_case) -> None:
    """Checks every case; fails once at the end with a reproducer line per
    failing case (the first MAX_REPORTED of them)."""
    failures: list[str] = []
    for case in cases:
        try:
            check(case, device)
        except Exception as exc:  # an op error is a failure of the case too
            first = (str(exc).strip().splitlines() or [""])[0][:300]
            frame = traceback.extract_tb(exc.__traceback__)[-1]
            where = f"{os.path.basename(frame.filename)}:{frame.lineno} {frame.name}"
            failures.append(f"REPRO {case.repro()}  # {device}: {type(exc).__name__} at {where}: {first}")
    if failures:
        shown = "\n".join(failures[:MAX_REPORTED])
        more = len(failures) - MAX_REPORTED
        raise AssertionError(f"{len(failures)} of {len(cases)} fuzz cases failed on {device}:\n{shown}"
                             + (f"\n... and {more} more" if more > 0 else ""))


NUM_CASES = env_int(CASES_ENV, DEFAULT_CASES)
NUM_HUGE = env_int(HUGE_ENV, 0)


@pytest.mark.parametrize("batch", range(max(1, -(-NUM_CASES // BATCH))))
def test_fuzz(device: str, batch: int) -> None:
    """Cases [batch * BATCH, (batch + 1) * BATCH) of this run: the device's op ==
    the CPU op == the reference, bit for bit."""
    first = _first_seed() + batch * BATCH
    last = _first_seed() + min(NUM_CASES, (batch + 1) * BATCH)
    run_cases([make_case(seed) for seed in range(first, last)], device)


@pytest.mark.slow
@pytest.mark.skipif(NUM_HUGE <= 0, reason=f"opt-in: set {HUGE_ENV}=N for N cases of up to 2^24 routes")
@pytest.mark.parametrize("index", range(max(NUM_HUGE, 1)))
def test_fuzz_huge(device: str, index: int) -> None:
    """Opt-in cases of 2^20 to 2^24 routes (every eighth seed exactly 2^24): the
    device's op == the CPU op == the reference."""
    run_cases([make_case(_first_seed() + index, "huge")], device)


@pytest.mark.skipif(not os.environ.get(REPRO_ENV), reason=f"set {REPRO_ENV}=small:SEED to rerun a case")
def test_repro(device: str) -> None:
    """Reruns the one case named by VLLM_MOE_ALIGN_FUZZ_REPRO (from a failure's REPRO line)."""
    kind, _, seed = os.environ[REPRO_ENV].partition(":")
    case = make_case(int(seed), kind)
    print(case.repro())
    run_cases([case], device)


def test_generator_covers_every_option() -> None:
    """The cases of a default-sized run reach every value of every option (so
    a bug in the generator cannot silently drop a dimension) and the sizes'
    extremes; the same seed always gives the same case."""
    cases = [make_case(s) for s in range(_first_seed(), _first_seed() + DEFAULT_CASES)]
    seen: dict[str, set[object]] = {}
    for case in cases:
        for key, value in asdict(case).items():
            seen.setdefault(key, set()).add(value)
    assert seen["dtype"] == set(DTYPES)
    assert seen["contract"] == set(CONTRACTS)
    assert seen["layout"] == set(LAYOUTS)
    assert seen["dist"] == set(DISTS)
    assert seen["api"] == set(APIS)
    assert seen["map_mode"] == set(MAP_MODES)
    assert seen["map_kind"] == set(MAP_KINDS) | {"-"}
    for flag in ("pad_sorted_ids", "return_scatter_idx", "ignore_without_map"):
        assert seen[flag] == {False, True}, flag
    assert {0, 1, 2**20} <= seen["numel"] and max(seen["numel"]) <= 2**20
    assert {1, 4096} <= seen["num_experts"] and max(seen["num_experts"]) <= 4096
    assert {1, 256, 1024} <= seen["block_size"]
    assert sum(c.invalid_frac > 0 for c in cases) > len(cases) // 2
    assert max(c.invalid_frac for c in cases) > 0.45
    assert sum(c.numel > 2**16 for c in cases) >= len(cases) // 50  # a few large ones
    pairs = {(c.contract, c.map_mode) for c in cases}
    for contract in C.ALL:  # both expert_map modes wherever the contract has them
        modes = {"map_after", "map_while_counting"} if contract.has_ignore_invalid_experts else {
            "map_after"}
        assert {(contract.name, m) for m in modes} <= pairs, contract.name
    assert make_case(12345) == make_case(12345)
    flat_a, map_a = make_inputs(make_case(777))
    flat_b, map_b = make_inputs(make_case(777))
    assert torch.equal(flat_a, flat_b) and (map_a is None) == (map_b is None)


def test_a_wrong_result_is_reported_with_its_reproducer() -> None:
    """The harness fails a case whose result differs from the reference, and
    its message holds the REPRO line of that case (seed and parameters)."""
    case = make_case(_first_seed() + 3)

    def off_by_one(c: Case, device: str) -> None:
        flat, emap = make_inputs(c)
        ids = apply_layout(flat, c)
        got = list(call_op(c, ids, emap))
        got[2] = got[2] + 1
        assert_same(tuple(got), expected(c, ids, emap), "mutated")

    with pytest.raises(AssertionError) as info:
        run_cases([case], "cpu", off_by_one)
    text = str(info.value)
    assert f"{REPRO_ENV}=small:{case.seed} " in text
    assert f"numel={case.numel} num_experts={case.num_experts}" in text

