"""Where the compiled op can run: decided once per device, then cached.

A build may lack the CUDA kernels (no ``nvcc`` at build time), hold no code
for the GPU's architecture, or meet a torch whose ``"cuda"`` is ROCm/HIP or a
device type it has no kernel for. The vLLM integration routes such calls to
vLLM's own function instead of failing inside vLLM's forward pass
(``api._build``): when the op fails it asks ``plugin_runs_on_tensor``, which
decides for the device once (one warning saying why and how to fix it) and,
for a device the plugin cannot serve, adds it to ``ELSEWHERE``, which later
calls check first. A process whose every device runs the plugin never pays
more than the truth test of an empty set.
"""

from __future__ import annotations

import threading
from typing import Optional

import torch

from ._ops import cuda_host, library
from .log import logger

_lock = threading.Lock()
#: device -> True (the plugin runs there) or False (vLLM's function does)
_decided: dict[torch.device, bool] = {}
_reasons: dict[torch.device, str] = {}
#: the devices decided not to run the plugin (their calls go to vLLM's function)
ELSEWHERE: set[torch.device] = set()

_REBUILD = ("install a build with CUDA kernels for this GPU (set CUDA_HOME to a CUDA toolkit, "
            "or TORCH_CUDA_ARCH_LIST to include {arch}, and reinstall)")


def _cuda_reason(device: torch.device) -> Optional[str]:
    if torch.version.hip is not None:
        return (f"torch {torch.__version__} is a ROCm/HIP build; the plugin has CUDA kernels "
                "only")
    if not library.has_backend("cuda"):
        if library.CUDA_LOAD_ERROR is not None:
            return (f"the plugin's CUDA library did not load ({library.CUDA_LOAD_ERROR}); install "
                    "a build made for this torch's CUDA (the wheel needs a CUDA 13 torch), or "
                    "build from source")
        return ("this build of the plugin has no CUDA kernels (nvcc was not found when it was "
                "built); set CUDA_HOME to a CUDA toolkit and reinstall")
    index = device.index if device.index is not None else torch.cuda.current_device()
    try:
        cuda_host.preload_cuda_kernels(index)
    except Exception as exc:  # noqa: BLE001 - any failure means: not here
        major, minor = torch.cuda.get_device_capability(index)
        archs = ", ".join(cuda_host.cuda_archs()) or "unknown"
        error = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return (f"the plugin's CUDA kernels do not load on {torch.cuda.get_device_name(index)} "
                f"(sm_{major}{minor}; built for {archs}): {error}; "
                + _REBUILD.format(arch=f"{major}.{minor}"))
    return None


def unsupported_reason(device: torch.device) -> Optional[str]:
    """None when the plugin's op has a working kernel for ``device``, else
    why not (with the fix). Not cached: it may load kernels (CUDA) to find out."""
    if not library.available():
        return f"the compiled op failed to load ({library.LOAD_ERROR})"
    if device.type == "cuda":
        return _cuda_reason(device)
    if device.type == "meta":
        return None  # shapes only: the op's fake kernels
    if library.has_backend(device.type):
        return None
    return f"the plugin has no kernels for {device.type} devices"


def _decide(device: torch.device) -> bool:
    with _lock:
        if device in _decided:
            return _decided[device]
        try:
            reason = unsupported_reason(device)
        except Exception as exc:  # noqa: BLE001 - deciding must not break the caller
            reason = f"could not check the device ({type(exc).__name__}: {exc})"
        if reason is not None:
            _reasons[device] = reason
            ELSEWHERE.add(device)
            logger.warning(
                "vllm-moe-align-plugin: moe_align_block_size on %s runs vLLM's own function: %s",
                device, reason,
            )
        _decided[device] = reason is None
        return reason is None


def served_elsewhere(tensor: object) -> bool:
    """True when ``tensor`` is on a device already decided not to run the plugin."""
    return isinstance(tensor, torch.Tensor) and tensor.device in ELSEWHERE


def plugin_runs_on_tensor(tensor: object) -> bool:
    """True when the plugin serves a call whose ``topk_ids`` is ``tensor``
    (a non-tensor goes to the plugin, whose checks name the argument)."""
    if not isinstance(tensor, torch.Tensor):
        return True
    device = tensor.device
    decided = _decided.get(device)
    return _decide(device) if decided is None else decided


def decision(device: torch.device) -> tuple[bool, Optional[str]]:
    """(plugin runs on ``device``, why not): the cached decision, made now if
    this process has not made it yet."""
    ok = _decided.get(device)
    if ok is None:
        ok = _decide(device)
    return ok, _reasons.get(device)


def forget() -> None:
    """Drops every cached decision (tests, and after a rebuild in place)."""
    with _lock:
        _decided.clear()
        _reasons.clear()
        ELSEWHERE.clear()
