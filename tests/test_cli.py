"""``vllm-moe-align``: what a user reads from info, verify, bench and --help."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.parametrize("cases", ["0", "-5", "abc", "2.5", ""])
def test_verify_needs_at_least_one_case(capsys: pytest.CaptureFixture[str], cases: str) -> None:
    rc, out = run(capsys, "verify", "--cases", cases)
    assert rc == 2 and "argument --cases: needs an integer >= 1, got" in out, out
    assert "_at_least_one" not in out and "invalid" not in out


@pytest.mark.parametrize("command", ["info", "verify", "bench", "patch"])
def test_every_command_has_a_description(capsys: pytest.CaptureFixture[str], command: str) -> None:
    rc, out = run(capsys, command, "--help")
    assert rc == 0
    usage, _, rest = out.partition("\n\n")
    description = rest.split("\n\n")[0]
    assert usage.startswith("usage:") and not description.startswith(("options:", "positional"))
    assert len(description.split()) >= 10, out


def test_python_dash_m_runs_the_cli(tmp_path: Path) -> None:
    """From any directory, as an installed package: the same main as the script."""
    from vllm_moe_align_plugin import __main__

    assert __main__.main is cli.main
    for argv, words in ((["--version"], __version__), (["verify", "--cases", "2"], "2/2 random")):
        done = subprocess.run([sys.executable, "-m", "vllm_moe_align_plugin", *argv], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0 and words in done.stdout, done.stdout + done.stderr


def test_patch_names_no_file_missing_from_a_wheel(capsys: pytest.CaptureFixture[str]) -> None:
    """patches/ is not in the wheel: the CLI must not send users there."""
    for argv in (["--help"], ["patch", "--help"]):
        rc, out = run(capsys, *argv)
        assert rc == 0 and "patches/" not in out and ".patch" not in out, out
    if running_vllm_version() is not None:
        rc, out = run(capsys, "patch", "check")
        assert "patches/" not in out and ".patch " not in out and "patch diff" in out, out


@pytest.mark.vllm
@pytest.mark.skipif(running_vllm_version() is None, reason="vLLM is not installed")
@pytest.mark.skipif(shutil.which("patch") is None, reason="needs the patch program")
def test_patch_diff_prints_a_patch_that_applies(tmp_path: Path) -> None:
    """`patch diff` on a copy of the installed vLLM's patched files, run from an
    empty directory (no repository files): stdout is a diff that `patch -p1`
    applies, giving exactly what `patch apply` writes."""
    from vllm_moe_align_plugin.vllm import source_patch

    vllm_dir = Path(str(importlib.util.find_spec("vllm").submodule_search_locations[0]))  # type: ignore[union-attr]
    rels = [rel for rel in (source_patch.OPS_FILE, source_patch.PY_FILE, source_patch.GLOBALIZE_FILE)
            if (vllm_dir / rel[len("vllm/"):]).is_file()]
    trees = []
    for name in ("by_diff", "by_apply"):
        for rel in (*rels, "vllm/_version.py"):
            out = tmp_path / name / rel
            out.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(vllm_dir / rel[len("vllm/"):], out)
        trees.append(tmp_path / name)
    work = tmp_path / "elsewhere"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "vllm_moe_align_plugin", "patch", "diff",
                           str(trees[0])], cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("diff --git a/vllm/") and "vLLM " in done.stderr
    subprocess.run(["patch", "-p1", "-F0", "--quiet"], input=done.stdout, text=True,
                   cwd=trees[0], check=True)
    source_patch.apply(source_patch.load_target(str(trees[1])))
    for rel in rels:
        assert (trees[0] / rel).read_bytes() == (trees[1] / rel).read_bytes(), rel
    patched = subprocess.run([sys.executable, "-m", "vllm_moe_align_plugin", "patch", "diff",
                              str(trees[1])], cwd=work, capture_output=True, text=True, timeout=300)
    assert patched.returncode == 0 and patched.stdout == done.stdout


def test_bench_warms_up_before_timing() -> None:
    """A call whose first ten runs are slow (one-time costs) is timed at its
    steady speed."""
    from vllm_moe_align_plugin import bench

    runs = []

    def call() -> None:
        runs.append(1)
        if len(runs) <= 10:
            time.sleep(0.02)

    us = bench.time_eager_us([call], n=20, device="cpu")
    assert us < 5000, us
    assert len(runs) >= 20 + bench.WARMUP_CALLS


def test_bench_says_how_many_calls_each_cell_times(capsys: pytest.CaptureFixture[str]) -> None:
    rc, out = run(capsys, "bench", "--device", "cpu", "--quick")
    assert rc == 0
    note = next(line for line in out.splitlines() if line.startswith("each cell:"))
    assert "plugin 20" in note and "torch reference 20 calls" in note, note
    assert f"at least {bench_warmup()} untimed warm-up calls" in note, note


def bench_warmup() -> int:
    from vllm_moe_align_plugin import bench

    return bench.WARMUP_CALLS


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
    # every tensor op with the backends it has kernels for (every one has a CPU kernel)
    ops = next(line for line in out.splitlines() if line.startswith("ops "))
    assert "fused_globalize_align_block_size_out (cpu" in ops and "moe_align_block_size_out (cpu" in ops, ops


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
