"""Several processes loading vLLM's general plugins at the same moment, as
vLLM's API server, engine core and workers do: each process is patched (or,
switched off, left alone) on its own, whatever the others do.

Environment: ``VLLM_MOE_ALIGN_MULTIPROC`` (default 4): processes started at
once; the last one has the plugin's off switch set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from test_vllm_plugin import PROBE, assert_patched, assert_untouched, plugin_lines

from vllm_moe_align_plugin.contract import contract_for_vllm
from vllm_moe_align_plugin.vllm.env import running_vllm_version as installed_vllm_version

pytestmark = [
    pytest.mark.vllm,
    pytest.mark.skipif(installed_vllm_version() is None, reason="vLLM is not installed"),
]

PROCESSES = int(os.environ.get("VLLM_MOE_ALIGN_MULTIPROC", "").strip() or 4)


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("VLLM_PLUGINS", "VLLM_MOE_ALIGN_DISABLE")}
    env.setdefault("CUDA_VISIBLE_DEVICES", "")  # CPU tensors prove the patch (see vllm_probe.py)
    env.update(extra)
    return env


def test_processes_loading_plugins_at_once_are_each_patched() -> None:
    """PROCESSES probes run vLLM's load_general_plugins concurrently: every
    probe without the off switch has all of vLLM's bindings patched (checked
    by calling them) with the installed vLLM's contract and logs one line;
    the probe with the off switch, started among them, stays untouched."""
    assert PROCESSES >= 2
    envs = [_env() for _ in range(PROCESSES - 1)] + [_env(VLLM_MOE_ALIGN_DISABLE="1")]
    procs = [subprocess.Popen([sys.executable, str(PROBE), "plugins"], env=env, text=True,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for env in envs]
    outputs = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=900)
        finally:
            proc.kill()
        outputs.append((proc.returncode, out, err))
    contract = contract_for_vllm(installed_vllm_version()).name
    for k, (code, out, err) in enumerate(outputs):
        text = out + err
        assert code == 0, f"process {k}: exit {code}\n{text[-4000:]}"
        line = next(x for x in out.splitlines() if x.startswith("PROBE-JSON "))
        report = json.loads(line[len("PROBE-JSON "):])
        if k < PROCESSES - 1:
            assert_patched(report)
            assert report["contract"] == contract, (k, report["contract"])
            assert len(plugin_lines(text)) == 1, (k, plugin_lines(text))
        else:
            assert_untouched(report)
