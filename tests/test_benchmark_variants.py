"""benchmarks/benchmark_moe_align_block_size.py --variants: the pre-mapped
ids it times beside the map while counting give that call's outputs bit for
bit (on the reference and on the CPU op), so the two columns differ only by
the lookup."""

from __future__ import annotations

import pytest
import torch

from benchmarks import benchmark_moe_align_block_size as grid
from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.reference import moe_align_block_size_reference, random_expert_map


def _ids(case, seed: int, dtype: torch.dtype) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    # some ids out of range on both sides, as a caller's padding rows may hold
    ids = torch.randint(-2, case.num_experts + 3, (case.num_tokens, case.top_k), generator=g)
    return ids.to(dtype)


@pytest.mark.parametrize("case", grid.VARIANT_CASES[:3], ids=lambda c: c.label)
@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_premapped_ids_give_the_map_while_counting_outputs(case, dtype: torch.dtype) -> None:
    e, b = case.num_experts, case.block_size
    emap = random_expert_map(e, generator=torch.Generator().manual_seed(case.numel))
    ids = _ids(case, case.numel, dtype)
    pre = grid.premapped_ids(ids, emap, e)
    assert pre.dtype == ids.dtype and pre.shape == ids.shape
    want = moe_align_block_size_reference(ids, b, e, emap, False, True)
    for got in (moe_align_block_size_reference(pre, b, e),
                moe_align_block_size(pre, b, e, None, False, False)):
        assert all(torch.equal(x, y) for x, y in zip(got, want))
    # and the map does change the layout: some route is dropped or renamed
    assert not torch.equal(pre, ids)


def test_premapped_ids_drop_what_the_map_drops() -> None:
    emap = torch.tensor([-1, 0, 2, -1, 1], dtype=torch.int32)
    ids = torch.tensor([[0, 1, 2, 3, 4, 5, -1]], dtype=torch.int32)
    assert grid.premapped_ids(ids, emap, 5).tolist() == [[5, 0, 2, 5, 1, 5, 5]]
