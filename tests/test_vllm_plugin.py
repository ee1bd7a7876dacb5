"""The plugin inside a real vLLM: each scenario runs in a fresh process, as
vLLM's API server, engine core and workers each are."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from vllm_moe_align_plugin.contract import contract_for_vllm, parse_version
from vllm_moe_align_plugin.vllm.env import running_vllm_version as installed_vllm_version

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(installed_vllm_version() is None, reason="vLLM is not installed"),
]

PROBE = Path(__file__).with_name("vllm_probe.py")
DEFINING = "vllm.model_executor.layers.fused_moe.moe_align_block_size"
FUSED_MOE = "vllm.model_executor.layers.fused_moe.fused_moe"
OPS = "vllm._custom_ops"
PLUGIN_LINE = "vllm-moe-align-plugin"


def probe(scenario: str, **env: str) -> tuple[dict, str]:
    full_env = {k: v for k, v in os.environ.items() if k not in ("VLLM_PLUGINS",
                                                                "VLLM_MOE_ALIGN_DISABLE")}
    full_env.update(env)
    full_env.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU tensors prove the patch
    proc = subprocess.run([sys.executable, str(PROBE), scenario], env=full_env,
                          capture_output=True, text=True, timeout=600)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0, out[-4000:]
    line = next(x for x in proc.stdout.splitlines() if x.startswith("PROBE-JSON "))
    return json.loads(line[len("PROBE-JSON "):]), out


#: vLLM 0.33 added fused_globalize_align_block_size: its bindings the probe checks
HAS_GLOBALIZE = (parse_version(installed_vllm_version() or "0") or (0,)) >= (0, 33, 0)
GLOBALIZE = "vllm.model_executor.layers.fused_moe.fused_globalize_align_block_size"
HUMMING = "vllm.model_executor.layers.fused_moe.experts.fused_humming_moe"


def plugin_lines(output: str) -> list[str]:
    return [x for x in output.splitlines() if PLUGIN_LINE in x]


def assert_patched(report: dict) -> None:
    assert report[DEFINING] == "plugin"
    assert report[FUSED_MOE] == "plugin"
    assert report[OPS] == "plugin"
    for name, result in report.items():
        if name.startswith("vllm.model_executor") and not result.startswith("import failed"):
            assert result == "plugin", (name, result)
    assert_globalize(report["globalize"], "plugin" if HAS_GLOBALIZE else "absent")


def assert_globalize(results: dict, want: str) -> None:
    """Every binding of fused_globalize_align_block_size (the module's, the
    one fused_humming_moe imported, the op-level wrapper) gives ``want``."""
    for name in (GLOBALIZE, HUMMING, OPS):
        if not results[name].startswith("import failed"):
            assert results[name].startswith(want), (name, results[name])


def assert_untouched(report: dict) -> None:
    assert report[DEFINING].startswith("original")
    assert report[FUSED_MOE].startswith("original")
    assert report[OPS].startswith("original")
    assert report["patched"] == [] and report["patched_globalize"] == []
    assert_globalize(report["globalize"], "original" if HAS_GLOBALIZE else "absent")


def test_load_general_plugins_patches_every_binding() -> None:
    report, out = probe("plugins")
    assert_patched(report)
    contract = contract_for_vllm(installed_vllm_version())
    assert report["contract"] == contract.name
    lines = plugin_lines(out)
    assert len(lines) == 1, lines
    # says what it replaces, not only what it replaced so far
    assert f"on for vLLM {installed_vllm_version()}" in lines[0] and contract.name in lines[0]
    assert "vllm._custom_ops.moe_align_block_size" in lines[0], lines[0]


def test_line_is_printed_before_logging_is_configured() -> None:
    """vLLM's main process loads plugins before it sets up logging."""
    report, out = probe("no_logging")
    assert_patched(report)
    lines = plugin_lines(out)
    assert len(lines) == 1 and "on for vLLM" in lines[0], out[-2000:]


def test_device_without_kernels_runs_vllms_function() -> None:
    """Every binding stays the plugin's, but calls on a device the plugin
    cannot serve reach vLLM's own function (whose op has no CPU kernel, so it
    fails here: that failure is the proof), with one warning."""
    report, out = probe("cpu_unsupported")
    assert report[DEFINING].startswith("original")
    assert report[FUSED_MOE].startswith("original")
    assert report[OPS].startswith("original")
    assert DEFINING in report["patched"] and OPS in report["patched"]
    assert_globalize(report["globalize"], "original" if HAS_GLOBALIZE else "absent")
    if HAS_GLOBALIZE:
        assert {GLOBALIZE, OPS} <= set(report["patched_globalize"]), report
    warnings = [x for x in plugin_lines(out) if "runs vLLM's own function" in x]
    assert len(warnings) == 1 and "simulated" in warnings[0], plugin_lines(out)


def test_modules_imported_before_register_are_patched() -> None:
    report, _ = probe("import_first")
    assert_patched(report)
    assert FUSED_MOE in report["patched"]
    if HAS_GLOBALIZE and not report["globalize"][HUMMING].startswith("import failed"):
        assert HUMMING in report["patched_globalize"], report["patched_globalize"]


def test_idempotent() -> None:
    report, out = probe("twice")
    assert_patched(report)
    assert len(report["patched"]) == len(set(report["patched"]))
    assert len(plugin_lines(out)) == 1


def test_unregister_restores_vllm() -> None:
    report, _ = probe("unregister")
    assert_patched(report)
    after = report["after_unregister"]
    assert after[DEFINING].startswith("original")
    assert after[FUSED_MOE].startswith("original")
    assert after[OPS].startswith("original")
    assert_globalize(after["globalize"], "original" if HAS_GLOBALIZE else "absent")


@pytest.mark.parametrize("allow,patched", [("moe_align", True), ("other_plugin", False), ("", False)])
def test_vllm_plugins_allow_list(allow: str, patched: bool) -> None:
    report, _ = probe("plugins", VLLM_PLUGINS=allow)
    (assert_patched if patched else assert_untouched)(report)


def test_off_switch() -> None:
    report, _ = probe("plugins", VLLM_MOE_ALIGN_DISABLE="1")
    assert_untouched(report)


def test_broken_op_leaves_vllm_alone() -> None:
    report, out = probe("broken_op")
    assert_untouched(report)
    warnings = plugin_lines(out)
    assert len(warnings) == 1 and "not enabled" in warnings[0], warnings


def test_unknown_vllm_version_leaves_vllm_alone() -> None:
    report, out = probe("unknown_version")
    assert_untouched(report)
    warnings = plugin_lines(out)
    assert len(warnings) == 1 and "does not know vLLM 0.99.0" in warnings[0], warnings
