"""The op equals the pure-torch reference, bit for bit, on every device."""

from __future__ import annotations

import itertools

import pytest
import torch
from helpers import POISON, assert_same, poisoned, random_expert_map, random_routes
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vllm_moe_align_plugin import contract as C
from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.api import drop_in_for
from vllm_moe_align_plugin.bench import SERVING_CASES, Case
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

NUMELS = [0, 1, 7, 64, 1000, 4096, 8192, 8193, 20000, 65536]
EXPERTS = [1, 8, 64, 128, 160, 256, 257, 384, 512, 1024]
BLOCKS = [1, 16, 64, 128, 256, 3]
TOPKS = [1, 2, 8, 16, 6]


def _grid() -> list[tuple[int, int, int, int]]:
    """Every numel x num_experts pair, with block sizes and top_k cycled so each
    value meets many others, plus vLLM's decode and prefill shapes."""
    cases = []
    cycle = itertools.count()
    for numel, experts in itertools.product(NUMELS, EXPERTS):
        k = next(cycle)
        cases.append((numel, experts, BLOCKS[k % len(BLOCKS)], TOPKS[k % len(TOPKS)]))
    cases += [
        (8, 256, 16, 8), (2048, 256, 16, 8), (2560, 512, 16, 10), (8192, 64, 128, 2),
        (32768, 128, 64, 8), (40960, 512, 64, 10), (131072, 256, 128, 8),
        (1 << 19, 256, 128, 8), (1 << 19, 1024, 256, 16), (1 << 19, 8, 1, 2),
    ]
    return cases


GRID = _grid()


@pytest.mark.parametrize("numel,num_experts,block_size,top_k", GRID)
def test_grid(device: str, numel: int, num_experts: int, block_size: int, top_k: int) -> None:
    seed = numel * 7 + num_experts * 13 + block_size
    ids = random_routes(numel, num_experts, top_k=top_k, seed=seed, skew=seed % 3 == 0)
    want = reference(ids, block_size, num_experts)
    got = moe_align_block_size(ids.to(device), block_size, num_experts)
    assert_same(got, want, f"numel={numel} E={num_experts} B={block_size}")


@pytest.mark.parametrize("case", SERVING_CASES, ids=lambda c: c.label)
def test_serving_shapes(device: str, case: Case) -> None:
    """The serving models' shapes of the benchmark grid (random ids) equal the reference."""
    ids = random_routes(case.numel, case.num_experts, top_k=case.top_k, seed=case.numel + case.num_experts)
    want = reference(ids, case.block_size, case.num_experts)
    got = moe_align_block_size(ids.to(device), case.block_size, case.num_experts)
    assert_same(got, want, case.label)


OPTION_CASES = [
    # numel, E, B
    (0, 64, 16), (5, 256, 16), (300, 64, 16), (4000, 160, 64), (12000, 257, 32),
    (70000, 384, 128),
]


@pytest.mark.parametrize("numel,num_experts,block_size", OPTION_CASES)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64, torch.int16])
@pytest.mark.parametrize("map_mode", ["none", "map_after", "map_while_counting"])
@pytest.mark.parametrize("pad_sorted_ids", [False, True])
def test_options(
    device: str, numel: int, num_experts: int, block_size: int, dtype: torch.dtype,
    map_mode: str, pad_sorted_ids: bool,
) -> None:
    """expert_map both ways, pad_sorted_ids, id dtypes, invalid ids, scatter_idx."""
    seed = numel + num_experts + block_size
    ids = random_routes(numel, num_experts, top_k=2 if numel % 2 == 0 else 1, dtype=dtype,
                        invalid_frac=0.1, seed=seed)
    emap = None if map_mode == "none" else random_expert_map(num_experts, seed=seed)
    ignore = map_mode == "map_while_counting"
    scatter = map_mode != "map_after"
    want = reference(ids, block_size, num_experts, emap, pad_sorted_ids, ignore,
                     return_scatter_idx=scatter)
    got = moe_align_block_size(
        ids.to(device), block_size, num_experts,
        None if emap is None else emap.to(device), pad_sorted_ids, ignore,
        return_scatter_idx=scatter,
    )
    assert_same(got, want, f"{map_mode} pad={pad_sorted_ids} {dtype}")


