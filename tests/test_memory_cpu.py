"""Many CPU calls of the op leak nothing: the bytes live in the C heap
(glibc's mallinfo2: in use plus mmapped) and Python's allocated blocks stay
where they were after a warm-up. (The CUDA counterpart, with the exact
allocator count, is in test_runtime_cuda.py.)

Environment: ``VLLM_MOE_ALIGN_CPU_MEMORY_CALLS`` (default 20,000).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import sys
from typing import Callable, Optional

import pytest
import torch
from helpers import assert_same, poisoned, random_expert_map, random_routes

from vllm_moe_align_plugin import contract as C
from vllm_moe_align_plugin import moe_align_block_size
from vllm_moe_align_plugin.api import drop_in_for, op_level_for
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

CALLS = int(os.environ.get("VLLM_MOE_ALIGN_CPU_MEMORY_CALLS", "").strip() or 20_000)
HEAP_SLACK = 4 * 2**20  # allocator bookkeeping; 2,000 leaked outputs below would be >= 8 MiB
BLOCK_SLACK = 2_000  # Python blocks; a leaked object per call would be >= CALLS


class _MallInfo2(ctypes.Structure):
    _fields_ = [(name, ctypes.c_size_t) for name in (
        "arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks",
        "fordblks", "keepcost")]


def _mallinfo2() -> Optional[Callable[[], _MallInfo2]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        fn = libc.mallinfo2  # glibc >= 2.33
    except (OSError, AttributeError):
        return None
    fn.restype = _MallInfo2
    return fn


MALLINFO2 = _mallinfo2()
pytestmark = pytest.mark.skipif(MALLINFO2 is None, reason="needs glibc's mallinfo2 (glibc >= 2.33)")


def heap_bytes() -> int:
    """Bytes in use in the C heap, all arenas, mmapped chunks included (torch's
    CPU tensors are allocated there). Free memory kept by the allocator does
    not count, so earlier tests cannot hide a leak."""
    info = MALLINFO2()
    return info.uordblks + info.hblkhd


Work = list[tuple[Callable[[], tuple[torch.Tensor, ...]], tuple[torch.Tensor, ...]]]


def workload() -> Work:
    """(call, expected result): every entry point and option, small inputs so
    the calls are many (each call's outputs are at least 4 KiB)."""
    ids = random_routes(512, 256, top_k=8, invalid_frac=0.1, seed=1)
    ids16 = random_routes(2048, 64, dtype=torch.int16, seed=2)
    ids_t = random_routes(1024, 128, top_k=8, seed=3).t()
    emap = random_expert_map(256, seed=1)
    old = drop_in_for(C.V0_9)
    size = C.NEWEST.max_num_tokens_padded(512, 256, 16, False)
    bufs = (poisoned(size, "cpu"), poisoned(-(-size // 16), "cpu"), poisoned(1, "cpu"),
            poisoned(0, "cpu", (512, 1)))

    def op_level() -> tuple[torch.Tensor, ...]:
        op_level_for(C.NEWEST)(ids, 256, 16, *bufs[:3], emap, bufs[3])
        return bufs

    return [
        (lambda: moe_align_block_size(ids, 16, 256), reference(ids, 16, 256)),
        (lambda: moe_align_block_size(ids, 16, 256, emap, True, True, return_scatter_idx=True),
         reference(ids, 16, 256, emap, True, True, True)),
        (lambda: moe_align_block_size(ids, 16, 256, emap), reference(ids, 16, 256, emap)),
        (lambda: moe_align_block_size(ids16, 64, 64), reference(ids16, 64, 64)),
        (lambda: moe_align_block_size(ids_t, 16, 128), reference(ids_t, 16, 128)),
        (lambda: old(ids, 8, 256, emap, True), reference(ids, 8, 256, emap, True, contract=C.V0_9)),
        (op_level, reference(ids, 16, 256, emap, False, True, True)),
    ]


def run(work: Work, calls: int, keep: Optional[list[object]]) -> None:
    """Makes ``calls`` calls; appends their outputs to ``keep`` when given."""
    for i in range(calls):
        out = work[i % len(work)][0]()
        if keep is not None and i % len(work) != len(work) - 1:  # the op-level buffers are reused
            keep.append(out)


def test_many_cpu_calls_leave_memory_where_it_was() -> None:
    """CALLS calls cycling through every entry point and option, after a
    warm-up: the heap's bytes in use grow by less than HEAP_SLACK and Python's
    allocated blocks by less than BLOCK_SLACK; the last result of each kind
    still equals the reference."""
    work = workload()
    run(work, 2_000, None)
    gc.collect()
    heap0, blocks0 = heap_bytes(), sys.getallocatedblocks()
    run(work, CALLS, None)
    gc.collect()
    heap1, blocks1 = heap_bytes(), sys.getallocatedblocks()
    assert heap1 - heap0 < HEAP_SLACK, f"{CALLS} calls: heap bytes in use {heap0} -> {heap1}"
    assert blocks1 - blocks0 < BLOCK_SLACK, f"{CALLS} calls: Python blocks {blocks0} -> {blocks1}"
    for k, (fn, want) in enumerate(work):
        assert_same(fn(), want, f"kind {k}")


def test_the_measure_sees_a_leak() -> None:
    """Control: keeping the outputs of 2,000 calls (as a leak would) moves the
    same two measures beyond their slack, so the test above can fail."""
    work = workload()
    run(work, 2_000, None)
    gc.collect()
    heap0, blocks0 = heap_bytes(), sys.getallocatedblocks()
    kept: list[object] = []
    run(work, 2_000, kept)
    assert heap_bytes() - heap0 >= 2 * HEAP_SLACK
    assert sys.getallocatedblocks() - blocks0 >= BLOCK_SLACK
    del kept
