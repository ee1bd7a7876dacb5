"""What vLLM's ``moe_align_block_size`` returns, by vLLM version.

This module owns every rule that changed between vLLM releases: output sizes,
the tail value of ``expert_ids``, and which arguments each signature has (the
table ``PARAMETERS``). The rest of the package asks it; nothing else
hard-codes a version.

Lines (the releases whose rules are the same):

============  =====  ==============  =========================  ============
vLLM          tail   numel < E       ignore_invalid_experts     scatter_idx
============  =====  ==============  =========================  ============
0.9.2-0.12.x  0      no shrink       no                         no
0.13-0.16.x   0      shrink          yes (and op expert_map)    no
0.17-0.30.x   -1     shrink          yes                        no
0.31-0.34.x   -1     shrink          yes                        yes
============  =====  ==============  =========================  ============
"""

from __future__ import annotations

import inspect
import re
from dataclasses import dataclass
from typing import Any, Callable, Optional

from .messages import preview

Version = tuple[int, int, int]


@dataclass(frozen=True)
class Contract:
    """The rules of one vLLM line: the releases from ``first`` through every
    patch release of ``last`` (major, minor)."""

    first: Version
    last: tuple[int, int]
    #: value of ``expert_ids`` after the last used block (before the
    #: ``expert_map`` lookup of the non-ignoring mode)
    expert_ids_tail: int
    #: ``numel < num_experts`` caps the padded size at ``numel * block_size``
    shrink_small_inputs: bool
    #: Python signature has ``ignore_invalid_experts``; the op-level wrapper
    #: has ``expert_map`` (which makes the op map ids while counting)
    has_ignore_invalid_experts: bool
    #: Python signature has keyword-only ``return_scatter_idx``; the op-level
    #: wrapper has ``scatter_idx``
    has_scatter_idx: bool

    @property
    def name(self) -> str:
        """``"vllm 0.9.2-0.12"``, ``"vllm 0.13-0.16"``: how logs and errors name the line."""
        first = ".".join(map(str, self.first if self.first[2] else self.first[:2]))
        return f"vllm {first}-{self.last[0]}.{self.last[1]}"

    @property
    def versions(self) -> str:
        """The releases of the line as people write them: ``"0.13.0-0.16.x"``."""
        return "{}.{}.{}-{}.{}.x".format(*self.first, *self.last)

    @property
    def patch_file(self) -> str:
        """Name of the line's static patch under ``patches/``."""
        return "vllm-{}.{}-{}.{}.patch".format(*self.first[:2], *self.last)

    def covers(self, version: Version) -> bool:
        return self.first <= version and version[:2] <= self.last

    def max_num_tokens_padded(
        self, numel: int, num_experts: int, block_size: int, pad_sorted_ids: bool
    ) -> int:
        """Length of ``sorted_token_ids`` (``expert_ids`` has
        ``ceil(this / block_size)`` entries)."""
        size = numel + num_experts * (block_size - 1)
        if pad_sorted_ids:
            size = (size + block_size - 1) // block_size * block_size
        if self.shrink_small_inputs and numel < num_experts:
            size = min(numel * block_size, size)
        return size


V0_9 = Contract((0, 9, 2), (0, 12), 0, False, False, False)
V0_13 = Contract((0, 13, 0), (0, 16), 0, True, True, False)
V0_17 = Contract((0, 17, 0), (0, 30), -1, True, True, False)
# return_scatter_idx / scatter_idx arrived in 0.31.0 (0.31.0's, 0.32.0's and
# 0.34.0's moe_align_block_size.py are byte-identical to 0.33.0's, and 0.34.0's
# op schemas and _custom_ops wrappers are 0.33.0's).
V0_31 = Contract((0, 31, 0), (0, 34), -1, True, True, True)
NEWEST = V0_31
#: oldest first, each line starting where the one before it ends
ALL = (V0_9, V0_13, V0_17, V0_31)


