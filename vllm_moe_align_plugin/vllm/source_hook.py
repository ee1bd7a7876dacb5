"""The runtime side of the static vLLM patches (``patches/``).

A patched vLLM source file ends its definition of ``moe_align_block_size`` with
a few lines that call :func:`replacement` when this package is importable::

    moe_align_block_size = replacement("python", moe_align_block_size)   # fused_moe module
    moe_align_block_size = replacement("op", moe_align_block_size)       # vllm/_custom_ops.py

and in vLLM >= 0.33 likewise for ``fused_globalize_align_block_size`` (kinds
``"globalize_python"`` and ``"globalize_op"``).

Contract of :func:`replacement`: it returns this package's function for the
contract of the vLLM being imported (``runtime.build_replacement``, as the
runtime plugin builds it, with ``original`` as the fallback for devices the
plugin cannot serve) when all of these hold, and ``original`` itself
otherwise:

- ``VLLM_MOE_ALIGN_DISABLE`` is not set;
- the vLLM version is known to ``contract.contract_for_vllm`` (and, for the
  globalize kinds, has the function: ``contract.has_globalize``);
- the compiled op loaded (``_ops.library.available()``);
- ``original`` has exactly the parameters of the contract's line (same names
  in the same order, same defaults), so no caller of that vLLM can notice the
  swap.

It never raises; every fallback logs one warning saying why, and a replacement
logs one info line. It does not register the runtime plugin and patches no
other module: the patched source files bind the result themselves.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

from ..contract import GLOBALIZE_OP, GLOBALIZE_PYTHON, OP, PYTHON
from ..log import announce, logger
from ..messages import describe
from .env import DISABLE_ENV, disabled_by_env, running_vllm_version

KINDS = (PYTHON, OP, GLOBALIZE_PYTHON, GLOBALIZE_OP)
_WHERE = {
    PYTHON: "vllm.model_executor.layers.fused_moe.moe_align_block_size.moe_align_block_size",
    OP: "vllm._custom_ops.moe_align_block_size",
    GLOBALIZE_PYTHON: "vllm.model_executor.layers.fused_moe.fused_globalize_align_block_size."
                      "fused_globalize_align_block_size",
    GLOBALIZE_OP: "vllm._custom_ops.fused_globalize_align_block_size",
}


def _build(kind: str, original: Callable[..., Any]) -> tuple[Optional[Callable[..., Any]], str]:
    """(replacement, message) or (None, reason to keep ``original``)."""
    if kind not in KINDS:
        return None, f"unknown kind {describe(kind)} (expected one of {', '.join(KINDS)})"
    if disabled_by_env():
        return None, f"disabled by {DISABLE_ENV}"
    from ..contract import contract_for_vllm, has_globalize, parameters_mismatch, parameters_of

    version = running_vllm_version()
    if version is None:
        return None, "the vLLM version could not be read"
    contract = contract_for_vllm(version)
    if contract is None:
        return None, f"vLLM {version} is not a version this plugin knows"
    if kind in (GLOBALIZE_PYTHON, GLOBALIZE_OP) and not has_globalize(version):
        return None, f"vLLM {version} has no fused_globalize_align_block_size"
    from .._ops import library

    if not library.available():
        return None, f"the compiled op failed to load ({library.LOAD_ERROR})"
    mismatch = parameters_mismatch(parameters_of(original), contract, kind)
    if mismatch is not None:
        return None, f"signature differs: {mismatch}"
    from .runtime import build_replacement

    return build_replacement(kind, contract, original), f"vLLM {version}, {contract.name} contract"


def replacement(kind: str, original: Callable[..., Any]) -> Callable[..., Any]:
    """The function a patched vLLM binds in place of ``original``: ``kind``
    is ``"python"`` (the fused_moe module's ``moe_align_block_size``),
    ``"op"`` (``vllm._custom_ops``' op-level wrapper of it), or the same two of
    ``fused_globalize_align_block_size`` (``"globalize_python"``,
    ``"globalize_op"``). See the module docstring."""
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
    announce(logging.INFO, "vllm-moe-align-plugin static patch: %s replaced (%s)", where, message)
    return fn
