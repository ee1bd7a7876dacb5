"""Triton kernels of ``chain_cost``'s stand-ins: kernels with an align step's
memory traffic and dependences and no work of their own (imported only when a
stand-in is timed, so ``chain_cost`` runs without Triton otherwise).

Every value written depends on the sum of all the ids, so no write can be
issued before every id it depends on has been read."""

from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def write_share(key, sorted_ptr, n_sorted, expert_ptr, n_expert, sorted_share, expert_share,
                BLOCK: tl.constexpr):
    """This program's share of both outputs: ``key + i`` at slot ``i`` of the
    sorted ids, ``key`` in every expert id."""
    pid = tl.program_id(0)
    offs = tl.arange(0, BLOCK)
    lo = pid * sorted_share
    for start in range(lo, lo + sorted_share, BLOCK):
        i = start + offs
        tl.store(sorted_ptr + i, key + i, mask=(i < lo + sorted_share) & (i < n_sorted))
    lo = pid * expert_share
    for start in range(lo, lo + expert_share, BLOCK):
        i = start + offs
        tl.store(expert_ptr + i, key, mask=(i < lo + expert_share) & (i < n_expert))


@triton.jit
def touch(ids_ptr, n_ids, sorted_ptr, n_sorted, expert_ptr, n_expert, post_ptr, sorted_share,
          expert_share, WRITE: tl.constexpr, BLOCK: tl.constexpr):
    """Every program reads all the ids; program 0 writes their sum to
    ``post_ptr``; with ``WRITE`` each program then writes its share."""
    offs = tl.arange(0, BLOCK)
    key = tl.zeros((), dtype=tl.int32)
    for start in range(0, n_ids, BLOCK):
        key += tl.sum(tl.load(ids_ptr + start + offs, mask=start + offs < n_ids, other=0), axis=0)
    if tl.program_id(0) == 0:
        tl.store(post_ptr, key)
    if WRITE:
        write_share(key, sorted_ptr, n_sorted, expert_ptr, n_expert, sorted_share, expert_share,
                    BLOCK)


@triton.jit
def share_sums(ids_ptr, n_ids, sums_ptr, ids_share, BLOCK: tl.constexpr):
    """Program ``p`` writes the sum of the ids of its share to ``sums_ptr[p]``."""
    offs = tl.arange(0, BLOCK)
    lo = tl.program_id(0) * ids_share
    key = tl.zeros((), dtype=tl.int32)
    for start in range(lo, lo + ids_share, BLOCK):
        i = start + offs
        key += tl.sum(tl.load(ids_ptr + i, mask=(i < lo + ids_share) & (i < n_ids), other=0), axis=0)
    tl.store(sums_ptr + tl.program_id(0), key)


@triton.jit
def from_sums(sums_ptr, n_sums, sorted_ptr, n_sorted, expert_ptr, n_expert, post_ptr, sorted_share,
              expert_share, SUMS: tl.constexpr, BLOCK: tl.constexpr):
    """Every program reads all the sums (``SUMS`` >= ``n_sums``, a power of
    two), program 0 writes their total to ``post_ptr``, each writes its share."""
    offs = tl.arange(0, SUMS)
    key = tl.sum(tl.load(sums_ptr + offs, mask=offs < n_sums, other=0), axis=0)
    if tl.program_id(0) == 0:
        tl.store(post_ptr, key)
    write_share(key, sorted_ptr, n_sorted, expert_ptr, n_expert, sorted_share, expert_share, BLOCK)
