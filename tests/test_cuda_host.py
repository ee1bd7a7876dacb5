"""Host code of the CUDA build, without a GPU (so in CI too): the CUDA backend's
launch plans (plan_launch and plan_globalize in csrc/cuda/plan.cpp, asked
through the ops cuda_launch_plan and cuda_globalize_plan), the archs of the
build, the kernel preload's error path, and the switch of programmatic
dependent launch (the GPU tests run the kernels with it on)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from vllm_moe_align_plugin import _ops
from vllm_moe_align_plugin.contract import NEWEST

pytestmark = pytest.mark.skipif(
    not _ops.has_backend("cuda"), reason="this build has no CUDA kernels"
)

STATIC_SMEM = 8 * 1024  # kStaticSmemBytes: kept out of the dynamic budget


def plan(numel: int, e: int, b: int, map_in: bool = False, **gpu: int) -> _ops.CudaLaunchPlan:
    size = NEWEST.max_num_tokens_padded(numel, e, b, False)
    return _ops.cuda_launch_plan(numel, e, b, size, map_in, **gpu)


@pytest.mark.parametrize("numel", [0, 1, 8, 33, 64])
def test_tiny_up_to_64_routes(numel: int) -> None:
    p = plan(numel, 256, 16)
    assert (p.regime, p.launches, p.scratch_ints, p.smem_bytes) == ("tiny", 1, 0, 0)
    assert 1 <= p.ctas <= _ops.H100_SMS


def test_tiny_spreads_a_large_padding_over_ctas() -> None:
    small, large = plan(8, 16, 16), plan(64, 4096, 1024)  # 128 vs 65,536 output slots
    assert small.ctas == 1
    assert 1 < large.ctas <= _ops.H100_SMS


@pytest.mark.parametrize("numel,e,b", [
    (65, 256, 16), (256, 128, 16), (2048, 256, 16), (2560, 512, 16), (8192, 64, 128),
    (8192, 4096, 1), (300, 1, 1),
])
@pytest.mark.parametrize("map_in", [False, True])
def test_spread_invariants(numel: int, e: int, b: int, map_in: bool) -> None:
    p = plan(numel, e, b, map_in)
    assert (p.regime, p.launches, p.scratch_ints) == ("spread", 1, 0)
    assert p.tile_routes in (32, 64)
    assert (p.ctas - 1) * p.tile_routes < numel <= p.ctas * p.tile_routes
    assert p.ctas <= _ops.H100_SMS  # every CTA re-reads all routes: one wave at most
    assert p.threads in (128, 256, 512, 1024)
    assert p.threads * 8 >= numel  # each thread holds at most 8 routes in flight
    assert p.smem_bytes == 4 * (3 * e + 1 + (e if map_in else 0))


@pytest.mark.parametrize("numel,e,b", [
    (8193, 64, 128), (16384, 256, 64), (32768, 128, 64), (40960, 512, 64), (16384, 8, 128),
    (65536, 128, 128), (131072, 256, 128), (262144, 128, 128), (524288, 256, 128),
    (1 << 24, 4096, 64), (1 << 30, 256, 128), (100_003, 4096, 1),
])
def test_tiled_invariants(numel: int, e: int, b: int) -> None:
    p = plan(numel, e, b)
    assert p.regime.startswith("tiled") and p.fits
    assert p.tile_routes % 32 == 0 and p.tile_routes <= 16384
    assert (p.ctas - 1) * p.tile_routes < numel <= p.ctas * p.tile_routes
    assert p.scratch_ints == (p.ctas + 1) * e
    with_scan = p.ctas * e > 16384  # kPrefixHereMaxCells
    assert p.regime == ("tiled, scan kernel" if with_scan else "tiled, prefix in each CTA")
    assert p.launches == (3 if with_scan else 2)
    assert p.threads in (256, 512, 1024)
    assert 1 <= p.hist_warps <= p.threads // 32
    # hist rows, segment starts, counts and the staged tile fit the opt-in budget
    assert p.smem_bytes == 4 * (2 * e + 1 + p.hist_warps * e + p.tile_routes)
    assert p.smem_bytes + STATIC_SMEM <= _ops.H100_SMEM_OPTIN_BYTES


def test_one_wave_of_tiles_at_large_sizes() -> None:
    assert plan(524288, 256, 128).ctas == _ops.H100_SMS
    for sms in (16, 78, 114, 132):
        # at most one wave, unless the tile-size cap (16384 routes) needs more
        assert plan(524288, 256, 128, num_sms=sms).ctas <= max(sms, 524288 // 16384)


def test_spread_needs_a_tile_per_sm() -> None:
    assert plan(100, 64, 16).regime == "spread"
    assert plan(100, 64, 16, num_sms=1).regime.startswith("tiled")


def test_experts_beyond_the_shared_memory_do_not_fit() -> None:
    # 48 KiB of opt-in shared memory cannot hold 4096 experts' histograms
    small_gpu = {"smem_optin_bytes": 48 * 1024}
    assert not plan(100_000, 4096, 64, **small_gpu).fits
    assert plan(100_000, 1024, 64, **small_gpu).fits
    assert plan(100_000, 4096, 64).fits
    # the spread regime falls back to the tiled one when its arrays do not fit
    assert plan(2048, 4096, 16, **small_gpu).regime.startswith("tiled")


@pytest.mark.parametrize("kwargs,name", [
    ({"numel": -1}, "numel"), ({"numel": (1 << 30) + 1}, "numel"),
    ({"num_experts": 0}, "num_experts"), ({"num_experts": 4097}, "num_experts"),
    ({"block_size": 0}, "block_size"), ({"block_size": 1025}, "block_size"),
    ({"sorted_size": -5}, "sorted_size"), ({"num_sms": 0}, "num_sms"),
    ({"smem_optin_bytes": -1}, "smem_optin_bytes"),
])
def test_bad_arguments_name_themselves(kwargs: dict[str, int], name: str) -> None:
    args = {"numel": 64, "num_experts": 8, "block_size": 16, "sorted_size": 184}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        _ops.cuda_launch_plan(**args)


def test_non_integers_are_a_type_error() -> None:
    with pytest.raises(TypeError):
        _ops.cuda_launch_plan(64.0, 8, 16, 184)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- globalize


@pytest.mark.parametrize("numel,local_e,b", [
    (0, 32, 16), (1, 8, 16), (8, 28, 64), (56, 32, 64), (512, 16, 16), (1024, 32, 16),
    (64, 1024, 16), (64, 256, 1024),
])
def test_globalize_fused_up_to_1024_routes(numel: int, local_e: int, b: int) -> None:
    g = _ops.cuda_globalize_plan(numel, local_e, b)
    assert (g.fused, g.folded, g.launches, g.ctas, g.align_regime) == (True, False, 1, 1, None)
    # a route a thread, whole warps, at most a CTA of 1024
    assert max(32, numel) <= g.threads <= 1024 and g.threads % 32 == 0
    rows = local_e | 1  # odd row stride
    assert g.smem_bytes == 4 * ((g.threads // 32) * rows + 2 * local_e + 1)
    assert g.smem_bytes <= 48 * 1024 - STATIC_SMEM  # no opt-in needed


@pytest.mark.parametrize("numel,local_e,b,regime", [
    (1025, 32, 16, "spread"), (4096, 32, 16, "spread"), (2056, 28, 64, "spread"),
])
def test_globalize_larger_calls_take_the_pass_before_the_spread_kernel(
    numel: int, local_e: int, b: int, regime: str
) -> None:
    g = _ops.cuda_globalize_plan(numel, local_e, b)
    a = plan(numel, local_e, b)
    assert (g.fused, g.folded, g.smem_bytes, g.align_regime) == (False, False, 0, regime)
    assert a.regime == regime and g.launches == 1 + a.launches
    assert g.threads == 256 and 1 <= g.ctas <= 4 * _ops.H100_SMS
    assert g.ctas * g.threads >= min(numel, 4 * _ops.H100_SMS * 256)


@pytest.mark.parametrize("numel,local_e,b,regime", [
    (16384, 8, 16, "tiled, prefix in each CTA"), (4096 * 8, 32, 64, "tiled, prefix in each CTA"),
    (40000 * 8, 1024, 64, "tiled, scan kernel"),
])
def test_globalize_tiled_calls_globalize_in_the_align_kernels(
    numel: int, local_e: int, b: int, regime: str
) -> None:
    """The tiled kernels compute the bins themselves and rewrite the ids:
    no pass, the align kernels' launches only."""
    g = _ops.cuda_globalize_plan(numel, local_e, b)
    a = plan(numel, local_e, b)
    assert (g.fused, g.folded, g.align_regime, g.launches) == (False, True, regime, a.launches)
    assert (g.threads, g.ctas, g.smem_bytes) == (0, 0, 0)


