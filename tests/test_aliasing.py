"""Aliased arguments of the out-variant: an output that shares memory with
another output or with an input is refused with a ValueError naming both
(csrc/checks.h, check_no_overlap), before anything is written; outputs carved
from one allocation without overlap are accepted and give the reference
result.

Every case runs through the raw op and through the op-level wrapper
(``op_level_for``: the package's function that takes the caller's buffers),
on every device of ``helpers.DEVICES``."""

from __future__ import annotations

import re
from typing import Callable

import pytest
import torch
from helpers import POISON, assert_same, random_expert_map, random_routes

from vllm_moe_align_plugin.api import op_level_for
from vllm_moe_align_plugin.contract import NEWEST
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

OUT = torch.ops.vllm_moe_align.moe_align_block_size_out
E, B = 8, 4
NUMEL = 8  # routes, as topk_ids [4, 2]

OUTPUTS = ("sorted_token_ids", "expert_ids", "num_tokens_post_pad", "scatter_idx")
INPUTS = ("topk_ids", "expert_map")
NAMES = OUTPUTS + INPUTS
# Every pair with at least one output: outputs among themselves, and each
# output with each input (the inputs are only read, so they may share).
PAIRS = [(a, b) for i, a in enumerate(OUTPUTS) for b in OUTPUTS[i + 1:] + INPUTS]


def _sizes(numel: int) -> dict[str, int]:
    size = NEWEST.max_num_tokens_padded(numel, E, B, False)
    return {
        "sorted_token_ids": size,
        "expert_ids": (size + B - 1) // B,
        "num_tokens_post_pad": 1,
        "scatter_idx": numel,
        "topk_ids": numel,
        "expert_map": E,
    }