@pytest.mark.parametrize("contract", C.ALL, ids=lambda c: c.name)
@pytest.mark.parametrize("numel,num_experts,block_size", [(3, 64, 16), (0, 8, 4), (5000, 128, 64)])
@pytest.mark.parametrize("with_map", [False, True])
def test_contract_versions(
    device: str, contract: C.Contract, numel: int, num_experts: int, block_size: int,
    with_map: bool,
) -> None:
    """Each vLLM line's drop-in returns that line's contract (sizes, tail value,
    the expert_map lookup of the tail)."""
    fn = drop_in_for(contract)
    ids = random_routes(numel, num_experts, invalid_frac=0.05, seed=numel)
    emap = random_expert_map(num_experts, seed=numel) if with_map else None
    want = reference(ids, block_size, num_experts, emap, contract=contract)
    got = fn(ids.to(device), block_size, num_experts, None if emap is None else emap.to(device))
    assert_same(got, want, contract.name)
    if contract.has_ignore_invalid_experts and with_map:
        want = reference(ids, block_size, num_experts, emap, True, True, contract=contract)
        got = fn(ids.to(device), block_size, num_experts, emap.to(device), True, True)
        assert_same(got, want, contract.name + " ignore_invalid")


@pytest.mark.parametrize("numel,num_experts,block_size", [(0, 16, 8), (33, 16, 8), (9000, 256, 64),
                                                          (70000, 64, 16)])
