"""Runs the CUDA op once on a grid covering every code path (tiny, spread,
tiled with the prefix in each CTA, tiled with the scan kernel; expert_map both
ways; invalid ids; scatter_idx; int64 ids) and checks each result, for
`PYTHONPATH=. compute-sanitizer --tool memcheck|racecheck|initcheck|synccheck
python tests/sanitizer_grid.py` from the repository root (make sanitize-gpu).
Not collected by pytest (no test_ prefix)."""

from __future__ import annotations

import sys

import torch

from vllm_moe_align_plugin import moe_align_block_size
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
    torch.cuda.synchronize()
    print(f"sanitizer grid: {len(CASES) * 6 - bad}/{len(CASES) * 6} cases equal the reference")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
