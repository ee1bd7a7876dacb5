"""benchmarks/chain_cost.py: its options on any machine; the stand-in kernels
in Triton's interpreter (CPU tensors, so in CI too) and the grid they take
from the plugin's launch plan; on a GPU, every row kind (the plugin and the
stand-in kernels) measured in a short chain, each validated before it is
timed (``measure`` validates the plugin's outputs, ``make_stand_in`` the
values its kernels wrote)."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch
from helpers import HAS_CUDA

from benchmarks import chain_cost
from vllm_moe_align_plugin import _ops
from vllm_moe_align_plugin.bench import plugin_impl
from vllm_moe_align_plugin.contract import NEWEST

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("text", ["1x8", "1x9x8", "0x8x256", "ax8x256"])
def test_bad_shape_is_refused(text: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=text):
        chain_cost.parse_shape(text)


def test_bad_shape_option_names_the_shape(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        chain_cost.main(["--shapes", "1x9x8"])
    assert "1x9x8" in capsys.readouterr().err


def test_stand_ins_are_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        chain_cost.main(["--impls", "nothing"])
    err = capsys.readouterr().err
    for name in chain_cost.STAND_INS:
        assert name in err


def test_unknown_stand_in_is_refused() -> None:
    ids = torch.zeros(8, dtype=torch.int32)
    with pytest.raises(ValueError, match="nothing"):
        chain_cost.make_stand_in("nothing", ids, (ids, ids, ids))


@pytest.mark.skipif(not _ops.has_backend("cuda"), reason="this build has no CUDA kernels")
@pytest.mark.parametrize(("numel", "e", "b"), [(8, 256, 16), (2048, 256, 16), (8192, 64, 128),
                                               (32768, 128, 64)])
def test_grid_is_the_plugins_plan(numel: int, e: int, b: int) -> None:
    size = NEWEST.max_num_tokens_padded(numel, e, b, False)
    plan = _ops.cuda_launch_plan(numel, e, b, size, num_sms=132, smem_optin_bytes=232448)
    ctas, threads = chain_cost.plugin_grid(numel, e, b, size, 132, 232448)
    assert (ctas, threads) == (plan.ctas, plan.threads)
    assert (ctas == 1) == (numel <= 64)  # one CTA at decode sizes, many above


# Each stand-in on CPU tensors in Triton's interpreter: make_stand_in raises
# unless every value its kernels wrote is the one expected, for grids of one
# CTA, of more CTAs than the ids need, and of many CTAs sharing the outputs.
INTERPRETED = textwrap.dedent("""
    import torch
    from benchmarks import chain_cost as cc
    for n, n_sorted, n_expert, grid in [(8, 128, 8, (1, 128)), (5, 1000, 3, (7, 64)),
                                        (2048, 5888, 368, (64, 256))]:
        ids = torch.randint(0, 256, (n,), dtype=torch.int32, generator=torch.Generator().manual_seed(n))
        outs = tuple(torch.empty(k, dtype=torch.int32) for k in (n_sorted, n_expert, 1))
        for name in (cc.READ, cc.IO, cc.IO_GRID, cc.IO_TWO):
            cc.make_stand_in(name, ids, outs, grid)
    print("checked")
""")


def test_stand_in_kernels_write_what_they_are_checked_for() -> None:
    pytest.importorskip("triton")
    env = {**os.environ, "TRITON_INTERPRET": "1"}
    r = subprocess.run([sys.executable, "-c", INTERPRETED], cwd=ROOT, env=env, capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 0 and "checked" in r.stdout, r.stderr[-3000:]


@pytest.mark.skipif(HAS_CUDA, reason="checks the message without a GPU")
def test_needs_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert chain_cost.main(["--impls", "floor"]) == 2
    assert "CUDA" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and the plugin's CUDA kernels")
@pytest.mark.parametrize("shape", ["1x8x256", "1x6x64", "64x8x128", "4096x8x128"])
def test_rows_on_the_gpu(shape: str) -> None:
    pytest.importorskip("triton")
    what = [plugin_impl(), *chain_cost.STAND_INS.values()]
    rows = chain_cost.run([shape], what, block=16, reps=3, replays=4, rounds=2)
    assert [r.impl for r in rows] == ["plugin", *chain_cost.STAND_INS.values()]
    for r in rows:
        assert r.shape == shape
        assert r.without_us > 0 and r.with_us > 0
        assert r.marginal_min_us <= r.marginal_us <= r.marginal_max_us
