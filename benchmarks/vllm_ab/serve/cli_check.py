"""Checks the harness's command lines with the installed vLLM's own parsers.

Before any server starts (minutes of GPU time each), the ``vllm serve`` and
``vllm bench serve`` argument lists go through the parsers vLLM's CLI builds
(``vllm.entrypoints.cli.serve`` and ``vllm.entrypoints.cli.benchmark.main``,
``cmd_init`` / ``subparser_init``, as ``vllm.entrypoints.cli.main`` does; the
serve arguments also through the subcommand's ``validate``) in a separate
interpreter, so an option the installed vLLM does not know fails here, in
seconds. A machine without GPU gets vLLM's CPU platform for the parse (the
parsers need some platform to fill their defaults).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Sequence
from typing import Any

SCRIPT = r'''
import json, sys
import vllm.platforms as platforms
if platforms.current_platform.is_unspecified():  # no GPU here: the parsers only need a platform
    from vllm.platforms.cpu import CpuPlatform
    platforms._current_platform = CpuPlatform()
import vllm.entrypoints.cli.benchmark.main as bench_cli
import vllm.entrypoints.cli.serve as serve_cli
from vllm.utils.argparse_utils import FlexibleArgumentParser
argv, sys.argv = sys.argv, ["vllm", "bench"]  # vLLM adds `bench serve` only when invoked as `vllm bench`
parser = FlexibleArgumentParser(prog="vllm")
sub = parser.add_subparsers(dest="subparser")
cmds = {}
for mod in (serve_cli, bench_cli):
    for cmd in mod.cmd_init():
        cmd.subparser_init(sub)
        cmds[cmd.name] = cmd
out = []
for line in json.loads(argv[1]):
    try:
        args = parser.parse_args(line)
        if line[0] == "serve":
            cmds["serve"].validate(args)
    except (SystemExit, Exception) as exc:  # argparse exits on a bad option
        out.append({"error": f"{type(exc).__name__}: {exc}"})
        continue
    values = vars(args)
    out.append({"values": {k: values.get(k) for k in json.loads(argv[2])}})
print("PARSED " + json.dumps(out, default=str))
'''


class CommandError(RuntimeError):
    """vLLM's parsers rejected an argument list (the message holds their output)."""


def parse_all(python: str, argvs: Sequence[Sequence[str]], keys: Sequence[str],
              env: dict[str, str], timeout: float = 600.0) -> list[dict[str, Any]]:
    """Each argument list (``["serve", ...]`` or ``["bench", "serve", ...]``)
    through ``python``'s vLLM parsers: per list ``{"values": {key: value}}``
    for the ``keys``, or ``{"error": ...}`` when the list was rejected (the
    parser's message is in the child's stderr). Raises ``CommandError`` when
    the parsers could not be built at all."""
    try:
        out = subprocess.run([python, "-c", SCRIPT, json.dumps([list(a) for a in argvs]),
                              json.dumps(list(keys))],
                             capture_output=True, text=True, env=env, timeout=timeout)
    except (OSError, subprocess.SubprocessError) as exc:
        raise CommandError(f"could not run {python}: {exc}") from exc
    line = next((x for x in out.stdout.splitlines() if x.startswith("PARSED ")), None)
    if out.returncode != 0 or line is None:
        tail = "\n".join((out.stdout + out.stderr).splitlines()[-15:])
        raise CommandError(f"vLLM's CLI parsers did not run (exit {out.returncode}):\n{tail}")
    results = list(json.loads(line[len("PARSED "):]))
    errors = [x for x in out.stderr.splitlines() if "error:" in x]
    for r in results:  # argparse printed its reason to stderr, in order
        if "error" in r and errors:
            r["error"] += f" ({errors.pop(0).strip()})"
    return results


def check(argvs: Sequence[Sequence[str]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The values of ``parse_all``'s results; ``CommandError`` naming every
    rejected command line."""
    bad = [f"{' '.join(a[:2])}: {r['error']}" for a, r in zip(argvs, results) if "error" in r]
    if bad:
        raise CommandError("vLLM's CLI parsers rejected the commands:\n" + "\n".join(bad))
    return [r["values"] for r in results]


def parse_with_vllm(python: str, argvs: Sequence[Sequence[str]], keys: Sequence[str],
                    env: dict[str, str], timeout: float = 600.0) -> list[dict[str, Any]]:
    """``check(argvs, parse_all(...))``: the values, or ``CommandError``."""
    return check(argvs, parse_all(python, argvs, keys, env, timeout))
