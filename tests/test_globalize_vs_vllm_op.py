"""fused_globalize_align_block_size against vLLM 0.33's compiled op (CUDA),
when it is at hand (vLLM >= 0.33 installed, or VLLM_MOE_ALIGN_VLLM_OP_SO naming
the ``_moe_C`` library of such a wheel): both equal the oracle on the
benchmark's cases, vLLM's segments compared as sets. The comparison itself is
checked on CPU: it must tell a reordered segment (equal as a set) from a
changed one."""

from __future__ import annotations

import pytest
import torch

from benchmarks.benchmark_globalize import (
    Case,
    cases,
    check,
    inputs,
    mismatch,
    vllm_globalize,
    vllm_op_available,
)
from vllm_moe_align_plugin.globalize_reference import (
    fused_globalize_align_block_size_reference as reference,
)

HAVE_OP = torch.cuda.is_available() and vllm_op_available()


@pytest.mark.skipif(not HAVE_OP, reason="needs a GPU and vLLM >= 0.33's compiled op")
@pytest.mark.parametrize("case", cases(), ids=lambda c: c.name)
def test_vllm_op_equals_the_oracle_as_sets(case: Case) -> None:
    for seed in range(5):
        check(case, vllm_globalize, exact=False, seed=seed)


def test_comparison_tells_order_from_content() -> None:
    case = Case("t", 64, 8, 128, 4, 16)
    ids, psum, ints = inputs(case)
    want = reference(ids.clone(), psum, *ints, return_scatter_idx=True)
    assert mismatch(want, want, 16, exact=True) is None
    # reverse the first segment's routes: a set-equal order
    first_end = 16 * int((want[2] == want[2][0]).int().cumprod(0).sum())
    routes = int((want[1][:first_end] < ids.numel()).sum())
    reordered = want[1].clone()
    reordered[:routes] = reordered[:routes].flip(0)
    got = (want[0], reordered, *want[2:])
    assert routes > 1
    assert (mismatch(got, want, 16, exact=True) or "").startswith("sorted_ids differs")
    assert mismatch(got, want, 16, exact=False) is None
    # a route moved into the padding: a different set
    changed = want[1].clone()
    changed[0] = ids.numel()
    assert "sorted_ids" in (mismatch((want[0], changed, *want[2:]), want, 16, exact=False) or "")