SIZES = _sizes(NUMEL)
SHAPES = {"scatter_idx": (NUMEL, 1), "topk_ids": (NUMEL // 2, 2)}


def _ids(device: str) -> torch.Tensor:
    return random_routes(NUMEL, E, top_k=2, seed=3, device=device)


def _args(device: str, placed: dict[str, int]) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
    """The out-variant's tensor arguments, and the pool: those in ``placed``
    are views of one int32 pool starting at the given element offsets, the
    others tensors of their own. Outputs start poisoned; topk_ids and
    expert_map get their values (an input written last keeps them where it
    overlaps an output)."""
    pool_size = max(offset + SIZES[name] for name, offset in placed.items())
    pool = torch.full((pool_size,), POISON, dtype=torch.int32, device=device)
    args = {}
    for name in NAMES:
        n = SIZES[name]
        shape = SHAPES.get(name, (n,))
        if name in placed:
            args[name] = pool[placed[name]: placed[name] + n].view(shape)
        else:
            args[name] = torch.full(shape, POISON, dtype=torch.int32, device=device)
    args["topk_ids"].copy_(_ids(device))
    args["expert_map"].copy_(random_expert_map(E, device=device))
    return args, pool


def _raw(a: dict[str, torch.Tensor]) -> None:
    OUT(a["topk_ids"], E, B, a["sorted_token_ids"], a["expert_ids"], a["num_tokens_post_pad"],
        a.get("expert_map"), a.get("scatter_idx"), a.get("expert_map") is not None,
        NEWEST.expert_ids_tail)


def _op_level(a: dict[str, torch.Tensor]) -> None:
    op_level_for(NEWEST)(a["topk_ids"], E, B, a["sorted_token_ids"], a["expert_ids"],
                         a["num_tokens_post_pad"], a.get("expert_map"), a.get("scatter_idx"))


CALLS: dict[str, Callable[[dict[str, torch.Tensor]], None]] = {"raw": _raw, "op_level": _op_level}


def _assert_refused(call: Callable[[], None], a: str, b: str) -> None:
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    for name in (a, b):
        assert re.search(rf"\b{name}\b", message), f"{name} not named in: {message}"
    assert "overlap" in message, message


def _assert_reference(a: dict[str, torch.Tensor], ids: torch.Tensor) -> None:
    emap = a.get("expert_map")
    scatter = a.get("scatter_idx")
    want = reference(ids.cpu(), B, E, None if emap is None else emap.cpu(), False,
                     emap is not None, scatter is not None)
    got = (a["sorted_token_ids"], a["expert_ids"], a["num_tokens_post_pad"])
    assert_same(got + (() if scatter is None else (scatter,)), want)


def _overlapping(a: str, b: str, where: str) -> dict[str, int]:
    """Offsets putting ``b``'s first element at ``a``'s start, middle or last element."""
    n = SIZES[a]
    return {a: 0, b: {"start": 0, "middle": n // 2, "last": n - 1}[where]}


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("where", ["start", "middle", "last"])
@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
def test_overlapping_pair_is_refused(device: str, pair: tuple[str, str], where: str,
                                     call: str) -> None:
    a, b = pair
    args, pool = _args(device, _overlapping(a, b, where))
    before = pool.clone()
    _assert_refused(lambda: CALLS[call](args), a, b)
    assert torch.equal(pool, before), "a refused call wrote into its buffers"


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("case", [
    "sorted_token_ids is topk_ids' memory",
    "num_tokens_post_pad = expert_ids[:1]",
    "num_tokens_post_pad = sorted_token_ids[:1]",
    "sorted_token_ids and expert_ids: two views of one storage",
])
def test_reported_examples_are_refused(device: str, case: str, call: str) -> None:
    """The aliasings first seen to give a wrong result without an error."""
    ids = _ids(device)
    size = SIZES["sorted_token_ids"]
    sorted_ids = torch.full((size,), POISON, dtype=torch.int32, device=device)
    expert_ids = torch.full((SIZES["expert_ids"],), POISON, dtype=torch.int32, device=device)
    post_pad = torch.full((1,), POISON, dtype=torch.int32, device=device)
    if case.startswith("sorted_token_ids is"):
        storage = torch.full((size,), POISON, dtype=torch.int32, device=device)
        storage[:NUMEL].copy_(ids.flatten())
        ids, sorted_ids, names = storage[:NUMEL].view(ids.shape), storage, ("sorted_token_ids",
                                                                              "topk_ids")
    elif case.startswith("num_tokens_post_pad = expert_ids"):
        post_pad, names = expert_ids[:1], ("expert_ids", "num_tokens_post_pad")
    elif case.startswith("num_tokens_post_pad = sorted"):
        post_pad, names = sorted_ids[:1], ("sorted_token_ids", "num_tokens_post_pad")
    else:
        storage = torch.full((size,), POISON, dtype=torch.int32, device=device)
        sorted_ids, expert_ids = storage, storage[size - SIZES["expert_ids"]:]
        names = ("sorted_token_ids", "expert_ids")
    args = {"topk_ids": ids, "sorted_token_ids": sorted_ids, "expert_ids": expert_ids,
            "num_tokens_post_pad": post_pad}
    _assert_refused(lambda: CALLS[call](args), *names)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("order", ["outputs first", "inputs first", "reversed"])
def test_adjacent_views_of_one_buffer_are_accepted(device: str, order: str, call: str) -> None:
    """All six arguments carved back to back from one allocation: each ends
    where the next begins, nothing is shared, the result is the reference's."""
    names = {"outputs first": NAMES, "inputs first": INPUTS + OUTPUTS,
             "reversed": NAMES[::-1]}[order]
    placed, offset = {}, 0
    for name in names:
        placed[name] = offset
        offset += SIZES[name]
    args, _ = _args(device, placed)
    CALLS[call](args)
    _assert_reference(args, _ids(device))


@pytest.mark.parametrize("call", CALLS)
def test_post_pad_right_after_expert_ids_is_accepted(device: str, call: str) -> None:
    """expert_ids and num_tokens_post_pad from one allocation, no map or
    scatter_idx: the last expert id and the count sit side by side."""
    n = SIZES["expert_ids"]
    block = torch.full((n + 1,), POISON, dtype=torch.int32, device=device)
    ids = _ids(device)
    args = {"topk_ids": ids, "expert_ids": block[:n], "num_tokens_post_pad": block[n:],
            "sorted_token_ids": torch.full((SIZES["sorted_token_ids"],), POISON,
                                           dtype=torch.int32, device=device)}
    CALLS[call](args)
    _assert_reference(args, ids)


def _strided_ids(pool: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """topk_ids over the pool's first int32 slots: every other int32 slot, or
    int64 elements (two slots each); the last slot its bytes reach is returned
    by ``_last_slot``."""
    ids = _ids(str(pool.device)).flatten()
    if dtype == torch.int64:
        view = pool[: 2 * NUMEL].view(torch.int64)
    else:
        view = pool[: 2 * NUMEL - 1: 2]
    view.copy_(ids.to(dtype))
    return view


def _last_slot(dtype: torch.dtype) -> int:
    # every other slot: the last element at slot 2 * (NUMEL - 1); int64:
    # NUMEL elements of two slots each end at slot 2 * NUMEL - 1
    return 2 * NUMEL - 1 if dtype == torch.int64 else 2 * (NUMEL - 1)


@pytest.mark.parametrize("call", CALLS)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64], ids=["strided", "int64"])
@pytest.mark.parametrize("shift", [0, 1], ids=["on_last_byte", "right_after"])
def test_extent_of_topk_ids_follows_strides_and_dtype(device: str, dtype: torch.dtype,
                                                      shift: int, call: str) -> None:
    """An output starting on the last slot topk_ids' bytes reach overlaps it;
    one starting right after does not. A span of numel int32 slots from the
    data pointer would get both wrong (it ends at slot NUMEL)."""
    start = _last_slot(dtype) + shift
    pool = torch.full((start + SIZES["sorted_token_ids"],), POISON, dtype=torch.int32,
                      device=device)
    ids = _strided_ids(pool, dtype)
    args = {"topk_ids": ids, "sorted_token_ids": pool[start:],
            "expert_ids": torch.full((SIZES["expert_ids"],), POISON, dtype=torch.int32,
                                     device=device),
            "num_tokens_post_pad": torch.full((1,), POISON, dtype=torch.int32, device=device)}
    if shift == 0:
        _assert_refused(lambda: CALLS[call](args), "sorted_token_ids", "topk_ids")
    else:
        CALLS[call](args)
        _assert_reference(args, ids)


@pytest.mark.parametrize("call", CALLS)
def test_empty_topk_ids_inside_an_output_is_accepted(device: str, call: str) -> None:
    """A tensor without elements occupies no memory, wherever its pointer is."""
    size = _sizes(0)["sorted_token_ids"] + 2 * B  # larger than needed: every slot is written
    sorted_ids = torch.full((size,), POISON, dtype=torch.int32, device=device)
    ids = sorted_ids[1:1]
    expert_ids = torch.full((size // B,), POISON, dtype=torch.int32, device=device)
    post_pad = torch.full((1,), POISON, dtype=torch.int32, device=device)
    args = {"topk_ids": ids, "sorted_token_ids": sorted_ids, "expert_ids": expert_ids,
            "num_tokens_post_pad": post_pad}
    CALLS[call](args)
    want = reference(torch.zeros(0, dtype=torch.int32), B, E)
    assert int(post_pad) == int(want[2])
    pad = ids.numel()  # the padding value of sorted_token_ids
    assert torch.equal(sorted_ids.cpu(), torch.full((size,), pad, dtype=torch.int32))
    assert torch.equal(expert_ids.cpu(),
                       torch.full((size // B,), NEWEST.expert_ids_tail, dtype=torch.int32))
