"""benchmarks/chain_cost.py: its options on any machine; on a GPU, every row
kind (the plugin and the three stand-in kernels) measured in a short chain,
each validated before it is timed (``measure`` validates the plugin's
outputs, ``make_stand_in`` the values its kernel wrote)."""

from __future__ import annotations

import argparse

import pytest
from helpers import HAS_CUDA

from benchmarks import chain_cost
from vllm_moe_align_plugin.bench import plugin_impl


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


@pytest.mark.skipif(HAS_CUDA, reason="checks the message without a GPU")
def test_needs_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert chain_cost.main(["--impls", "floor"]) == 2
    assert "CUDA" in capsys.readouterr().err


@pytest.mark.cuda
@pytest.mark.skipif(not HAS_CUDA, reason="needs CUDA and the plugin's CUDA kernels")
@pytest.mark.parametrize("shape", ["1x8x256", "1x6x64", "64x8x128"])
def test_rows_on_the_gpu(shape: str) -> None:
    pytest.importorskip("triton")
    what = [plugin_impl(), *chain_cost.STAND_INS.values()]
    rows = chain_cost.run([shape], what, block=16, reps=3, replays=4, rounds=2)
    assert [r.impl for r in rows] == ["plugin", *chain_cost.STAND_INS.values()]
    for r in rows:
        assert r.shape == shape
        assert r.without_us > 0 and r.with_us > 0
        assert r.marginal_min_us <= r.marginal_us <= r.marginal_max_us