def parse_version(version: str) -> Optional[Version]:
    """``"0.33.0"``, ``"0.10.1.dev3+gabc"``, ``"0.26.0+cu130"`` -> (major, minor, patch)."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def contract_for_vllm(version: str) -> Optional[Contract]:
    """The contract of a vLLM release, or None for a release this plugin does
    not know (then vLLM must be left alone)."""
    v = parse_version(version)
    if v is None:
        return None
    return next((c for c in ALL if c.covers(v)), None)


# --------------------------------------------------------------------------- signatures

#: the kinds of vLLM's function: the fused_moe module's, and ``vllm._custom_ops``' wrapper
PYTHON, OP = "python", "op"
#: the same two of vLLM >= 0.33's fused globalize + align (DeepEP v2 decode)
GLOBALIZE_PYTHON, GLOBALIZE_OP = "globalize_python", "globalize_op"


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


#: default of a parameter that has none
REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One parameter of vLLM's function: ``since`` names the ``Contract``
    flag of the lines that have it (None: every line)."""

    name: str
    default: Any = REQUIRED
    since: Optional[str] = None
    keyword_only: bool = False


#: The parameters of vLLM's two functions, newest line; older lines have the
#: ones whose ``since`` flag their contract sets.
PARAMETERS: dict[str, tuple[Param, ...]] = {
    PYTHON: (
        Param("topk_ids"),
        Param("block_size"),
        Param("num_experts"),
        Param("expert_map", None),
        Param("pad_sorted_ids", False),
        Param("ignore_invalid_experts", False, "has_ignore_invalid_experts"),
        # keyword-only in vLLM's @overload stubs, positional in the function itself
        Param("return_scatter_idx", False, "has_scatter_idx"),
    ),
    OP: (
        Param("topk_ids"),
        Param("num_experts"),
        Param("block_size"),
        Param("sorted_token_ids"),
        Param("experts_ids"),
        Param("num_tokens_post_pad"),
        Param("expert_map", None, "has_ignore_invalid_experts"),
        Param("scatter_idx", None, "has_scatter_idx"),
    ),
    # the same in every release that has them (has_globalize)
    GLOBALIZE_PYTHON: (
        Param("recv_topk_idx"),
        Param("psum_recv_per_rank"),
        Param("rank_expert_offset"),
        Param("global_num_experts"),
        Param("local_num_experts"),
        Param("block_size"),
        Param("return_scatter_idx", False),
    ),
    GLOBALIZE_OP: (
        Param("topk_idx"),
        Param("psum"),
        Param("rank_expert_offset"),
        Param("global_num_experts"),
        Param("local_num_experts"),
        Param("block_size"),
        Param("sorted_ids"),
        Param("expert_ids"),
        Param("num_tokens_post_pad"),
        Param("scatter_idx", None),
    ),
}


def has_globalize(vllm_version: str) -> bool:
    """vLLM 0.33 added fused_globalize_align_block_size."""
    version = parse_version(vllm_version)
    return version is not None and version >= (0, 33, 0)


def parameters(contract: Contract, kind: str) -> tuple[Param, ...]:
    """The parameters of vLLM's function of ``kind`` (``"python"``: the
    fused_moe function; ``"op"``: ``vllm._custom_ops``' wrapper; the two
    globalize kinds likewise) in ``contract``'s line, in order."""
    return tuple(p for p in PARAMETERS[kind] if p.since is None or getattr(contract, p.since))


def parameters_of(fn: Callable[..., Any]) -> tuple[Param, ...]:
    """``fn``'s parameters as ``Param`` s (``since`` unset), to compare with
    ``parameters``; ``*args`` / ``**kwargs`` show up as such."""
    out = []
    for p in inspect.signature(fn).parameters.values():
        name = {p.VAR_POSITIONAL: f"*{p.name}", p.VAR_KEYWORD: f"**{p.name}"}.get(p.kind, p.name)
        default = REQUIRED if p.default is p.empty else p.default
        out.append(Param(name, default, keyword_only=p.kind == p.KEYWORD_ONLY))
    return tuple(out)


def parameters_mismatch(
    theirs: tuple[Param, ...], contract: Contract, kind: str
) -> Optional[str]:
    """None when ``theirs`` (a vLLM function's parameters) are exactly those
    of ``contract``'s line (names, order, defaults, keyword-only); else a
    sentence showing both."""
    ours = tuple(Param(p.name, p.default, keyword_only=p.keyword_only)
                 for p in parameters(contract, kind))
    if theirs == ours:
        return None

    def show(ps: tuple[Param, ...]) -> str:
        return ", ".join(p.name if p.default is REQUIRED else f"{p.name}={preview(p.default)}"
                         for p in ps)

    return f"vLLM's is ({show(theirs)}), the {contract.name} contract's is ({show(ours)})"