@pytest.mark.parametrize("numel", [1, 8, 64])
@pytest.mark.parametrize("b", [1025, 2048, 1 << 20])
def test_globalize_block_size_over_1024_never_reaches_the_tiny_kernel(numel: int, b: int) -> None:
    """The tiny kernel packs a padded segment into 11 bits (block_size <= 1024);
    the globalize op allows larger blocks, so small calls with them take the
    fused kernel, whatever their slots."""
    g = _ops.cuda_globalize_plan(numel, 64, b)
    assert g.fused and g.align_regime is None


def test_globalize_two_launches_by_slots_or_shared_memory() -> None:
    # over 65,536 slots (one CTA's share of padding) with block_size <= 1024
    g = _ops.cuda_globalize_plan(1024, 1024, 128)
    assert not g.fused and g.align_regime == "spread"
    # the histogram rows of the warps its 512 routes need would not fit 40 KiB
    g = _ops.cuda_globalize_plan(512, 1024, 16)
    assert not g.fused and g.align_regime == "spread"


@pytest.mark.parametrize("kwargs,name", [
    ({"numel": -1}, "numel"), ({"numel": (1 << 30) + 1}, "numel"),
    ({"local_num_experts": -1}, "local_num_experts"),
    ({"local_num_experts": 1025}, "local_num_experts"),
    ({"block_size": 0}, "block_size"), ({"block_size": 1 << 31}, "block_size"),
    ({"block_size": 1 << 28, "numel": 64}, "needs sorted_ids"),
    ({"num_sms": 0}, "num_sms"), ({"smem_optin_bytes": -1}, "smem_optin_bytes"),
])
def test_globalize_plan_bad_arguments_name_themselves(kwargs: dict[str, int], name: str) -> None:
    args = {"numel": 64, "local_num_experts": 8, "block_size": 16}
    args.update(kwargs)
    with pytest.raises(ValueError, match=name):
        _ops.cuda_globalize_plan(**args)


@pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is there: the preload succeeds")
def test_preload_without_a_gpu_is_a_runtime_error() -> None:
    # the CUDA error becomes a Python exception (the import swallows it)
    with pytest.raises(RuntimeError):
        _ops.preload_cuda_kernels(0)
    with pytest.raises(TypeError):
        _ops.preload_cuda_kernels("0")  # type: ignore[arg-type]


def test_the_ops_answer_without_python_glue() -> None:
    ops = torch.ops.vllm_moe_align
    assert ops.cuda_launch_plan(8, 16, 16, 128, False, 132, 232448)[0] == 0  # tiny
    assert ops.cuda_globalize_plan(8, 16, 16, 132, 232448)[0] == 1  # fused
    with pytest.raises(ValueError, match="num_sms"):
        ops.cuda_launch_plan(8, 16, 16, 128, False, 0, 232448)
    archs = _ops.cuda_archs()
    assert archs and archs == ops.cuda_archs().split()
    assert all(a[0].isdigit() and "." in a for a in archs)


def test_launch_model_table(tmp_path: Path) -> None:
    from benchmarks import launch_model as lm
    from vllm_moe_align_plugin.bench import CASES

    rows = [lm.model(c) for c in CASES]
    for m in rows:
        assert m.plan.launches * lm.LAUNCH_US < m.floor_us
        assert m.compulsory_bytes >= 4 * m.case.numel * 2  # ids in, sorted_ids out
        if m.plan.regime == "spread":  # every CTA reads every route
            assert m.l2_bytes == m.plan.ctas * 4 * m.case.numel
    out = tmp_path / "model.md"
    assert lm.main(["--out", str(out)]) == 0
    text = out.read_text()
    table = [line for line in text.splitlines() if line[:3].startswith("| ") and line[2].isdigit()]
    assert len(table) == len(CASES)
    assert all(" - | - |" not in line for line in table)  # every shape has a measured time
    # the committed table is what the script writes from the committed CSV
    committed = Path(lm.HERE) / "results" / "launch_model.md"
    assert committed.read_text() == text


