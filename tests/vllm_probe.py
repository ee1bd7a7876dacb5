"""Run in a fresh subprocess by test_vllm_plugin.py: sets vLLM up the way a
scenario says, then reports as JSON which implementation each of vLLM's
bindings of moe_align_block_size (and, from vLLM 0.33, of
fused_globalize_align_block_size) runs, by calling it on CPU tensors (vLLM's
own ops have no CPU kernel, so a correct CPU result proves the patch).

argv[1]: scenario (plugins | import_first | twice | unregister | direct_register
         | broken_op | unknown_version | no_logging | cpu_unsupported)
"""

from __future__ import annotations

import importlib
import importlib.metadata
import json
import logging
import sys

import torch

DEFINING = "vllm.model_executor.layers.fused_moe.moe_align_block_size"
BINDERS = [
    "vllm.model_executor.layers.fused_moe.fused_moe",
    "vllm.model_executor.layers.fused_moe.experts.triton_moe",
    "vllm.model_executor.layers.fused_moe.experts.marlin_moe",
    "vllm.model_executor.layers.fused_moe.experts.fused_humming_moe",
    "vllm.model_executor.layers.fused_moe.experts.mxfp8_native_moe",
    "vllm.model_executor.layers.fused_moe.experts.nvfp4_emulation_moe",
    "vllm.model_executor.layers.fused_moe.experts.rdna3_moe",
    "vllm.model_executor.layers.fused_moe.experts.lut_b_moe",  # vLLM >= 0.34
]
GLOBALIZE_DEFINING = "vllm.model_executor.layers.fused_moe.fused_globalize_align_block_size"
GLOBALIZE_BINDERS = ["vllm.model_executor.layers.fused_moe.experts.fused_humming_moe"]
GLOBALIZE_NAME = "fused_globalize_align_block_size"


def installed_contract():
    """The contract of the installed vLLM (the one register() picks), which the
    plugin's results must match; the newest one if the plugin does not know it."""
    from vllm_moe_align_plugin.contract import NEWEST, contract_for_vllm

    return contract_for_vllm(importlib.metadata.version("vllm")) or NEWEST


def check_python_level(module_name: str) -> str:
    """'plugin' when the module's moe_align_block_size returns the plugin's
    results; 'original: <error>' otherwise; 'import failed: ...'."""
    from vllm_moe_align_plugin.reference import moe_align_block_size_reference as ref

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:  # modules needing hardware-specific packages
        return f"import failed: {type(exc).__name__}: {exc}"[:200]
    fn = module.moe_align_block_size
    ids = torch.randint(0, 64, (37, 8), generator=torch.Generator().manual_seed(1))
    try:
        got = fn(ids, 16, 64)
    except Exception as exc:
        return f"original: {type(exc).__name__}"
    want = ref(ids, 16, 64, contract=installed_contract())
    ok = all(torch.equal(g, w) for g, w in zip(got, want))
    return "plugin" if ok else "wrong results"


