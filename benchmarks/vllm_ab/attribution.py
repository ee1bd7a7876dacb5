"""Which GPU work in a torch-profiler trace is an align call, and whose.

A run compares the two functions an MoE layer calls, each with all the GPU
work the layer waits for:

- the plugin: every kernel of its op (namespace ``vllm_moe_align``); it
  launches nothing else (no fills; an expert map is applied inside its kernels);
- vLLM: every kernel its op ``_moe_C::moe_align_block_size`` launches (a
  zero-fill of its scratch included, whatever the kernel's name), and what
  its Python function launches around the op on the same stream: fills of the
  outputs before the op (older vLLM lines) and, with an ``expert_map`` and
  ``ignore_invalid_experts=False``, the gather ``expert_map[expert_ids]``
  after it (torch's advanced indexing: a cast of the int32 index to int64,
  then a gather kernel).

The rule, per GPU stream (its kernels in start order): a vLLM call is a run
of vLLM op kernels (fills between them included), with up to
``MAX_FILLS_BEFORE`` fill kernels directly before the run and the one
indexing operation directly after it. "Directly": nothing else on that stream
in between. vLLM's function launches these back to back on the current
stream, so they are neighbours there in eager runs and in CUDA-graph replays
alike; any other kernel in between ends the call, and a gather or fill next
to a plugin kernel is never counted.

A kernel's role comes from the CPU operator that launched it, where the trace
links the two (eager runs: the kernel's correlation id names its launch, the
``cpu_op`` events of that thread enclosing the launch name the operator), and
from the kernel's name otherwise (CUDA-graph replays carry the graph launch's
id; traces without CPU events).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Optional

GPU_CATS = ("kernel", "gpu_memset")  # GPU work of a step
LAUNCH_CATS = ("cuda_runtime", "cuda_driver")
CPU_OP_CATS = ("cpu_op", "operator")
MAX_FILLS_BEFORE = 3  # vLLM's function filled at most two outputs, its op one scratch buffer

# Kernel names (demangled CUDA names, Triton function names).
PLUGIN_KERNEL_RE = re.compile(r"vllm_moe_align")  # every kernel of the plugin's namespace
VLLM_KERNEL_RE = re.compile(r"moe_align_block_size|count_and_sort_expert_tokens")
FILL_KERNEL_RE = re.compile(r"FillFunctor|[Mm]emset")
INDEX_KERNEL_RE = re.compile(
    r"index_elementwise_kernel|vectorized_gather_kernel|indexSelect|index_select|gather_kernel")
CAST_KERNEL_RE = re.compile(r"direct_copy_kernel|copy_kernel")  # int32 index -> int64
# CPU operator names.
PLUGIN_OP_RE = re.compile(r"^vllm_moe_align::")
VLLM_OP_RE = re.compile(r"^_(?:moe_)?C::(?:sgl_)?moe_align_block_size$")
INDEX_OP_RE = re.compile(r"^aten::(?:index|index_select|take|gather)$")
FILL_OP_RE = re.compile(
    r"^aten::(?:fill_|zero_|zeros|zeros_like|full|full_like|new_zeros|new_full|ones|ones_like)$")
_OP_KINDS = (("plugin", PLUGIN_OP_RE), ("vllm", VLLM_OP_RE), ("index", INDEX_OP_RE),
             ("fill", FILL_OP_RE))  # in priority order: the first enclosing one wins
_PRIORITY = {kind: i for i, (kind, _) in enumerate(_OP_KINDS)}


@dataclass(frozen=True)
class Role:
    """What a GPU event can be part of: ``plugin`` or ``vllm`` (an align op's
    own kernel), ``fill``, ``index`` (an indexing op's kernel), ``cast``
    (a copy kernel, known by name only), or None (anything else). ``op``
    names the CPU operator it came from, None when known by name."""

    kind: Optional[str]
    op: Optional[tuple[Any, ...]] = None


def align_owner(name: str) -> Optional[str]:
    """'plugin' or 'vllm' for an align op's kernel name, None otherwise."""
    if PLUGIN_KERNEL_RE.search(name):
        return "plugin"
    if VLLM_KERNEL_RE.search(name):
        return "vllm"
    return None


def role_by_name(name: str) -> Role:
    """A GPU event's role from its name alone."""
    owner = align_owner(name)
    if owner is not None:
        return Role(owner)
    for kind, pattern in (("fill", FILL_KERNEL_RE), ("index", INDEX_KERNEL_RE),
                          ("cast", CAST_KERNEL_RE)):
        if pattern.search(name):
            return Role(kind)
    return Role(None)


def _op_kind(name: str) -> Optional[str]:
    for kind, pattern in _OP_KINDS:
        if pattern.search(name):
            return kind
    return None


def op_roles(events: list[dict[str, Any]]) -> dict[int, Role]:
    """Correlation id of a launch -> the role of the CPU operator that
    launched it, for launches inside an align, indexing or fill operator
    (the highest-priority one where they nest)."""
    spans: dict[Any, list[tuple[float, float, Role]]] = {}
    launches: dict[Any, list[tuple[float, int]]] = {}
    for e in events:
        cat, thread = e.get("cat", ""), (e.get("pid"), e.get("tid"))
        ts = float(e.get("ts", 0.0))
        if cat in CPU_OP_CATS:
            kind = _op_kind(e.get("name", ""))
            if kind is not None:
                end = ts + float(e.get("dur", 0.0))
                spans.setdefault(thread, []).append((ts, end, Role(kind, (*thread, ts))))
        elif cat in LAUNCH_CATS:
            corr = (e.get("args") or {}).get("correlation")
            if corr is not None:
                launches.setdefault(thread, []).append((ts, int(corr)))
    out: dict[int, Role] = {}
    for thread, calls in launches.items():
        ops = sorted(spans.get(thread, []), key=lambda s: s[0])
        if not ops:
            continue
        active: list[tuple[float, float, Role]] = []
        k = 0
        for ts, corr in sorted(calls):
            while k < len(ops) and ops[k][0] <= ts:
                active.append(ops[k])
                k += 1
            active = [s for s in active if s[1] >= ts]
            if active:
                out[corr] = min((s[2] for s in active), key=lambda r: _PRIORITY[r.kind])
    return out


def kernel_roles(gpu: list[dict[str, Any]], by_op: dict[int, Role]) -> list[Role]:
    """The role of each GPU event: its launching operator's, else its name's."""
    roles = []
    for e in gpu:
        corr = (e.get("args") or {}).get("correlation")
        role = by_op.get(int(corr)) if corr is not None else None
        roles.append(role if role is not None else role_by_name(e.get("name", "")))
    return roles


def _index_after(seq: list[int], roles: list[Role], k: int) -> int:
    """Last position of the indexing operation starting at ``seq[k]`` (an
    operator's kernels, or by name: one gather, or a cast and a gather);
    ``k - 1`` when none starts there."""
    if k >= len(seq):
        return k - 1
    first = roles[seq[k]]
    if first.kind == "index":
        if first.op is None:
            return k
        while k + 1 < len(seq) and roles[seq[k + 1]] == first:
            k += 1
        return k
    if first.kind == "cast" and k + 1 < len(seq) and roles[seq[k + 1]] == Role("index"):
        return k + 1
    return k - 1


def align_owners(gpu: list[dict[str, Any]], roles: list[Role]) -> list[Optional[str]]:
    """For each GPU event, 'plugin' or 'vllm' when it belongs to that side's
    align call (the rule in the module's docstring), else None."""
    owners: list[Optional[str]] = [None] * len(gpu)
    streams: dict[Any, list[int]] = {}
    for i, e in enumerate(gpu):
        streams.setdefault((e.get("pid"), e.get("tid")), []).append(i)
    for seq in streams.values():
        seq.sort(key=lambda i: float(gpu[i].get("ts", 0.0)))
        n, k = len(seq), 0
        while k < n:
            kind = roles[seq[k]].kind
            if kind == "plugin":
                owners[seq[k]] = "plugin"
            if kind != "vllm":
                k += 1
                continue
            first = last = k
            j = k + 1
            while j < n and roles[seq[j]].kind in ("vllm", "fill"):
                if roles[seq[j]].kind == "vllm":
                    last = j
                j += 1
            while (first > 0 and k - first < MAX_FILLS_BEFORE and roles[seq[first - 1]].kind == "fill"
                   and owners[seq[first - 1]] is None):
                first -= 1
            last = max(last, _index_after(seq, roles, last + 1))
            for p in range(first, last + 1):
                owners[seq[p]] = "vllm"
            k = last + 1
    return owners
