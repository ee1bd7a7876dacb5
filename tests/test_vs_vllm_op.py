"""Differential test against vLLM's own compiled op (CUDA only).

Runs when vLLM's op is at hand: vLLM installed, or VLLM_MOE_ALIGN_VLLM_OP_SO naming
the `_moe_C` library of a vLLM wheel (for a GPU machine without vLLM, see
benchmarks/fetch_reference_kernels.sh). The op's vLLM version decides which cases
apply: VLLM_MOE_ALIGN_VLLM_OP_VERSION, else a `vllm-X.Y.Z` folder in the library's
path, else the installed vLLM; an op that loads with no known version fails the run.
Both ops write into buffers of the same sizes;
num_tokens_post_pad and the whole expert_ids must be equal, each expert segment of
sorted_token_ids must hold the same routes (vLLM's order inside a segment is not
deterministic), and the padding must be identical.
"""

from __future__ import annotations

import os
import re

import pytest
import torch
from helpers import random_expert_map, random_routes

from benchmarks import loaders
from vllm_moe_align_plugin.contract import V0_17, parse_version
from vllm_moe_align_plugin.vllm.env import running_vllm_version as installed_vllm_version

pytestmark = pytest.mark.cuda


VERSION_ENV = "VLLM_MOE_ALIGN_VLLM_OP_VERSION"


def _vllm_op_version() -> tuple[bool, tuple[int, int, int] | None]:
    """(vLLM's op loaded, its vLLM version or None when unknown)."""
    if not torch.cuda.is_available():
        return False, None
    try:
        if loaders.load_vllm_op() is None:
            return False, None
        torch.ops._moe_C.moe_align_block_size  # noqa: B018
    except Exception:
        return False, None
    m = re.search(r"vllm-(\d+\.\d+\.\d+)", os.environ.get(loaders.VLLM_SO_ENV, ""))
    version = os.environ.get(VERSION_ENV) or (m.group(1) if m else installed_vllm_version())
    return True, parse_version(version) if version else None


LOADED, VERSION = _vllm_op_version()
needs_op = pytest.mark.skipif(VERSION is None, reason="vLLM's compiled op and a GPU are needed")


@pytest.mark.skipif(not LOADED, reason="vLLM's compiled op and a GPU are needed")
def test_the_ops_vllm_version_is_known() -> None:
    assert VERSION is not None, (
        f"vLLM's op loaded from {os.environ.get(loaders.VLLM_SO_ENV)!r} but its vLLM version is "
        f"unknown: set {VERSION_ENV}=X.Y.Z (which cases apply depends on it)")


# numel, num_experts, block_size: decode, prefill, both paths of vLLM's kernel
SHAPES = [(8, 256, 16), (80, 64, 16), (2048, 256, 16), (2560, 512, 16), (8192, 64, 128),
          (32768, 128, 64), (131072, 256, 128), (3, 128, 64), (5000, 8, 1), (1000, 384, 256)]


def _call(op, ids: torch.Tensor, experts: int, block: int, emap: torch.Tensor | None,
          ours: bool) -> tuple[torch.Tensor, ...]:
    size = V0_17.max_num_tokens_padded(ids.numel(), experts, block, False)
    sorted_ids = torch.empty(size, dtype=torch.int32, device="cuda")
    expert_ids = torch.empty((size + block - 1) // block, dtype=torch.int32, device="cuda")
    post_pad = torch.empty(1, dtype=torch.int32, device="cuda")
    if ours:
        op(ids, experts, block, sorted_ids, expert_ids, post_pad, emap, None, emap is not None, -1)
    else:
        op(ids, experts, block, sorted_ids, expert_ids, post_pad, emap)
    return sorted_ids.cpu(), expert_ids.cpu(), post_pad.cpu()


@needs_op
@pytest.mark.parametrize("numel,experts,block", SHAPES)
@pytest.mark.parametrize("mode", ["plain", "expert_map", "invalid_ids"])
def test_same_as_vllm_op(numel: int, experts: int, block: int, mode: str) -> None:
    if mode == "invalid_ids" and VERSION < (0, 28, 0):
        pytest.skip("vLLM < 0.28 does not ignore invalid ids on every path")
    ids = random_routes(numel, experts, top_k=8 if numel % 8 == 0 else 1, seed=numel + experts,
                        invalid_frac=0.2 if mode == "invalid_ids" else 0.0, device="cuda")
    ids = ids.view(ids.shape[0], -1)  # vLLM >= 0.13 reads topk_ids.size(1)
    emap = random_expert_map(experts, seed=numel, device="cuda") if mode == "expert_map" else None
    got = _call(torch.ops.vllm_moe_align.moe_align_block_size_out, ids, experts, block, emap, True)
    want = _call(torch.ops._moe_C.moe_align_block_size, ids, experts, block, emap, False)
    assert torch.equal(got[2], want[2]), "num_tokens_post_pad"
    assert torch.equal(got[1], want[1]), "expert_ids (whole tensor)"
    total = int(want[2])
    owner = torch.repeat_interleave(want[1][: total // block].to(torch.int64), block)
    key = owner * (numel + 1)
    assert torch.equal(torch.sort(key + got[0][:total]).values,
                       torch.sort(key + want[0][:total]).values), "segments as sets"
    assert torch.equal(got[0][total:], want[0][total:]), "padding after the last segment"
    # inside segments, padding slots hold numel in both
    assert int((got[0][:total] == numel).sum()) == int((want[0][:total] == numel).sum())
