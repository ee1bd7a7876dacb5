"""Synthetic torch-profiler (kineto) traces, for the tests of the trace
parsers and for the stand-in vLLMs of the harness tests: ``TraceBuilder``
writes any pattern of steps, CPU operators, launches and kernels;
``step_trace`` is the small fixed pattern the stand-ins write (steps of an
align kernel and a GEMM each)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any, Optional


class TraceBuilder:
    """A kineto-style chrome trace: CPU step annotations, launches, kernels."""

    def __init__(self, pid: int = 4242, device: int = 0) -> None:
        self.pid, self.device, self.events, self.corr = pid, device, [], 1000

    def step(self, name: str, ts: float, dur: float, gpu_shift: float = 3.0) -> None:
        self.events.append({"ph": "X", "cat": "user_annotation", "name": name, "pid": self.pid,
                            "tid": self.pid, "ts": ts, "dur": dur})
        self.events.append({"ph": "X", "cat": "gpu_user_annotation", "name": name,
                            "pid": self.device, "tid": 7, "ts": ts + gpu_shift, "dur": dur})

    def cpu_op(self, name: str, ts: float, dur: float) -> None:
        """A CPU operator of the worker's main thread (kineto ``cpu_op``)."""
        self.events.append({"ph": "X", "cat": "cpu_op", "name": name, "pid": self.pid,
                            "tid": self.pid, "ts": ts, "dur": dur})

    def kernel(self, name: str, launch_ts: float, dur: float, *, graph_corr: Optional[int] = None,
               cat: str = "cuda_runtime", gpu_delay: float = 3.0, tid: Optional[int] = None,
               stream: int = 7, gpu_cat: str = "kernel") -> None:
        """A launch at launch_ts and its kernel on ``stream``; graph_corr: reuse
        a graph launch's correlation id (kernels replayed from a CUDA graph)."""
        if graph_corr is None:
            self.corr += 1
            corr = self.corr
            self.events.append({"ph": "X", "cat": cat, "name": "cudaLaunchKernel", "pid": self.pid,
                                "tid": tid or self.pid, "ts": launch_ts, "dur": 2.0,
                                "args": {"correlation": corr, "External id": corr}})
        else:
            corr = graph_corr
        self.events.append({"ph": "X", "cat": gpu_cat, "name": name, "pid": self.device,
                            "tid": stream, "ts": launch_ts + gpu_delay, "dur": dur,
                            "args": {"correlation": corr, "device": self.device, "stream": stream}})

    def graph_launch(self, ts: float) -> int:
        self.corr += 1
        self.events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch",
                            "pid": self.pid, "tid": self.pid, "ts": ts, "dur": 5.0,
                            "args": {"correlation": self.corr}})
        return self.corr

    def write(self, path: Path, *, drop: tuple[str, ...] = ()) -> Path:
        events = [e for e in self.events if e["cat"] not in drop]
        data = json.dumps({"schemaVersion": 1, "traceEvents": events})
        if path.name.endswith(".gz"):
            with gzip.open(path, "wt") as f:
                f.write(data)
        else:
            path.write_text(data)
        return path


def step_trace(align: str, steps: list[str], align_us: float, prefill_align_us: float,
               gemm_us: float) -> list[dict[str, Any]]:
    """One trace step per entry of ``steps`` (the first a prefill), each with
    one ``align`` kernel (``prefill_align_us`` in the first step, ``align_us``
    after it) and one ``fused_moe_kernel`` of ``gemm_us``, launched from
    process 9 onto stream 7 of device 0, steps 1000 us apart, 900 us long."""
    t = TraceBuilder(pid=9, device=0)
    t.corr = 0
    for s, name in enumerate(steps):
        t0 = 1000.0 * s
        t.events.append({"ph": "X", "cat": "user_annotation", "name": name, "pid": 9, "tid": 9,
                         "ts": t0, "dur": 900.0})
        for k, (kname, dur) in enumerate([(align, align_us if s else prefill_align_us),
                                          ("fused_moe_kernel", gemm_us)]):
            t.kernel(kname, t0 + 10 + 20 * k, dur, gpu_delay=5.0)
    return t.events