@pytest.mark.parametrize("ignore", [False, True])
def test_out_variant_writes_every_element(
    device: str, numel: int, num_experts: int, block_size: int, ignore: bool
) -> None:
    """Poisoned buffers (larger than needed, as callers may pass): nothing
    survives, and the result equals the reference over the same sizes."""
    ids = random_routes(numel, num_experts, invalid_frac=0.1, seed=numel, device=device)
    emap = random_expert_map(num_experts, seed=3, device=device)
    size = numel + num_experts * (block_size - 1) + 37
    blocks = (size + block_size - 1) // block_size + 5
    sorted_ids, expert_ids = poisoned(size, device), poisoned(blocks, device)
    post_pad, scatter = poisoned(1, device), poisoned(0, device, (numel, 1))
    torch.ops.vllm_moe_align.moe_align_block_size_out(
        ids, num_experts, block_size, sorted_ids, expert_ids, post_pad, emap,
        scatter if ignore else None, ignore, -1,
    )
    for t in (sorted_ids, expert_ids, post_pad) + ((scatter,) if ignore else ()):
        assert not (t == POISON).any()
    want = reference(ids.cpu(), block_size, num_experts, emap.cpu(), False, ignore,
                     return_scatter_idx=ignore)
    total = int(want[2])
    assert int(post_pad) == total
    assert torch.equal(sorted_ids[:total].cpu(), want[0][:total])
    assert (sorted_ids[total:] == numel).all()
    tail = int(emap[-1]) if not ignore else -1
    assert torch.equal(expert_ids[: total // block_size].cpu(), want[1][: total // block_size])
    assert (expert_ids[total // block_size:] == tail).all()
    if ignore:
        assert torch.equal(scatter.cpu(), want[3])


def _decode_rows() -> list[list[int]]:
    """One token's eight routes (E=256) with 0 to 8 distinct experts in range,
    the rest repeats of the first or out of range (300): every count of used
    blocks a decode call can have at B=16."""
    rows = []
    for d in range(9):
        distinct = [3 + 31 * j for j in range(d)]
        rows.append(distinct + [distinct[0] if d else 300] * (8 - d))
        rows.append(distinct + [300] * (8 - d))
    return rows


@pytest.mark.parametrize("offset", range(8))
@pytest.mark.parametrize("map_mode", ["none", "map_after", "map_while_counting"])
def test_expert_ids_at_every_offset_in_a_sector(device: str, offset: int, map_mode: str) -> None:
    """The decode call's expert_ids buffer starting at each int32 of a 32-byte
    sector (a view into a larger, poisoned buffer), for every count of used
    blocks: the result is the reference's, and nothing before or after the
    buffer is written (the blocks past the used ones may be written in one
    store with the segments' ids, up to the next sector boundary)."""
    E, B = 256, 16
    emap = random_expert_map(E, seed=5, device=device) if map_mode != "none" else None
    ignore = map_mode == "map_while_counting"
    size = C.NEWEST.max_num_tokens_padded(8, E, B, False)
    blocks = (size + B - 1) // B
    for row in _decode_rows():
        ids = torch.tensor([row], dtype=torch.int32, device=device)
        pool = poisoned(offset + blocks + 16, device)
        sorted_ids, expert_ids = poisoned(size, device), pool[offset: offset + blocks]
        post_pad, scatter = poisoned(1, device), poisoned(0, device, (8, 1))
        torch.ops.vllm_moe_align.moe_align_block_size_out(
            ids, E, B, sorted_ids, expert_ids, post_pad, emap, scatter if ignore else None,
            ignore, C.NEWEST.expert_ids_tail,
        )
        what = f"ids={row} offset={offset} {map_mode}"
        want = reference(ids.cpu(), B, E, None if emap is None else emap.cpu(), False, ignore,
                         return_scatter_idx=ignore)
        got = (sorted_ids, expert_ids, post_pad) + ((scatter,) if ignore else ())
        assert_same(got, want, what)
        assert (pool[:offset] == POISON).all(), what
        assert (pool[offset + blocks:] == POISON).all(), what


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    numel=st.integers(0, 3000),
    num_experts=st.integers(1, 300),
    block_size=st.integers(1, 64),
    dtype=st.sampled_from([torch.int32, torch.int64, torch.int8, torch.uint8]),
    map_mode=st.sampled_from(["none", "map_after", "map_while_counting"]),
    pad=st.booleans(),
    invalid=st.sampled_from([0.0, 0.3]),
    skew=st.booleans(),
    seed=st.integers(0, 2**16),
)
def test_property(
    numel: int, num_experts: int, block_size: int, dtype: torch.dtype, map_mode: str,
    pad: bool, invalid: float, skew: bool, seed: int,
) -> None:
    if dtype in (torch.int8, torch.uint8):
        num_experts = min(num_experts, 100)  # ids must fit the dtype
    ids = random_routes(numel, num_experts, dtype=dtype, invalid_frac=invalid, skew=skew, seed=seed)
    emap = None if map_mode == "none" else random_expert_map(num_experts, seed=seed)
    ignore = map_mode == "map_while_counting"
    want = reference(ids, block_size, num_experts, emap, pad, ignore)
    for dev in ["cpu"] + (["cuda"] if torch.cuda.is_available() else []):
        got = moe_align_block_size(ids.to(dev), block_size, num_experts,
                                   None if emap is None else emap.to(dev), pad, ignore)
        assert_same(got, want, f"{dev} seed={seed}")


@pytest.mark.parametrize("num_experts", [1, 8, 64, 257, 511, 512, 4096])
@pytest.mark.parametrize("block_size", [1, 3, 16])
def test_two_routes_a_lane(device: str, num_experts: int, block_size: int) -> None:
    """Every call of 33 to 64 routes (the GPU's decode kernel with two routes a lane) equals the
    reference: random ids with invalid ones among them, all routes on one expert (with block
    size 1 a segment of 64 blocks, the most there can be), and a map applied while counting."""
    for numel in range(33, 65):
        emap = random_expert_map(num_experts, seed=numel)
        cases = [
            (random_routes(numel, num_experts, invalid_frac=0.2, skew=numel % 2 == 0, seed=numel), None),
            (torch.full((numel,), num_experts - 1, dtype=torch.int32), None),
            (random_routes(numel, num_experts, invalid_frac=0.1, seed=numel + 1), emap),
        ]
        for ids, m in cases:
            want = reference(ids, block_size, num_experts, m, False, m is not None)
            got = moe_align_block_size(ids.to(device), block_size, num_experts,
                                       None if m is None else m.to(device), False, m is not None)
            assert_same(got, want, f"numel={numel} E={num_experts} B={block_size} map={m is not None}")


def test_non_contiguous_ids(device: str) -> None:
    ids = random_routes(4096, 64, top_k=8, seed=5).t()  # a transposed view
    assert not ids.is_contiguous()
    want = reference(ids, 16, 64)
    assert_same(moe_align_block_size(ids.to(device), 16, 64), want, "non-contiguous")


def test_reference_matches_vllm_docstring_example() -> None:
    """The worked example of vLLM's docstring (with expert ids 1..4 remapped
    to 0..3 so they are valid for num_experts=4)."""
    ids = torch.tensor([[2, 3, 4], [1, 2, 4], [1, 3, 4], [1, 2, 3]]) - 1
    sorted_ids, expert_ids, post_pad = moe_align_block_size(ids, 4, 4)
    assert sorted_ids[:16].tolist() == [3, 6, 9, 12, 0, 4, 10, 12, 1, 7, 11, 12, 2, 5, 8, 12]
    assert expert_ids[:4].tolist() == [0, 1, 2, 3]
    assert post_pad.tolist() == [16]
