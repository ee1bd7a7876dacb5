"""Runs the CUDA op once on a grid covering every code path (tiny, spread,
tiled with the prefix in each CTA, tiled with the scan kernel; expert_map both
ways; invalid ids; scatter_idx; int64 ids), and the fused globalize op (its
pass, then the align kernels in each regime), and checks each result, for
`PYTHONPATH=. compute-sanitizer --tool memcheck|racecheck|initcheck|synccheck
python tests/sanitizer_grid.py` from the repository root (make sanitize-gpu,
which runs it again with VLLM_MOE_ALIGN_PDL=1: programmatic dependent launch).
Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

import sys

import torch

from vllm_moe_align_plugin import _ops, moe_align_block_size
from vllm_moe_align_plugin.globalize import fused_globalize_align_block_size
from vllm_moe_align_plugin.globalize_reference import (
    fused_globalize_align_block_size_reference as globalize_ref,
)
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as ref

CASES = [  # numel, num_experts, block_size
    (0, 8, 4), (1, 8, 1), (5, 256, 16), (33, 4096, 1024),         # tiny (one lane per route / two)
    (64, 128, 3), (20, 4096, 256),                                # tiny (several CTAs)
    (65, 256, 16), (2048, 256, 16), (1000, 256, 1),               # spread, tiles of 32
    (300, 4096, 16),                                              # spread, opted-in smem
    (8192, 64, 128),                                              # spread, tiles of 64
    (12000, 64, 128),                                             # tiled, prefix in CTA
    (32768, 128, 64), (40960, 512, 64),                          # tiled, prefix in CTA
    (300000, 1024, 128), (70000, 4096, 32),                      # tiled, scan kernel
]

GLOBALIZE_CASES = [  # rows, topk, local experts, block_size (rows real: 3/4)
    (0, 8, 32, 16), (1, 8, 32, 16), (8, 8, 16, 16),               # fused
    (128, 8, 32, 64), (4, 4, 32, 1024),                           # fused: 32 warps, large B
    (8, 8, 64, 2048),                                             # fused: B > 1024, L = 64
    (64, 8, 1024, 16), (256, 8, 32, 64), (1024, 8, 1024, 16),     # pass + spread
    (5000, 1, 8, 4096),                                           # pass + spread
    (8, 8, 1024, 16),                                             # fused: hundreds of experts
    (4096, 8, 32, 128), (2048, 8, 8, 16),                         # tiled, globalizing, prefix in CTA
    (40000, 8, 1024, 64),                                         # tiled, globalizing, scan kernel
]


def globalize_cases(g: torch.Generator) -> tuple[int, int]:
    """(cases run, mismatches) of the fused globalize op."""
    bad = 0
    for rows, topk, local_e, block in GLOBALIZE_CASES:
        ids = torch.randint(-1, local_e + 2, (rows, topk), generator=g)
        psum = torch.tensor([rows, rows - rows // 4], dtype=torch.int32)
        ints = (2 * local_e, 8 * local_e, local_e, block)
        want = globalize_ref(ids.clone(), psum, *ints, return_scatter_idx=True)
        got = fused_globalize_align_block_size(ids.cuda(), psum.cuda(), *ints,
                                               return_scatter_idx=True)
        if not all(torch.equal(a.cpu(), b) for a, b in zip(got, want)):
            print("MISMATCH globalize", rows, topk, local_e, block)
            bad += 1
    return len(GLOBALIZE_CASES), bad


def main() -> int:
    g = torch.Generator().manual_seed(0)
    bad = 0
    for numel, experts, block in CASES:
        ids = torch.randint(-2, experts + 2, (numel,), generator=g)
        emap = torch.where(torch.rand(experts, generator=g) < 0.5,
                           torch.randperm(experts, generator=g), torch.tensor(-1)).to(torch.int32)
        for dtype in (torch.int32, torch.int64):
            for mode in ("none", "after", "counting"):
                m = None if mode == "none" else emap
                ignore = mode == "counting"
                scatter = mode != "after"
                want = ref(ids, block, experts, m, False, ignore, return_scatter_idx=scatter)
                got = moe_align_block_size(ids.to(dtype).cuda(), block, experts,
                                           None if m is None else m.cuda(), False, ignore,
                                           return_scatter_idx=scatter)
                if not all(torch.equal(a.cpu(), b) for a, b in zip(got, want)):
                    print("MISMATCH", numel, experts, block, dtype, mode)
                    bad += 1
    cases, bad_globalize = globalize_cases(g)
    torch.cuda.synchronize()
    total, bad = len(CASES) * 6 + cases, bad + bad_globalize
    launch = "dependent launch" if _ops.dependent_launch() else "ordinary launch"
    print(f"sanitizer grid ({launch}): {total - bad}/{total} cases equal the reference")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
