"""The drop-in ``moe_align_block_size`` and its per-version variants.

``moe_align_block_size`` has vLLM 0.33's signature and contract. ``drop_in_for``
and ``op_level_for`` build the function and the op-level wrapper with the exact
signature of any vLLM line, from the contract's table of parameters
(``contract.PARAMETERS``), for the vLLM integration to install. Each call
checks its arguments in Python (cheap ``isinstance`` tests) and makes exactly
one call into C++, which allocates the outputs and runs the kernel.

Given a ``fallback`` (vLLM's own function), the built function hands a call
to ``fallback``, unchanged, when the plugin has no working kernel for
``topk_ids``'s device. Where it has one (every device, in a build that matches
the machine) this costs nothing per call: the op simply runs. When the op
fails with NotImplementedError or RuntimeError, ``devices`` decides (once per
device, cached, one warning) whether the device is one the plugin cannot
serve: then this call and every later one on that device go to ``fallback``;
otherwise the error is the caller's and is raised.
"""

from __future__ import annotations

import linecache
from typing import Any, Callable, Optional, Union

import torch

from . import devices
from ._ops import checks, library
from .contract import NEWEST, OP, PARAMETERS, PYTHON, REQUIRED, Contract, parameters
from .messages import describe

AlignResult = Union[
    tuple[torch.Tensor, torch.Tensor, torch.Tensor],
    tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor],
]

_ARG_ORDER_HINT = (
    "the signature is moe_align_block_size(topk_ids, block_size, num_experts, "
    "expert_map=None, pad_sorted_ids=False, ...): passing top_k as a fourth "
    "positional argument puts it in expert_map"
)

def _check_tensor(name: str, value: object, optional: bool = False) -> None:
    """TypeError naming ``name`` unless ``value`` is a tensor (or None when
    ``optional``)."""
    if not isinstance(value, torch.Tensor) and not (optional and value is None):
        what = "a torch.Tensor or None" if optional else "a torch.Tensor"
        hint = f"; {_ARG_ORDER_HINT}" if name == "expert_map" else ""
        raise TypeError(f"{name} must be {what}, got {describe(value)}{hint}")


def _check_args(
    topk_ids: object,
    block_size: object,
    num_experts: object,
    expert_map: object,
    ignore_invalid_experts: bool,
    return_scatter_idx: bool,
) -> None:
    """Python-level checks whose C++ counterparts would give a worse message;
    dtype, device, size and range checks live in the op (csrc/checks.h)."""
    _check_tensor("topk_ids", topk_ids)
    checks.check_int("block_size", block_size)
    checks.check_int("num_experts", num_experts)
    _check_tensor("expert_map", expert_map, optional=True)
    if return_scatter_idx and expert_map is not None and not ignore_invalid_experts:
        raise ValueError(
            "return_scatter_idx with expert_map requires ignore_invalid_experts=True"
        )


def _align(
    contract: Contract,
    topk_ids: torch.Tensor,
    block_size: int,
    num_experts: int,
    expert_map: Optional[torch.Tensor],
    pad_sorted_ids: bool,
    ignore_invalid_experts: bool,
    return_scatter_idx: bool,
) -> AlignResult:
    _check_args(
        topk_ids, block_size, num_experts, expert_map, ignore_invalid_experts, return_scatter_idx
    )
    size = contract.max_num_tokens_padded(
        topk_ids.numel(), num_experts, block_size, pad_sorted_ids
    )
    try:
        sorted_ids, expert_ids, post_pad, scatter_idx = _ALIGN(
            topk_ids,
            num_experts,
            block_size,
            size,
            expert_map,
            ignore_invalid_experts,
            contract.expert_ids_tail,
            return_scatter_idx,
        )
    except ValueError as exc:
        raise checks.typed_error(exc) from None
    if return_scatter_idx:
        return sorted_ids, expert_ids, post_pad, scatter_idx
    return sorted_ids, expert_ids, post_pad


def _align_out(
    contract: Contract,
    topk_ids: torch.Tensor,
    num_experts: int,
    block_size: int,
    sorted_token_ids: torch.Tensor,
    experts_ids: torch.Tensor,
    num_tokens_post_pad: torch.Tensor,
    expert_map: Optional[torch.Tensor],
    scatter_idx: Optional[torch.Tensor],
) -> None:
    """The op-level wrapper's body: writes into the caller's buffers; an
    ``expert_map`` makes the op map ids while counting and drop routes of
    non-local experts, as vLLM's op does."""
    _check_tensor("topk_ids", topk_ids)
    checks.check_int("num_experts", num_experts)
    checks.check_int("block_size", block_size)
    _check_tensor("expert_map", expert_map, optional=True)
    try:
        _ALIGN_OUT(
            topk_ids, num_experts, block_size, sorted_token_ids, experts_ids,
            num_tokens_post_pad, expert_map, scatter_idx, expert_map is not None,
            contract.expert_ids_tail,
        )
    except ValueError as exc:
        raise checks.typed_error(exc) from None


