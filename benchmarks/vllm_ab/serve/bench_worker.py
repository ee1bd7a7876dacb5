"""One long-lived ``vllm bench serve`` process: many loads, one import of vLLM.

Started by ``client.BenchClient`` as ``python bench_worker.py`` under the
Python that serves vLLM. Importing vLLM costs a client process 10-20 s of
CPU, while a decode load at low concurrency lasts only a few seconds; paying
it once per run instead of once per load shortens a round several times over.
The loads themselves run through vLLM's own code, the same parser and
``main`` as ``vllm bench serve``.

Protocol, one JSON object per line:
- in (stdin): ``{"argv": [...], "log": "path"}``, ``argv`` being the options
  after ``vllm bench serve``;
- out (stdout): ``{"ok": true}`` when the load finished, else
  ``{"ok": false, "error": "..."}``.
While a load runs, file descriptors 1 and 2 point at its ``log`` file (vLLM's
prints and log lines); between loads at this process's stderr. Standard
library only besides vLLM.
"""

from __future__ import annotations

import json
import os
import sys
import traceback
from typing import Any


def run_one(job: dict[str, Any], rest_fd: int) -> dict[str, Any]:
    """Runs one load with fds 1 and 2 on its log; back to ``rest_fd`` after."""
    log_fd = os.open(job["log"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    sys.stdout.flush()
    sys.stderr.flush()
    os.dup2(log_fd, 1)
    os.dup2(log_fd, 2)
    os.close(log_fd)
    try:
        from vllm.benchmarks.serve import add_cli_args, main
        from vllm.utils.argparse_utils import FlexibleArgumentParser

        parser = FlexibleArgumentParser(prog="vllm bench serve")
        add_cli_args(parser)
        main(parser.parse_args(job["argv"]))
        return {"ok": True}
    except SystemExit as exc:  # argparse
        return {"ok": False, "error": f"exited with status {exc.code}"}
    except Exception as exc:  # reported to the harness, which records the load as failed
        traceback.print_exc()
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(rest_fd, 1)
        os.dup2(rest_fd, 2)


def serve_jobs() -> None:
    """Answers jobs from stdin until it closes."""
    reply = os.fdopen(os.dup(1), "w")
    rest_fd = os.dup(2)
    os.dup2(rest_fd, 1)  # stray output between loads goes to stderr, never into the replies
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            job = json.loads(line)
            answer = run_one(job, rest_fd)
        except (ValueError, KeyError, TypeError, OSError) as exc:
            answer = {"ok": False, "error": f"bad job: {exc}"}
        reply.write(json.dumps(answer) + "\n")
        reply.flush()


if __name__ == "__main__":
    serve_jobs()
