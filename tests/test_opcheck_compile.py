"""torch.library.opcheck on both ops; torch.compile(fullgraph=True) through the drop-in."""

from __future__ import annotations

import pytest
import torch
from helpers import assert_same, poisoned, random_expert_map, random_routes

from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

OPS = torch.ops.vllm_moe_align


@pytest.mark.parametrize("numel,experts,block", [(0, 8, 4), (37, 16, 8), (10000, 64, 32)])
@pytest.mark.parametrize("with_map", [False, True])
def test_opcheck_alloc(device: str, numel: int, experts: int, block: int, with_map: bool) -> None:
    ids = random_routes(numel, experts, invalid_frac=0.1, seed=numel, device=device)
    emap = random_expert_map(experts, device=device) if with_map else None
    size = numel + experts * (block - 1)
    torch.library.opcheck(OPS.moe_align_block_size.default,
                          (ids, experts, block, size, emap, with_map, -1, True))


@pytest.mark.parametrize("numel,experts,block", [(0, 8, 4), (37, 16, 8), (10000, 64, 32)])
def test_opcheck_out(device: str, numel: int, experts: int, block: int) -> None:
    ids = random_routes(numel, experts, seed=numel, device=device)
    size = numel + experts * (block - 1)
    args = (ids, experts, block, poisoned(size, device),
            poisoned((size + block - 1) // block, device), poisoned(1, device),
            random_expert_map(experts, device=device), poisoned(0, device, (numel, 1)), True, 0)
    torch.library.opcheck(OPS.moe_align_block_size_out.default, args)


def test_compile_fullgraph(device: str) -> None:
    def moe_step(topk_ids: torch.Tensor, emap: torch.Tensor) -> tuple[torch.Tensor, ...]:
        sorted_ids, expert_ids, post_pad = moe_align_block_size(topk_ids, 16, 64, emap)
        return sorted_ids, expert_ids + 0, post_pad  # something after the op to trace

    compiled = torch.compile(moe_step, fullgraph=True, backend="aot_eager" if device == "cpu" else "inductor")
    for numel in (64, 1000):
        ids = random_routes(numel, 64, top_k=8, seed=numel, device=device)
        emap = random_expert_map(64, device=device)
        assert_same(compiled(ids, emap), reference(ids.cpu(), 16, 64, emap.cpu()), "compiled")


def test_the_libraries_define_every_op() -> None:
    """_C defines the align ops; _C_cuda, where it is loaded, the CUDA host
    ops. Both are empty modules: loading them is their only job."""
    from vllm_moe_align_plugin import _C, _ops

    assert [n for n in vars(_C) if not n.startswith("__")] == []
    names = ["moe_align_block_size_out", "moe_align_block_size"]
    if _ops.has_backend("cuda"):
        from vllm_moe_align_plugin import _C_cuda

        assert [n for n in vars(_C_cuda) if not n.startswith("__")] == []
        names += ["cuda_launch_plan", "cuda_globalize_plan", "preload_cuda_kernels", "cuda_archs"]
    else:
        assert not hasattr(OPS, "cuda_launch_plan")
    for name in names:
        assert getattr(OPS, name).default._schema.name == f"vllm_moe_align::{name}"
    archs = _ops.cuda_archs()
    assert isinstance(archs, list) and bool(archs) == _ops.has_backend("cuda")