# --------------------------------------------------------------------------- dependent launch


def test_dependent_launch_is_off_by_default_and_switches_both_ways() -> None:
    code = ("from vllm_moe_align_plugin import _ops as o; "
            "print(o.dependent_launch(), o.dependent_launch(True), o.dependent_launch(), "
            "o.dependent_launch(False), o.dependent_launch())")
    env = {k: v for k, v in os.environ.items() if k != _ops.cuda_host.DEPENDENT_LAUNCH_ENV}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "True", "True", "False", "False"]


@pytest.mark.parametrize("value,on,warned", [
    ("1", True, False), ("on", True, False), ("TRUE", True, False), ("0", False, False),
    ("", False, False), ("off", False, False), ("maybe", False, True), ("2", False, True),
])
def test_dependent_launch_from_the_environment(value: str, on: bool, warned: bool) -> None:
    """VLLM_MOE_ALIGN_PDL is read when the CUDA kernels load; a value it does
    not know leaves it off and says so, naming the variable."""
    code = ("from vllm_moe_align_plugin import _ops as o; "
            "print(o.dependent_launch())")
    env = dict(os.environ, **{_ops.cuda_host.DEPENDENT_LAUNCH_ENV: value})
    run = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True)
    assert run.stdout.split() == [str(on)]
    assert (_ops.cuda_host.DEPENDENT_LAUNCH_ENV in run.stderr) == warned, run.stderr


def test_dependent_launch_takes_a_bool_or_none() -> None:
    before = _ops.dependent_launch()
    for bad in (1, "1", 0.0):
        with pytest.raises(TypeError, match="enabled"):
            _ops.dependent_launch(bad)  # type: ignore[arg-type]
    assert _ops.dependent_launch() == before


def test_the_enabled_line_says_when_dependent_launch_is_on() -> None:
    from vllm_moe_align_plugin.contract import NEWEST as contract
    from vllm_moe_align_plugin.vllm import runtime

    state = runtime._State(contract=contract, vllm_version="0.33.0")
    before = _ops.dependent_launch()
    _ops.dependent_launch(False)
    try:
        off = runtime._enabled_line(state)
        _ops.dependent_launch(True)
        on = runtime._enabled_line(state)
    finally:
        _ops.dependent_launch(before)
    assert "dependent launch" not in off
    assert "; programmatic dependent launch on)" in on  # inside the CUDA kernels' brackets
    assert on.replace("; programmatic dependent launch on", "") == off


def test_the_benchmarks_plugin_impls_set_the_launch_when_made() -> None:
    """bench.plugin_impl: making the calls sets the process's launch mode
    (ordinary for "plugin", dependent for "plugin, dependent launch"); the
    calls then run with it and meet the contract."""
    from vllm_moe_align_plugin import bench

    ids = torch.randint(0, 64, (8, 6), dtype=torch.int32, generator=torch.Generator().manual_seed(0))
    saved = _ops.dependent_launch()
    try:
        for dependent in (True, False, True):
            impl = bench.plugin_impl(dependent_launch=dependent)
            assert impl.name == ("plugin, dependent launch" if dependent else "plugin")
            call = impl.make(ids, 64, 16)
            assert _ops.dependent_launch() is dependent
            bench.validate(impl, call(), ids, 64, 16)
    finally:
        _ops.dependent_launch(saved)
