"""Every tensor argument of both ops must be on topk_ids' device. A meta tensor
among real ones sends the call to the fake kernels instead of a backend (meta
outranks CPU and CUDA in the dispatcher), so the fake kernels run the C++
device check too, in the same words: without it such a call returned
uninitialised CPU tensors (allocating op) or wrote nothing (out-variant)."""

from __future__ import annotations

import re
from typing import Optional

import pytest
import torch
from helpers import DEVICES, random_expert_map, random_routes

from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.api import op_level_for
from vllm_moe_align_plugin.contract import NEWEST

OPS = torch.ops.vllm_moe_align
E, B = 8, 16
OUT_NAMES = ["sorted_token_ids", "expert_ids", "num_tokens_post_pad", "expert_map",
             "scatter_idx"]


def message(name: str, ids_device: str, got: str) -> str:
    return f"{name} must be on the same device as topk_ids ({ids_device}), got {got}"


def matching(name: str, ids_device: str, got: str) -> str:
    return re.escape(message(name, ids_device, got))


def out_args(ids: torch.Tensor, on: dict[str, str]) -> dict[str, torch.Tensor]:
    """The out-variant's tensor arguments for ``ids``, each on ``ids.device``
    unless ``on`` names another device for it."""
    size = ids.numel() + E * (B - 1)
    shapes = {"sorted_token_ids": (size,), "expert_ids": ((size + B - 1) // B,),
              "num_tokens_post_pad": (1,), "scatter_idx": (ids.numel(), 1)}
    args = {name: torch.empty(shape, dtype=torch.int32, device=on.get(name, ids.device))
            for name, shape in shapes.items()}
    args["expert_map"] = random_expert_map(E).to(on.get("expert_map", ids.device))
    return args


def call_out(ids: torch.Tensor, a: dict[str, torch.Tensor]) -> None:
    OPS.moe_align_block_size_out(ids, E, B, a["sorted_token_ids"], a["expert_ids"],
                                 a["num_tokens_post_pad"], a["expert_map"], a["scatter_idx"],
                                 True, -1)


@pytest.mark.parametrize("device", DEVICES)
def test_drop_in_with_a_meta_expert_map_raises(device: str) -> None:
    ids = random_routes(64, E, device=device)
    ids_device = str(ids.device)
    with pytest.raises(ValueError, match=matching("expert_map", ids_device, "meta")):
        moe_align_block_size(ids, B, E, expert_map=random_expert_map(E).to("meta"))
    with pytest.raises(ValueError, match=matching("expert_map", ids_device, "meta")):
        OPS.moe_align_block_size(ids, E, B, 64 + E * (B - 1), random_expert_map(E).to("meta"))


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("name", OUT_NAMES)
def test_op_level_with_one_meta_argument_raises(device: str, name: str) -> None:
    ids = random_routes(64, E, device=device)
    a = out_args(ids, {name: "meta"})
    before = a["sorted_token_ids"].clone() if name != "sorted_token_ids" else None
    op_level = op_level_for(NEWEST)
    with pytest.raises(ValueError, match=matching(name, str(ids.device), "meta")):
        op_level(ids, E, B, a["sorted_token_ids"], a["expert_ids"], a["num_tokens_post_pad"],
                 a["expert_map"], a["scatter_idx"])
    with pytest.raises(ValueError, match=matching(name, str(ids.device), "meta")):
        call_out(ids, a)
    if before is not None:
        assert torch.equal(a["sorted_token_ids"], before)  # nothing was written


@pytest.mark.parametrize("name", OUT_NAMES)
def test_meta_ids_with_real_buffers_raise(name: str) -> None:
    ids = random_routes(64, E, device="meta")
    a = out_args(ids, {name: "cpu"})
    with pytest.raises(ValueError, match=matching(name, "meta", "cpu")):
        call_out(ids, a)


def test_meta_ids_with_a_real_expert_map_raise() -> None:
    ids = random_routes(64, E, device="meta")
    with pytest.raises(ValueError, match=matching("expert_map", "meta", "cpu")):
        moe_align_block_size(ids, B, E, expert_map=random_expert_map(E))


@pytest.mark.parametrize("name", OUT_NAMES)
def test_fake_and_cpu_kernel_say_the_same(name: str) -> None:
    """The CPU kernel itself, called past the dispatcher's choice of the fake
    kernel, rejects the same call with the same message."""
    ids = random_routes(64, E)
    a = out_args(ids, {name: "meta"})
    messages = []
    for call in (
        lambda: call_out(ids, a),
        lambda: OPS.moe_align_block_size_out.default.redispatch(
            torch._C.DispatchKeySet(torch._C.DispatchKey.CPU), ids, E, B,
            a["sorted_token_ids"], a["expert_ids"], a["num_tokens_post_pad"], a["expert_map"],
            a["scatter_idx"], True, -1),
    ):
        with pytest.raises(ValueError) as info:
            call()
        messages.append(str(info.value).splitlines()[0])
    assert messages[0] == messages[1] == message(name, "cpu", "meta")


@pytest.mark.parametrize("with_map", [False, True])
def test_all_meta_calls_give_shapes(with_map: bool) -> None:
    ids = random_routes(100, E, top_k=4, device="meta")
    emap: Optional[torch.Tensor] = random_expert_map(E).to("meta") if with_map else None
    sorted_ids, expert_ids, post_pad, scatter = moe_align_block_size(
        ids, B, E, emap, False, with_map, return_scatter_idx=True)
    size = NEWEST.max_num_tokens_padded(100, E, B, False)
    assert [t.device.type for t in (sorted_ids, expert_ids, post_pad, scatter)] == ["meta"] * 4
    assert sorted_ids.shape == (size,) and expert_ids.shape == ((size + B - 1) // B,)
    assert post_pad.shape == (1,) and scatter.shape == (100, 1)
    a = out_args(ids, {})
    assert op_level_for(NEWEST)(ids, E, B, a["sorted_token_ids"], a["expert_ids"],
                                a["num_tokens_post_pad"], emap, None) is None
