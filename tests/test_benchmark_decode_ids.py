"""benchmarks/benchmark_moe_align_block_size.py --decode-ids: its rows of ids
say what their names say (checked against the reference on any machine), the
option refuses to run without a GPU, and on a GPU the table validates and times
every row."""

from __future__ import annotations

import pytest
import torch
from helpers import HAS_CUDA

from benchmarks import benchmark_moe_align_block_size as grid
from vllm_moe_align_plugin.reference import moe_align_block_size_reference


@pytest.mark.parametrize("name", list(grid.DECODE_IDS))
def test_row_is_one_decode_token(name: str) -> None:
    case = grid.DECODE_IDS_CASE
    assert len(grid.DECODE_IDS[name]) == case.numel


@pytest.mark.parametrize("name", list(grid.DECODE_IDS))
def test_used_blocks_are_the_in_range_experts(name: str) -> None:
    # One token's routes to one expert never fill more than a block (8 <= 16),
    # so each in-range expert uses exactly one block and the rest are dropped.
    case = grid.DECODE_IDS_CASE
    row = grid.DECODE_IDS[name]
    ids = torch.tensor([row], dtype=torch.int32)
    _, _, post_pad = moe_align_block_size_reference(ids, case.block_size, case.num_experts)
    experts = {x for x in row if 0 <= x < case.num_experts}
    assert int(post_pad) == len(experts) * case.block_size


def test_repeated_and_dropped_rows_use_the_same_blocks() -> None:
    # The pair that tells dropping a route from the number of used blocks.
    e = grid.DECODE_IDS_CASE.num_experts
    repeated = grid.DECODE_IDS["7 distinct + 1 repeated"]
    dropped = grid.DECODE_IDS["7 distinct + 1 out of range"]
    assert all(0 <= x < e for x in repeated)
    assert sum(x >= e for x in dropped) == 1
    assert len(set(repeated)) == len({x for x in dropped if x < e}) == 7


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message without a GPU")
def test_decode_ids_needs_a_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("sys.argv", ["benchmark_moe_align_block_size", "--decode-ids"])
    with pytest.raises(SystemExit, match="--decode-ids needs a CUDA device"):
        grid.main()


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_decode_ids_table_times_every_row() -> None:
    table = grid.decode_ids_table(None)
    lines = table.splitlines()
    assert len(lines) == 2 + len(grid.DECODE_IDS)
    for name, line in zip(grid.DECODE_IDS, lines[2:]):
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[0] == name
        for cell in cells[2:4]:  # ordinary and dependent launch: both passes
            passes = [float(x) for x in cell.split(" / ")]
            assert len(passes) == 2 and all(x > 0 for x in passes)