def check_op_level() -> str:
    import vllm._custom_ops as ops

    from vllm_moe_align_plugin.reference import moe_align_block_size_reference as ref

    ids = torch.randint(0, 64, (37, 8), generator=torch.Generator().manual_seed(2))
    size = ids.numel() + 64 * 15
    sorted_ids = torch.empty(size, dtype=torch.int32)
    expert_ids = torch.empty((size + 15) // 16, dtype=torch.int32)
    post_pad = torch.empty(1, dtype=torch.int32)
    try:
        ops.moe_align_block_size(ids, 64, 16, sorted_ids, expert_ids, post_pad)
    except Exception as exc:
        return f"original: {type(exc).__name__}"
    want = ref(ids, 16, 64, contract=installed_contract())
    ok = torch.equal(sorted_ids, want[0]) and torch.equal(expert_ids, want[1])
    return "plugin" if ok and torch.equal(post_pad, want[2]) else "wrong results"


def _globalize_inputs() -> tuple[torch.Tensor, torch.Tensor, tuple[int, int, int, int]]:
    ids = torch.randint(-1, 34, (37, 8), generator=torch.Generator().manual_seed(3))
    return ids, torch.tensor([100, 30], dtype=torch.int32), (64, 256, 32, 16)


def check_globalize(module_name: str) -> str:
    """As check_python_level, for fused_globalize_align_block_size ('absent'
    in a vLLM without it); the op-level wrapper for vllm._custom_ops."""
    from vllm_moe_align_plugin.globalize_reference import (
        fused_globalize_align_block_size_reference as ref,
    )

    try:
        module = importlib.import_module(module_name)
    except Exception as exc:
        return f"import failed: {type(exc).__name__}: {exc}"[:200]
    fn = getattr(module, GLOBALIZE_NAME, None)
    if fn is None:
        return "absent"
    ids, psum, ints = _globalize_inputs()
    want = ref(ids.clone(), psum, *ints, return_scatter_idx=True)
    got_ids = ids.clone()
    try:
        if module_name == "vllm._custom_ops":
            bufs = [torch.empty_like(t) for t in want[1:]]
            fn(got_ids, psum, *ints, *bufs)
            got = (got_ids, *bufs)
        else:
            got = fn(got_ids, psum, *ints, return_scatter_idx=True)
    except Exception as exc:
        return f"original: {type(exc).__name__}"
    ok = all(torch.equal(g, w) for g, w in zip(got, want))
    return "plugin" if ok else "wrong results"


def globalize_report() -> dict[str, str]:
    return {name: check_globalize(name)
            for name in [GLOBALIZE_DEFINING, *GLOBALIZE_BINDERS, "vllm._custom_ops"]}


def main() -> None:
    scenario = sys.argv[1]
    if scenario == "broken_op":
        sys.modules["vllm_moe_align_plugin._C"] = None  # type: ignore[assignment]
    if scenario == "unknown_version":
        import vllm_moe_align_plugin.vllm.runtime as vp

        vp.running_vllm_version = lambda: "0.99.0"
    if scenario == "cpu_unsupported":  # as a device the build has no kernels for
        from vllm_moe_align_plugin import api, devices, globalize

        def no_kernel(*args: object) -> None:
            raise NotImplementedError("no kernel for this backend (simulated)")

        devices.unsupported_reason = lambda device: "simulated: no kernels for this device"
        api._ALIGN = api._ALIGN_OUT = globalize._GLOBALIZE_OUT = no_kernel
    if scenario == "import_first":
        importlib.import_module(BINDERS[0])
        try:  # binds fused_globalize_align_block_size (vLLM >= 0.33)
            importlib.import_module(GLOBALIZE_BINDERS[0])
        except Exception:  # noqa: S110 - the report says whether it imports
            pass
    if scenario != "no_logging":  # vLLM's entry points configure logging too
        logging.basicConfig(level=logging.INFO)
    import vllm.plugins

    if scenario == "direct_register":
        import vllm_moe_align_plugin

        vllm_moe_align_plugin.register()
    else:
        vllm.plugins.load_general_plugins()
    if scenario == "twice":
        import vllm_moe_align_plugin

        vllm_moe_align_plugin.register()
        vllm_moe_align_plugin.register()
    report: dict[str, object] = {}
    report[DEFINING] = check_python_level(DEFINING)
    for name in BINDERS:
        report[name] = check_python_level(name)
    report["vllm._custom_ops"] = check_op_level()
    import vllm_moe_align_plugin.vllm.runtime as vp

    report["globalize"] = globalize_report()
    report["patched"] = vp.patched_modules()
    report["patched_globalize"] = vp.patched_modules(GLOBALIZE_NAME)
    report["contract"] = vp.active_contract().name if vp.active_contract() else None
    if scenario == "unregister":
        vp.unregister()
        report["after_unregister"] = {
            DEFINING: check_python_level(DEFINING),
            BINDERS[0]: check_python_level(BINDERS[0]),
            "vllm._custom_ops": check_op_level(),
            "globalize": globalize_report(),
        }
    print("PROBE-JSON " + json.dumps(report))


if __name__ == "__main__":
    main()
