"""Questions about the CUDA backend, answered by the CUDA library's host ops
(csrc/cuda/cuda_host.{h,cpp}): its archs, its launch plan for a call, loading
its kernels ahead of the first call, which this module's import does where
CUDA is already up, and programmatic dependent launch, which this module's
import turns on when ``VLLM_MOE_ALIGN_PDL`` asks for it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import torch

from ..log import logger
from ..messages import preview
from . import library
from .checks import check_int

_OPS = torch.ops.vllm_moe_align


def _require_cuda_kernels() -> None:
    """NotImplementedError without the CUDA kernels (a build without them, or
    a CUDA library that did not load: its host ops do not exist then)."""
    if not library.has_backend("cuda"):
        if library.CUDA_LOAD_ERROR is not None:
            raise NotImplementedError(f"the CUDA kernels did not load: {library.CUDA_LOAD_ERROR}")
        raise NotImplementedError("this build has no CUDA kernels")


def cuda_archs() -> list[str]:
    """The CUDA archs this build's kernels were compiled for (e.g.
    ``["8.0", "9.0", "9.0a"]``); empty for a CPU-only build or when the
    CUDA library is not loaded."""
    if not library.has_backend("cuda"):
        return []
    return _OPS.cuda_archs().split()


def preload_cuda_kernels(device: Optional[int] = None) -> None:
    """Loads the CUDA kernels on ``device`` (default: the current one) ahead of
    the first call. CUDA loads a library's kernels when one is first used,
    which makes the first call of a process several times slower than the
    next. Raises RuntimeError on a CUDA error (no GPU, no kernel image for
    it), NotImplementedError without CUDA kernels in this build."""
    library.require()
    index = torch.cuda.current_device() if device is None else check_int("device", device)
    _require_cuda_kernels()
    _OPS.preload_cuda_kernels(index)


#: VLLM_MOE_ALIGN_PDL=1 turns programmatic dependent launch on in every
#: process that loads the CUDA kernels (0 or unset: off)
DEPENDENT_LAUNCH_ENV = "VLLM_MOE_ALIGN_PDL"
_ON, _OFF = ("1", "true", "yes", "on"), ("", "0", "false", "no", "off")


def dependent_launch(enabled: Optional[bool] = None) -> bool:
    """Programmatic dependent launch of the CUDA kernels, for the whole
    process: with ``enabled`` given, turns it on or off; returns the setting
    in force. On, a kernel may start while the kernel before it in its stream
    finishes (it waits for that kernel's writes before it touches memory); it
    takes effect on GPUs of compute capability 9.0 and newer, others launch
    as before. A CUDA graph keeps the setting in force when it was captured.
    Off by default. TypeError for an ``enabled`` that is not a bool or None;
    NotImplementedError without CUDA kernels in this build."""
    if enabled is not None and not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool or None, got {preview(enabled)}")
    library.require()
    _require_cuda_kernels()
    return bool(_OPS.cuda_dependent_launch(enabled))


def dependent_launch_from_env() -> Optional[bool]:
    """What ``VLLM_MOE_ALIGN_PDL`` asks for: True, False (0 or unset), or
    None for a value it does not know (logged, and then off)."""
    raw = os.environ.get(DEPENDENT_LAUNCH_ENV, "")
    value = raw.strip().lower()
    if value in _ON or value in _OFF:
        return value in _ON
    logger.warning("%s=%s is neither 1 nor 0: programmatic dependent launch stays off",
                   DEPENDENT_LAUNCH_ENV, preview(raw))
    return None


# The H100's values (and the defaults of cuda_launch_plan): SMs, and the
# shared memory a block may opt into (227 KiB).
H100_SMS = 132
H100_SMEM_OPTIN_BYTES = 232448

REGIMES = ("tiny", "spread", "tiled, prefix in each CTA", "tiled, scan kernel")


@dataclass(frozen=True)
class CudaLaunchPlan:
    """What the CUDA backend launches for one call (``plan_launch`` in
    csrc/cuda/plan.cpp decides it; this only reports it)."""

    regime: str
    launches: int  # kernels per call
    ctas: int  # CTAs of each kernel but the scan kernel
    tile_routes: int  # routes each CTA places
    threads: int  # per CTA
    hist_warps: int  # tiled: warps with a histogram row
    smem_bytes: int  # dynamic shared memory per CTA
    scratch_ints: int  # device scratch per call, in int32
    fits: bool  # False: num_experts needs more shared memory than the GPU has


def cuda_launch_plan(
    numel: int,
    num_experts: int,
    block_size: int,
    sorted_size: int,
    map_while_counting: bool = False,
    num_sms: int = H100_SMS,
    smem_optin_bytes: int = H100_SMEM_OPTIN_BYTES,
) -> CudaLaunchPlan:
    """The launch plan of the CUDA backend for these sizes on a GPU with
    ``num_sms`` SMs (host code: no GPU needed). ValueError names a bad
    argument; NotImplementedError without CUDA kernels in this build."""
    library.require()
    sizes = {"numel": numel, "num_experts": num_experts, "block_size": block_size,
             "sorted_size": sorted_size, "num_sms": num_sms, "smem_optin_bytes": smem_optin_bytes}
    n, e, b, size, sms, smem = (check_int(name, value) for name, value in sizes.items())
    _require_cuda_kernels()
    v = _OPS.cuda_launch_plan(n, e, b, size, bool(map_while_counting), sms, smem)
    return CudaLaunchPlan(REGIMES[v[0]], *v[1:8], fits=bool(v[8]))


@dataclass(frozen=True)
class CudaGlobalizePlan:
    """What the CUDA backend launches for one ``fused_globalize_align_block_size``
    call (``plan_globalize`` in csrc/cuda/plan.cpp decides it; this only
    reports it)."""

    fused: bool  # one launch of one CTA; else the align kernels of align_regime
    launches: int  # kernels per call
    threads: int  # per CTA of the fused kernel or of the globalize pass (0: none)
    smem_bytes: int  # the fused kernel's dynamic shared memory
    ctas: int  # CTAs of the fused kernel or of the globalize pass (0: none)
    align_regime: Optional[str]  # the align kernels' regime (None when fused)
    folded: bool  # the tiled align kernels globalize as they go: no pass


def cuda_globalize_plan(
    numel: int,
    local_num_experts: int,
    block_size: int,
    num_sms: int = H100_SMS,
    smem_optin_bytes: int = H100_SMEM_OPTIN_BYTES,
) -> CudaGlobalizePlan:
    """The CUDA backend's plan for a ``fused_globalize_align_block_size``
    call of ``numel`` routes on a GPU with ``num_sms`` SMs (host code: no GPU
    needed). ValueError names a bad argument; NotImplementedError without CUDA
    kernels in this build."""
    library.require()
    sizes = {"numel": numel, "local_num_experts": local_num_experts, "block_size": block_size,
             "num_sms": num_sms, "smem_optin_bytes": smem_optin_bytes}
    n, e, b, sms, smem = (check_int(name, value) for name, value in sizes.items())
    _require_cuda_kernels()
    v = _OPS.cuda_globalize_plan(n, e, b, sms, smem)
    return CudaGlobalizePlan(bool(v[0]), *v[1:5], align_regime=None if v[5] < 0 else REGIMES[v[5]],
                             folded=bool(v[6]))


def _preload_if_cuda_is_up() -> None:
    """At import: preload on the current device if this process already has a
    CUDA context there, so the load is paid here and not in the first call.
    Never starts CUDA or creates a context (that would break fork-based
    workers and, in a process bound to another GPU, take memory on GPU 0), and
    never raises: a failure only costs the first call its speed."""
    try:
        if not torch.cuda.is_initialized():
            return
        device = torch.cuda.current_device()
        if torch._C._cuda_hasPrimaryContext(device):
            preload_cuda_kernels(device)
    except Exception:  # noqa: BLE001
        pass


if library.available() and library.has_backend("cuda"):
    if dependent_launch_from_env():
        dependent_launch(True)
    _preload_if_cuda_is_up()
