"""The benchmarks' other compiled ops, loaded from library files: vLLM's
``_moe_C`` (``VLLM_MOE_ALIGN_VLLM_OP_SO``, else the installed vLLM's) and
sgl_kernel's ``common_ops`` (``VLLM_MOE_ALIGN_SGLANG_SO``), each called as its
own Python caller calls it (``benchmarks/fetch_reference_kernels.sh`` fetches
both files). The timing itself is ``vllm_moe_align_plugin.bench``.
"""

from __future__ import annotations

import ctypes
import glob
import os
from typing import Callable, Optional

import torch

from vllm_moe_align_plugin import bench
from vllm_moe_align_plugin.bench import Impl
from vllm_moe_align_plugin.contract import NEWEST

VLLM_SO_ENV = "VLLM_MOE_ALIGN_VLLM_OP_SO"
SGLANG_SO_ENV = "VLLM_MOE_ALIGN_SGLANG_SO"


def load_vllm_op() -> Optional[str]:
    """Makes torch.ops._moe_C.moe_align_block_size available; returns where from."""
    path = os.environ.get(VLLM_SO_ENV)
    if path:
        torch.ops.load_library(path)
        return os.path.basename(path)
    return bench.installed_vllm_op()


def vllm_impl() -> Optional[Impl]:
    """vLLM's compiled op (``load_vllm_op``) as vLLM >= 0.17's wrapper calls it."""
    return bench.vllm_impl(load_vllm_op)


def _load_sglang_op(path: str) -> None:
    """sgl_kernel's common_ops needs CUDA 13 libraries loaded globally first."""
    for lib in ("libnvrtc.so.13", "libcublasLt.so.13", "libcublas.so.13"):
        for base in _nvidia_lib_dirs():
            hits = glob.glob(os.path.join(base, lib))
            if hits:
                ctypes.CDLL(hits[0], mode=ctypes.RTLD_GLOBAL)
                break
    torch.ops.load_library(path)


def _nvidia_lib_dirs() -> list[str]:
    try:
        import nvidia
    except ImportError:
        return []
    dirs = []
    for base in nvidia.__path__:
        dirs += glob.glob(os.path.join(base, "cu13", "lib")) + glob.glob(os.path.join(base, "*", "lib"))
    return dirs


def sglang_impl() -> Optional[Impl]:
    """sgl_kernel's op as SGLang calls it: num_experts + 1 bins, a cumsum buffer
    of num_experts + 2, padded sorted ids."""
    path = os.environ.get(SGLANG_SO_ENV)
    if not path:
        return None
    try:
        _load_sglang_op(path)
        op = torch.ops.sgl_kernel.moe_align_block_size
    except Exception:
        return None

    def make(ids: torch.Tensor, e: int, b: int) -> Callable[[], tuple[torch.Tensor, ...]]:
        def call() -> tuple[torch.Tensor, ...]:
            numel = ids.numel()
            bins = e + 1
            size = numel * b if numel < bins else numel + bins * (b - 1)
            sorted_ids = torch.empty((size,), dtype=torch.int32, device=ids.device)
            expert_ids = torch.empty(((size + b - 1) // b,), dtype=torch.int32, device=ids.device)
            post_pad = torch.empty((1,), dtype=torch.int32, device=ids.device)
            cumsum = torch.empty((bins + 1,), dtype=torch.int32, device=ids.device)
            op(ids, bins, b, sorted_ids, expert_ids, post_pad, cumsum, True, False)
            return sorted_ids, expert_ids, post_pad

        return call

    return Impl("sglang-kernel 0.4.5", make, NEWEST, exact=False)


def available_impls(device: str, with_reference: bool = True) -> list[Impl]:
    """``bench.available_impls`` with vLLM's and SGLang's ops from these loaders."""
    others = [vllm_impl(), sglang_impl()] if device == "cuda" else []
    return bench.available_impls(device, with_reference, others)
