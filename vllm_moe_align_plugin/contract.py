"""What vLLM's ``moe_align_block_size`` returns, by vLLM version.

This module owns every rule that changed between vLLM releases: output sizes,
the tail value of ``expert_ids``, and which arguments each signature has. The
rest of the package asks it; nothing else hard-codes a version.

Lines (the releases whose rules are the same):

============  =====  ==============  =========================  ============
vLLM          tail   numel < E       ignore_invalid_experts     scatter_idx
============  =====  ==============  =========================  ============
0.9.2-0.12.x  0      no shrink       no                         no
0.13-0.16.x   0      shrink          yes (and op expert_map)    no
0.17-0.30.x   -1     shrink          yes                        no
0.31-0.33.x   -1     shrink          yes                        yes
============  =====  ==============  =========================  ============
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Optional


@dataclass(frozen=True)
class Contract:
    """The rules of one vLLM line."""

    name: str
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


V0_9 = Contract("vllm 0.9.2-0.12", 0, False, False, False)
V0_13 = Contract("vllm 0.13-0.16", 0, True, True, False)
V0_17 = Contract("vllm 0.17-0.30", -1, True, True, False)
# return_scatter_idx / scatter_idx arrived in 0.31.0 (0.31.0's and 0.32.0's
# moe_align_block_size.py are byte-identical to 0.33.0's).
V0_31 = Contract("vllm 0.31-0.33", -1, True, True, True)
NEWEST = V0_31
ALL = (V0_9, V0_13, V0_17, V0_31)

# (first release of the line, contract); releases before the first line or
# from FIRST_UNKNOWN on are not known to this plugin.
_LINES = (((0, 9, 2), V0_9), ((0, 13, 0), V0_13), ((0, 17, 0), V0_17), ((0, 31, 0), V0_31))
FIRST_UNKNOWN = (0, 34, 0)


def parse_version(version: str) -> Optional[tuple[int, int, int]]:
    """``"0.33.0"``, ``"0.10.1.dev3+gabc"``, ``"0.26.0+cu130"`` -> (major, minor, patch)."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)(?:\.(\d+))?", version)
    if m is None:
        return None
    return int(m.group(1)), int(m.group(2)), int(m.group(3) or 0)


def contract_for_vllm(version: str) -> Optional[Contract]:
    """The contract of a vLLM release, or None for a release this plugin does
    not know (then vLLM must be left alone)."""
    v = parse_version(version)
    if v is None or v < _LINES[0][0] or v >= FIRST_UNKNOWN:
        return None
    found = _LINES[0][1]
    for first, contract in _LINES:
        if v >= first:
            found = contract
    return found
