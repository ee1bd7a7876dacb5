"""Per-device fallback to vLLM's own function (vllm_moe_align_plugin.devices).

Where the plugin has no working kernel for topk_ids's device (a build without
CUDA kernels, no code for the GPU's architecture, a ROCm/HIP torch, another
device type, no compiled op at all), the installed replacement hands the call,
unchanged, to the function it replaced, and logs one warning per device. The
cases that need hardware this machine lacks are simulated by replacing what
the decision reads and by making the op fail the way the dispatcher does for a
backend it has no kernel for; the routing itself runs for real on CPU tensors.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
import torch
from helpers import assert_same, random_routes

from vllm_moe_align_plugin import _ops, api, devices
from vllm_moe_align_plugin._ops import cuda_host, library
from vllm_moe_align_plugin.contract import ALL, NEWEST
from vllm_moe_align_plugin.reference import moe_align_block_size_reference as reference

CUDA0 = torch.device("cuda", 0)


@pytest.fixture(autouse=True)
def fresh_decisions() -> Any:
    devices.forget()
    yield
    devices.forget()


# --------------------------------------------------------------------------- the decision


def test_cpu_runs_the_plugin() -> None:
    assert devices.unsupported_reason(torch.device("cpu")) is None
    assert devices.decision(torch.device("cpu")) == (True, None)


def test_build_without_cuda_kernels(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(library, "has_backend", lambda t: t == "cpu")
    monkeypatch.setattr(library, "CUDA_LOAD_ERROR", None)
    why = devices.unsupported_reason(CUDA0)
    assert why is not None and "no CUDA kernels" in why and "CUDA_HOME" in why


def test_cuda_library_that_does_not_load(monkeypatch: pytest.MonkeyPatch) -> None:
    """A wheel's _C_cuda next to a torch of another CUDA major: _C works, CUDA
    calls go to vLLM's function, and the reason names the load error."""
    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(library, "has_backend", lambda t: t == "cpu")
    monkeypatch.setattr(library, "CUDA_LOAD_ERROR",
                        ImportError("libcudart.so.13: cannot open shared object file"))
    why = devices.unsupported_reason(CUDA0)
    assert why is not None and "CUDA library did not load" in why and "libcudart.so.13" in why
    with pytest.raises(NotImplementedError, match="CUDA kernels did not load: libcudart.so.13"):
        _ops.cuda_launch_plan(10, 8, 4, 100)


def test_binary_without_code_for_the_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_image(device: int) -> None:
        raise RuntimeError("CUDA error: no kernel image is available for execution on the device")

    monkeypatch.setattr(torch.version, "hip", None)
    monkeypatch.setattr(library, "has_backend", lambda t: True)
    monkeypatch.setattr(cuda_host, "preload_cuda_kernels", no_image)
    monkeypatch.setattr(cuda_host, "cuda_archs", lambda: ["8.0"])
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda i: (12, 0))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda i: "Some GPU")
    why = devices.unsupported_reason(CUDA0)
    assert why is not None
    assert "no kernel image" in why and "sm_120" in why and "built for 8.0" in why
    assert "TORCH_CUDA_ARCH_LIST" in why and "12.0" in why


def test_rocm_torch(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.version, "hip", "6.4")
    why = devices.unsupported_reason(CUDA0)
    assert why is not None and "ROCm/HIP" in why


@pytest.mark.parametrize("device_type", ["xpu", "hpu", "mps"])
def test_other_device_types(device_type: str) -> None:
    why = devices.unsupported_reason(torch.device(device_type))
    assert why is not None and f"no kernels for {device_type}" in why


def test_meta_runs_the_fake_kernels() -> None:
    assert devices.unsupported_reason(torch.device("meta")) is None


def test_op_missing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(library, "LOAD_ERROR", ImportError("undefined symbol"))
    why = devices.unsupported_reason(torch.device("cpu"))
    assert why is not None and "undefined symbol" in why


