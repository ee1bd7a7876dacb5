"""The runtime side of the static vLLM patches (``patches/``).

A patched vLLM source file ends its definition of ``moe_align_block_size`` with
a few lines that call :func:`replacement` when this package is importable::

    moe_align_block_size = replacement("python", moe_align_block_size)   # fused_moe module
    moe_align_block_size = replacement("op", moe_align_block_size)       # vllm/_custom_ops.py

Contract of :func:`replacement`: it returns this package's function for the
contract of the vLLM being imported (``api.drop_in_for`` / ``api.op_level_for``)
when all of these hold, and ``original`` itself otherwise:

- ``VLLM_MOE_ALIGN_DISABLE`` is not set;
- the vLLM version is known to ``contract.contract_for_vllm``;
- the compiled op loaded (``_ops.available()``);
- the replacement accepts exactly the parameters of ``original`` (same names in
  the same order, same defaults), so no caller of that vLLM can notice the swap.

It never raises; every fallback logs one warning saying why, and a replacement
logs one info line. It does not register the runtime plugin and patches no
other module: the patched source files bind the result themselves.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
import sys
from typing import Any, Callable, Optional

logger = logging.getLogger("vllm.moe_align_plugin")

KINDS = ("python", "op")
_WHERE = {
    "python": "vllm.model_executor.layers.fused_moe.moe_align_block_size.moe_align_block_size",
    "op": "vllm._custom_ops.moe_align_block_size",
}


def running_vllm_version() -> Optional[str]:
    """The version of the vLLM being imported: ``vllm.version.__version__``
    (vLLM imports it first), else the installed distribution's metadata."""
    module = sys.modules.get("vllm.version")
    version = getattr(module, "__version__", None)
    if isinstance(version, str) and version and version != "dev":
        return version
    try:
        return importlib.metadata.version("vllm")
    except importlib.metadata.PackageNotFoundError:
        return None


def signature_mismatch(original: Callable[..., Any], candidate: Callable[..., Any]) -> Optional[str]:
    """None when ``candidate`` has ``original``'s parameter names in the same
    order with the same defaults; otherwise a sentence naming the difference."""
    want = inspect.signature(original).parameters
    have = inspect.signature(candidate).parameters
    if list(want) != list(have):
        return f"vLLM's parameters are ({', '.join(want)}), the plugin's are ({', '.join(have)})"
    for name, param in want.items():
        if param.default != have[name].default:
            return (
                f"parameter {name!r} defaults to {param.default!r} in vLLM "
                f"but to {have[name].default!r} in the plugin"
            )
    return None


def _build(kind: str, original: Callable[..., Any]) -> tuple[Optional[Callable[..., Any]], str]:
    """(replacement, message) or (None, reason to keep ``original``)."""
    from .vllm_plugin import DISABLE_ENV, _disabled_by_env

    if kind not in KINDS:
        return None, f"unknown kind {kind!r} (expected one of {', '.join(KINDS)})"
    if _disabled_by_env():
        return None, f"disabled by {DISABLE_ENV}"
    from .contract import contract_for_vllm

    version = running_vllm_version()
    if version is None:
        return None, "the vLLM version could not be read"
    contract = contract_for_vllm(version)
    if contract is None:
        return None, f"vLLM {version} is not a version this plugin knows"
    from . import _ops

    if not _ops.available():
        return None, f"the compiled op failed to load ({_ops.LOAD_ERROR})"
    from .api import drop_in_for, op_level_for

    candidate = drop_in_for(contract) if kind == "python" else op_level_for(contract)
    mismatch = signature_mismatch(original, candidate)
    if mismatch is not None:
        return None, f"signature differs under the {contract.name} contract: {mismatch}"
    return candidate, f"vLLM {version}, {contract.name} contract"


def replacement(kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """The function a patched vLLM binds as ``moe_align_block_size``:
    ``kind`` is ``"python"`` (the fused_moe module's function) or ``"op"``
    (``vllm._custom_ops``' op-level wrapper). See the module docstring."""
    where = _WHERE.get(kind, kind)
    try:
        fn, message = _build(kind, original)
    except Exception as exc:  # a broken plugin must never break vLLM's import
        fn, message = None, f"{type(exc).__name__}: {exc}"
    if fn is None:
        logger.warning(
            "vllm-moe-align-plugin static patch: %s keeps vLLM's own function (%s)", where, message
        )
        return original
    logger.info("vllm-moe-align-plugin static patch: %s replaced (%s)", where, message)
    return fn
