"""The load generator: ``vllm bench serve`` kept alive across loads.

``BenchClient.run`` hands one load (a ``commands.BenchSpec``) to a
``bench_worker`` process and waits for its answer. The worker starts at the
first load, in a process group of its own with the client environment
(``commands.client_env``), and serves every later load of the run; a load
that times out kills its group (the next load starts a fresh worker), and
``close`` ends it. Each load's output goes to its own log file, as with one
``vllm bench serve`` process per load.
"""

from __future__ import annotations

import json
import os
import select
import subprocess
from pathlib import Path
from typing import IO, Optional

from benchmarks.vllm_ab import environment

from .commands import BenchSpec, bench_args, client_env

WORKER = Path(__file__).with_name("bench_worker.py")


class BenchClient:
    """One worker process at a time, started on demand."""

    def __init__(self, python: str, cwd: Path, log_path: Path) -> None:
        self.python, self.cwd, self.log_path = python, cwd, log_path
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.last_error = ""

    def _start(self) -> subprocess.Popen[bytes]:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a") as log:
            proc = subprocess.Popen([self.python, str(WORKER)], env=client_env(dict(os.environ)),
                                    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log,
                                    cwd=str(self.cwd), start_new_session=True)
        environment.track(proc)
        return proc

    def running(self) -> int:
        """Starts the worker unless it runs; its process group (its pid)."""
        if self.proc is None or self.proc.poll() is not None:
            self.proc = self._start()
        return self.proc.pid

    def run(self, spec: BenchSpec, log_path: Path, timeout: float) -> Optional[int]:
        """Runs one load; 0 when it finished, 1 when it failed (``last_error``
        says why, also appended to ``log_path``), None when it timed out."""
        self.running()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        job = {"argv": bench_args(spec), "log": str(log_path)}
        try:
            self.proc.stdin.write((json.dumps(job) + "\n").encode())
            self.proc.stdin.flush()
        except OSError as exc:
            return self._failed(log_path, f"the client process did not take the load: {exc}")
        line = read_line(self.proc.stdout, timeout)
        if line is None:
            self.close()
            self.last_error = f"timed out after {timeout:.0f} s"
            return None
        if not line:
            code = self.proc.wait()
            self.proc = None
            return self._failed(log_path, f"the client process ended (exit status {code}); "
                                f"its log: {self.log_path.name}")
        try:
            answer = json.loads(line)
        except ValueError:
            return self._failed(log_path, f"unreadable answer from the client process: {line[:200]!r}")
        if answer.get("ok"):
            self.last_error = ""
            return 0
        return self._failed(log_path, str(answer.get("error", "failed")))

    def _failed(self, log_path: Path, why: str) -> int:
        self.last_error = why
        with open(log_path, "a") as log:
            log.write(f"\n{why}\n")
        return 1

    def close(self) -> None:
        """Ends the worker's process group, if one runs."""
        if self.proc is not None:
            environment.kill_group(self.proc)
            self.proc = None


def read_line(stream: IO[bytes], timeout: float) -> Optional[str]:
    """One line from ``stream`` within ``timeout`` seconds: the line, ""
    at end of file, None on timeout. The worker writes each answer as one
    line, flushed, so a readable pipe holds a whole line."""
    ready, _, _ = select.select([stream], [], [], timeout)
    if not ready:
        return None
    return stream.readline().decode(errors="replace")