def test_a_failing_check_falls_back_and_never_raises(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(device: torch.device) -> None:
        raise OSError("driver gone")

    monkeypatch.setattr(devices, "unsupported_reason", broken)
    ok, why = devices.decision(torch.device("cpu"))
    assert not ok and why is not None and "driver gone" in why


# --------------------------------------------------------------------------- the routing


class Recorder:
    """Stands in for vLLM's function: records each call, answers with the
    reference (Python level) or fills the buffers (op level)."""

    def __init__(self, contract: Any = NEWEST) -> None:
        self.calls: list[tuple[tuple, dict]] = []
        self.contract = contract

    def python(self, *args: Any, **kwargs: Any) -> Any:
        self.calls.append((args, kwargs))
        ids, block_size, num_experts = args[:3]
        return reference(ids, block_size, num_experts, *args[3:], contract=self.contract, **kwargs)

    def op(self, *args: Any, **kwargs: Any) -> None:
        self.calls.append((args, kwargs))
        ids, num_experts, block_size, sorted_ids, expert_ids, post_pad = args[:6]
        want = reference(ids, block_size, num_experts, contract=self.contract)
        sorted_ids[: want[0].numel()] = want[0]
        expert_ids[: want[1].numel()] = want[1]
        post_pad.copy_(want[2])


def no_kernel(*args: Any, **kwargs: Any) -> None:
    raise NotImplementedError("Could not run 'vllm_moe_align::moe_align_block_size' with "
                              "arguments from the 'CPU' backend")


def simulate_unsupported_cpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """CPU as a device the build has no kernels for: the op fails as the
    dispatcher fails, and the decision says so."""
    real = devices.unsupported_reason
    monkeypatch.setattr(
        devices, "unsupported_reason",
        lambda d: "simulated: no kernel here" if d.type == "cpu" else real(d),
    )
    monkeypatch.setattr(api, "_ALIGN", no_kernel)
    monkeypatch.setattr(api, "_ALIGN_OUT", no_kernel)


@pytest.mark.parametrize("contract", ALL, ids=[c.name for c in ALL])
def test_unsupported_device_runs_the_original_with_the_same_arguments(
    contract: Any, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    simulate_unsupported_cpu(monkeypatch)
    vllm = Recorder(contract)
    fn = api.drop_in_for(contract, fallback=vllm.python)
    ids = random_routes(300, 64, top_k=6, seed=3)
    emap = torch.arange(64, dtype=torch.int32)
    extra: tuple = (True,) if contract.has_ignore_invalid_experts else ()
    with caplog.at_level(logging.WARNING, logger="vllm.moe_align_plugin"):
        for _ in range(3):
            got = fn(ids, 16, 64, emap, True, *extra)
    assert len(vllm.calls) == 3
    assert vllm.calls[0][0] == (ids, 16, 64, emap, True, *extra) + (
        (False,) if contract.has_scatter_idx else ())
    assert_same(got, reference(ids, 16, 64, emap, True, *extra, contract=contract))
    warnings = [r.getMessage() for r in caplog.records if "vLLM's own function" in r.getMessage()]
    assert len(warnings) == 1 and "cpu" in warnings[0] and "simulated" in warnings[0], warnings


def test_supported_device_never_calls_the_original() -> None:
    vllm = Recorder()
    fn = api.drop_in_for(NEWEST, fallback=vllm.python)
    ids = random_routes(500, 32, top_k=4, seed=5)
    assert_same(fn(ids, 32, 32), reference(ids, 32, 32))
    assert vllm.calls == []


def test_keyword_arguments_reach_the_original(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate_unsupported_cpu(monkeypatch)
    vllm = Recorder()
    fn = api.drop_in_for(NEWEST, fallback=vllm.python)
    ids = random_routes(40, 8, seed=1)
    fn(ids, block_size=4, num_experts=8, return_scatter_idx=True)
    args, kwargs = vllm.calls[0]
    assert args == (ids, 4, 8, None, False, False, True) and kwargs == {}


@pytest.mark.parametrize("contract", ALL, ids=[c.name for c in ALL])
def test_op_level_wrapper_falls_back(contract: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    simulate_unsupported_cpu(monkeypatch)
    vllm = Recorder(contract)
    fn = api.op_level_for(contract, fallback=vllm.op)
    ids = random_routes(200, 16, top_k=2, seed=7)
    size = ids.numel() + 16 * 7
    bufs = (torch.empty(size, dtype=torch.int32), torch.empty((size + 7) // 8, dtype=torch.int32),
            torch.empty(1, dtype=torch.int32))
    fn(ids, 16, 8, *bufs)
    assert len(vllm.calls) == 1 and vllm.calls[0][0][:6] == (ids, 16, 8, *bufs)
    assert int(bufs[2]) == int(reference(ids, 8, 16, contract=contract)[2])


def test_a_non_tensor_reaches_the_plugin_checks() -> None:
    fn = api.drop_in_for(NEWEST, fallback=Recorder().python)
    with pytest.raises(TypeError, match="topk_ids must be a torch.Tensor"):
        fn([1, 2, 3], 16, 8)


def test_decision_is_made_once_per_device(monkeypatch: pytest.MonkeyPatch) -> None:
    simulate_unsupported_cpu(monkeypatch)
    asked: list[torch.device] = []
    simulated = devices.unsupported_reason

    def counting(d: torch.device) -> Any:
        asked.append(d)
        return simulated(d)

    monkeypatch.setattr(devices, "unsupported_reason", counting)
    vllm = Recorder()
    fn = api.drop_in_for(NEWEST, fallback=vllm.python)
    ids = random_routes(10, 4, seed=0)
    for _ in range(5):
        fn(ids, 4, 4)
    assert asked == [torch.device("cpu")] and len(vllm.calls) == 5
    assert devices.ELSEWHERE == {torch.device("cpu")}


def test_a_supported_device_is_never_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    """The normal path: the op runs, nothing is decided, nothing is looked up."""
    def never(d: torch.device) -> None:
        raise AssertionError("decided a device although the op ran")

    monkeypatch.setattr(devices, "unsupported_reason", never)
    fn = api.drop_in_for(NEWEST, fallback=Recorder().python)
    ids = random_routes(100, 16, seed=2)
    assert_same(fn(ids, 8, 16), reference(ids, 8, 16))
    assert devices.ELSEWHERE == set()


def test_an_op_error_on_a_supported_device_is_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure that is not a missing kernel (say, out of memory) is the
    caller's: vLLM's function is not tried."""
    def oom(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("out of memory")

    monkeypatch.setattr(api, "_ALIGN", oom)
    vllm = Recorder()
    fn = api.drop_in_for(NEWEST, fallback=vllm.python)
    with pytest.raises(RuntimeError, match="out of memory"):
        fn(random_routes(10, 4, seed=0), 4, 4)
    assert vllm.calls == []


def test_without_a_fallback_there_is_no_device_check() -> None:
    fn = api.drop_in_for(NEWEST)
    assert "_runs_here" not in fn.__code__.co_names
    assert "_runs_here" in api.drop_in_for(NEWEST, fallback=Recorder().python).__code__.co_names


def test_a_generated_wrapper_shows_its_source() -> None:
    """The built functions have source: inspect.getsource reads it and a
    traceback through one shows its lines, under a file name that says which."""
    import inspect
    import traceback

    fn = api.op_level_for(NEWEST, fallback=Recorder().op)
    source = inspect.getsource(fn)
    assert source.startswith("def moe_align_block_size(topk_ids, num_experts, block_size,")
    assert "return _fallback(" in source and "_runs_here(topk_ids)" in source
    with pytest.raises(TypeError) as info:
        api.drop_in_for(NEWEST)("not a tensor", 16, 8)
    frames = traceback.extract_tb(info.value.__traceback__)
    generated = next(f for f in frames if f.name == "moe_align_block_size")
    assert generated.filename == (f"<vllm_moe_align_plugin generated: moe_align_block_size, "
                                  f"{NEWEST.name} contract>")
    assert generated.line.startswith("return _impl(_contract, topk_ids, block_size, num_experts")