def moe_align_block_size(
    topk_ids: torch.Tensor,
    block_size: int,
    num_experts: int,
    expert_map: Optional[torch.Tensor] = None,
    pad_sorted_ids: bool = False,
    ignore_invalid_experts: bool = False,
    return_scatter_idx: bool = False,
) -> AlignResult:
    """Sorts routes by expert and pads each expert's share to ``block_size``.

    Same signature and results as vLLM 0.33's function (the contract:
    ``vllm_moe_align_plugin.reference``), with route indices ascending inside
    each expert's segment, so the outputs are deterministic. ``topk_ids`` of
    any shape is the flat list of routes, of dtype
    int64, int32, int16, int8 or uint8 (the wider unsigned types are refused);
    ids outside ``[0, num_experts)`` are ignored.

    Returns ``(sorted_token_ids, expert_ids, num_tokens_post_pad)``, plus
    ``scatter_idx`` (``[numel, 1]``) when ``return_scatter_idx``; all int32 on
    ``topk_ids.device``.
    """
    return _align(
        NEWEST, topk_ids, block_size, num_experts, expert_map,
        pad_sorted_ids, ignore_invalid_experts, return_scatter_idx,
    )


def _build(
    kind: str, contract: Contract, fallback: Optional[Callable[..., Any]]
) -> Callable[..., Any]:
    """A function with exactly ``parameters(contract, kind)`` whose body calls
    ``_align`` / ``_align_out`` (parameters the line lacks get their default),
    or ``fallback`` on devices the plugin cannot serve (module docstring).
    Its source is generated text, shown by tracebacks (``_compile_named``)."""
    params = parameters(contract, kind)
    have = {p.name for p in params}
    signature, forward = [], []
    for p in params:
        if p.keyword_only and "*" not in signature:
            signature.append("*")
        signature.append(p.name if p.default is REQUIRED else f"{p.name}={p.default!r}")
        forward.append(f"{p.name}={p.name}" if p.keyword_only else p.name)
    inner = [p.name if p.name in have else repr(p.default) for p in PARAMETERS[kind]]
    call_impl = f"_impl(_contract, {', '.join(inner)})"
    call_fallback = f"_fallback({', '.join(forward)})"
    lines = [f"def moe_align_block_size({', '.join(signature)}):"]
    if fallback is None:
        lines.append(f"    return {call_impl}")
    else:
        lines += [
            # empty (falsy) until a device is found that the plugin cannot serve
            "    if _elsewhere and _served_elsewhere(topk_ids):",
            f"        return {call_fallback}",
            "    try:",
            f"        return {call_impl}",
            "    except (NotImplementedError, RuntimeError):",
            "        if _runs_here(topk_ids):",
            "            raise",
            f"    return {call_fallback}",
        ]
    namespace: dict[str, Any] = {
        "_elsewhere": devices.ELSEWHERE,
        "_served_elsewhere": devices.served_elsewhere,
        "_runs_here": devices.plugin_runs_on_tensor,
        "_fallback": fallback,
        "_impl": _align if kind == PYTHON else _align_out,
        "_contract": contract,
    }
    what = "moe_align_block_size" if kind == PYTHON else "op-level moe_align_block_size"
    name = f"{what}, {contract.name} contract" + (", with fallback" if fallback else "")
    exec(_compile_named("\n".join(lines) + "\n", name), namespace)  # noqa: S102 - from PARAMETERS only
    fn = namespace["moe_align_block_size"]
    fn.__module__ = __name__
    fn.__doc__ = f"vllm-moe-align-plugin's {what} ({contract.name} contract)."
    return fn


def _compile_named(source: str, name: str) -> Any:
    """``source`` compiled as the pseudo-file ``<vllm_moe_align_plugin
    generated: NAME>``, whose text ``linecache`` holds, so tracebacks and
    ``inspect.getsource`` show the generated function's lines."""
    filename = f"<{__package__} generated: {name}>"
    # mtime None: linecache.checkcache keeps the entry (there is no file to check)
    linecache.cache[filename] = (len(source), None, source.splitlines(keepends=True), filename)
    return compile(source, filename, "exec")


def drop_in_for(
    contract: Contract, fallback: Optional[Callable[..., AlignResult]] = None
) -> Callable[..., AlignResult]:
    """vLLM's Python-level function with exactly the signature of
    ``contract``'s line; ``fallback`` serves devices the plugin cannot."""
    return _build(PYTHON, contract, fallback)


def op_level_for(
    contract: Contract, fallback: Optional[Callable[..., None]] = None
) -> Callable[..., None]:
    """``vllm._custom_ops.moe_align_block_size`` of ``contract``'s line;
    ``fallback`` serves devices the plugin cannot."""
    return _build(OP, contract, fallback)


if library.available():
    _ALIGN = torch.ops.vllm_moe_align.moe_align_block_size.default
    _ALIGN_OUT = torch.ops.vllm_moe_align.moe_align_block_size_out.default
else:

    def _ALIGN(*args: object, **kwargs: object) -> tuple[torch.Tensor, ...]:  # noqa: N802
        library.require()
        raise AssertionError("unreachable")

    _ALIGN_OUT = _ALIGN  # type: ignore[assignment]
