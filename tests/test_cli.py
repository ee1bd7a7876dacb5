"""``vllm-moe-align``: what a user reads from info, verify, bench and --help."""

from __future__ import annotations

import pytest
import torch

from vllm_moe_align_plugin import __version__, cli
from vllm_moe_align_plugin.vllm.env import running_vllm_version


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str]:
    try:
        rc = cli.main(list(argv))
    except SystemExit as exc:  # argparse: --help, --version, usage errors
        rc = int(exc.code or 0)
    captured = capsys.readouterr()
    return rc, captured.out + captured.err


def test_help_is_plain_text_and_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "--help")
    assert rc == 0
    assert "``" not in out
    for command in ("info", "verify", "bench", "patch"):
        assert command in out


@pytest.mark.parametrize("command,options", [
    ("verify", ("--cases", "--seed")), ("bench", ("--device", "--quick")),
    ("patch", ("check", "apply", "revert")),
])
def test_every_option_has_help(capsys: pytest.CaptureFixture[str], command: str,
                               options: tuple[str, ...]) -> None:
    rc, out = run(capsys, command, "--help")
    assert rc == 0
    for option in options:
        line = next(x for x in out.splitlines() if x.strip().startswith(option)
                    or f" {option}:" in x)
        assert len(line.split()) > 1 or option in ("check", "apply", "revert"), line


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "--version")
    assert rc == 0 and __version__ in out


@pytest.mark.parametrize("cases", ["0", "-5"])
def test_verify_needs_at_least_one_case(capsys: pytest.CaptureFixture[str], cases: str) -> None:
    rc, out = run(capsys, "verify", "--cases", cases)
    assert rc == 2 and "at least 1" in out


def test_verify_counts_what_it_ran(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "verify", "--cases", "3")
    assert rc == 0 and "3/3 random cases equal the reference" in out


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_bench_on_cuda_without_a_gpu_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "bench", "--device", "cuda", "--quick")
    assert rc == 2
    assert out.strip().count("\n") == 0 and "no CUDA device" in out and "Traceback" not in out


def test_info_lists_each_device(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "info")
    assert rc == 0
    assert any(line.strip().startswith("cpu (host)") and line.rstrip().endswith("plugin")
               for line in out.splitlines()), out


@pytest.mark.vllm
@pytest.mark.skipif(running_vllm_version() is None, reason="vLLM is not installed")
@pytest.mark.parametrize("env,enabled,why", [
    ({}, True, ""),
    ({"VLLM_MOE_ALIGN_DISABLE": "1"}, False, "VLLM_MOE_ALIGN_DISABLE is set"),
    ({"VLLM_PLUGINS": ""}, False, "does not list 'moe_align'"),
    ({"VLLM_PLUGINS": "other,moe_align"}, True, ""),
])
def test_info_honours_the_off_switches(capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch,
                                       env: dict, enabled: bool, why: str) -> None:
    for name in ("VLLM_MOE_ALIGN_DISABLE", "VLLM_PLUGINS"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    rc, out = run(capsys, "info")
    line = next(x for x in out.splitlines() if x.startswith("enabled"))
    assert rc == 0
    if enabled:
        assert "yes" in line and "vllm._custom_ops.moe_align_block_size" in line, line
    else:
        assert "no (" in line and why in line, line


def test_bench_table_has_units_and_explains_a_dash() -> None:
    from vllm_moe_align_plugin import bench

    small, large = bench.Case(1, 8, 256, 16), bench.Case(1 << 17, 8, 256, 128)
    rows = [bench.Row(small, "plugin", 1.9, 13.0), bench.Row(small, "torch reference", None, 150.0),
            bench.Row(large, "plugin", 19.5, 22.0)]
    table = bench.format_table(rows, "cuda")
    header = table.splitlines()[0]
    assert "plugin, graph / eager us" in header and "torch reference, eager us per call" in header
    assert "| - |" in table and "-: not timed; the torch reference runs only up to" in table
    assert "-: not timed" not in bench.format_table(rows[:2], "cuda")
