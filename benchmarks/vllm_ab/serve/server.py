"""A ``vllm serve`` process tree: start, wait until it serves, talk HTTP, stop.

The server runs in a process group of its own (``environment.start_in_group``:
API server, engine core and workers together), its output to one log file.
``stop`` sends SIGTERM to the group (vLLM shuts its engine down), waits until
every process of the group is gone, SIGKILLs what is left after a grace
period and waits again, so the GPU memory is free before the next server
starts. HTTP goes through ``urllib`` (no client library needed).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Callable, Optional

from benchmarks.vllm_ab import environment

from . import host_load
from .commands import ServerSpec, serve_command


def http_json(url: str, payload: Optional[dict[str, Any]] = None, timeout: float = 600.0) -> Any:
    """GET (no payload) or POST JSON to ``url``; the decoded JSON answer
    (None for an empty body). HTTP errors raise ``urllib.error.HTTPError``."""
    data = None if payload is None else json.dumps(payload).encode()
    req = urllib.request.Request(url, data=data, method="GET" if payload is None else "POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        body = resp.read()
    return json.loads(body) if body.strip() else None


def port_free(host: str, port: int) -> bool:
    """Whether nothing listens on ``host:port``."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(1.0)
        return s.connect_ex((host, port)) != 0


def group_alive(pgid: int) -> bool:
    """Whether any process of group ``pgid`` still exists (zombies
    awaiting their reaper excluded where /proc says so)."""
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    if not host_load.PROC.is_dir():
        return True
    return any(fields[0] not in ("Z", "X") for fields in host_load.group_stats(pgid).values())


class ServerError(RuntimeError):
    """A server that exited or did not become ready; the message holds its log's tail."""


class Server:
    """One running ``vllm serve`` (see the module docstring)."""

    def __init__(self, spec: ServerSpec, tag: str, log_path: Path, env: dict[str, str],
                 python: str, cwd: Path) -> None:
        self.spec, self.tag, self.log_path = spec, tag, log_path
        self.env, self.python, self.cwd = env, python, cwd
        self.proc: Optional[subprocess.Popen[bytes]] = None
        self.t0 = 0.0  # time.monotonic() at start
        self.ready_s: Optional[float] = None  # seconds from start to ready

    @property
    def command(self) -> list[str]:
        return serve_command(self.spec, self.python)

    def start(self) -> None:
        """Starts the server (refuses a port that is in use)."""
        if not port_free(self.spec.host, self.spec.port):
            raise ServerError(f"port {self.spec.port} is in use; pick another with --port")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.t0 = time.monotonic()
        self.proc = environment.start_in_group(self.command, self.env, self.log_path, self.cwd)

    def log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def wait_ready(self, timeout: float, poll: float = 2.0,
                   progress: Optional[Callable[[float], None]] = None) -> float:
        """Waits until ``GET /health`` answers 200 and ``/v1/models`` lists
        the model; returns the seconds since ``start``. Raises
        ``ServerError`` when the server exits or ``timeout`` passes.
        ``progress(elapsed)`` is called about once a minute."""
        assert self.proc is not None, "start() first"
        next_note = 60.0
        while True:
            elapsed = time.monotonic() - self.t0
            code = self.proc.poll()
            if code is not None:
                raise ServerError(f"server {self.tag} exited with status {code} after {elapsed:.0f} s; "
                                  f"log tail:\n{self.log_tail()}")
            if elapsed > timeout:
                raise ServerError(f"server {self.tag} not ready after {timeout:.0f} s; log tail:\n"
                                  + self.log_tail())
            try:
                http_json(self.spec.url + "/health", timeout=10.0)
                models = http_json(self.spec.url + "/v1/models", timeout=10.0)
                ids = [m.get("id") for m in (models or {}).get("data", [])]
                if self.spec.model in ids:
                    self.ready_s = elapsed
                    return elapsed
            except (urllib.error.URLError, OSError, ValueError):
                pass
            if progress is not None and elapsed >= next_note:
                progress(elapsed)
                next_note += 60.0
            time.sleep(poll)

    def post(self, path: str, payload: dict[str, Any], timeout: float = 600.0) -> Any:
        return http_json(self.spec.url + path, payload, timeout)

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def stop(self, grace: float = 60.0) -> None:
        """SIGTERM to the group, wait ``grace`` seconds for every process to
        end, then SIGKILL and wait again (at most another ``grace``)."""
        if self.proc is None:
            return
        pgid = self.proc.pid
        for sig in (signal.SIGTERM, signal.SIGKILL):
            try:
                os.killpg(pgid, sig)
            except (ProcessLookupError, PermissionError):
                pass
            if self._wait_gone(pgid, grace):
                break
        environment.kill_group(self.proc)  # reaps the leader, forgets the group
        self.proc = None

    def _wait_gone(self, pgid: int, timeout: float) -> bool:
        """Waits until no process of group ``pgid`` is left; False on timeout."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc is not None:
                self.proc.poll()  # reap the leader
            if not group_alive(pgid):
                return True
            time.sleep(0.5)
        return False
