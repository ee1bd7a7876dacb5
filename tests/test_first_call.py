"""benchmarks/first_call.py: the empty kernel of the ``module-floor`` order
built by nvcc (where it runs: a wheel's test run hides every compiler) and the
summary table with every order; on a GPU, one fresh process of the floor
order (a driver load and two launches of that kernel)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import HAS_CUDA

from benchmarks import first_call

ROOT = Path(__file__).resolve().parents[1]


def _nvcc_works() -> bool:
    """nvcc on PATH and answering (a wheel's test run puts a failing one there)."""
    if shutil.which("nvcc") is None:
        return False
    try:
        return subprocess.run(["nvcc", "--version"], capture_output=True, timeout=60).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


NVCC = _nvcc_works()


@pytest.mark.skipif(not NVCC, reason="needs nvcc")
def test_empty_kernel_cubin(tmp_path: Path) -> None:
    image = first_call.empty_cubin("90", tmp_path)
    assert image[:4] == b"\x7fELF" and b"empty_kernel" in image


def test_summary_has_a_row_per_order_measured() -> None:
    results = [{"order": "seed", "first_call_us": 600.0, "second_call_us": 20.0},
               {"order": "seed", "first_call_us": 700.0, "second_call_us": 22.0},
               {"order": "module-floor", "first_call_us": 300.0, "load_us": 40.0, "second_call_us": 9.0}]
    table = first_call.summary(results)
    rows = [line for line in table.splitlines() if line.startswith("| ") and "order" not in line]
    assert rows == ["| seed | 650 (600-700) | - | 21 (20-22) |",
                    "| module-floor | 300 (300-300) | 40 (40-40) | 9 (9-9) |"], table


@pytest.mark.skipif(not HAS_CUDA or not NVCC, reason="needs a GPU and nvcc")
def test_module_floor_in_a_fresh_process() -> None:
    proc = subprocess.run([sys.executable, "-m", "benchmarks.first_call", "--child", "module-floor"],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout.strip().splitlines()[-1])
    assert got["order"] == "module-floor"
    assert 0 < got["load_us"] <= got["first_call_us"] and got["second_call_us"] > 0, got
