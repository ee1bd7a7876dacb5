"""The GPUs' clocks, power and temperature while a load runs.

A load's step times follow the SM clock, and a card that heats up or reaches
its power limit lowers it: two rounds of one arm can then differ by more
than the arms do. ``Sampler`` reads every GPU through NVML (``pynvml``, or
the copy of it that vLLM ships) every ``INTERVAL_S`` in a thread for
the span of one load, and ``summary`` condenses the samples into fields of
``results.JobRecord``: the lowest and median SM clock, the highest power draw
and temperature, the clock-event reasons seen, and the median share of time
in which a kernel ran (a GPU that waits for the host is busy less). It only
reads; where NVML is missing or fails, the fields stay None.
"""

from __future__ import annotations

import importlib.util
import statistics
import sys
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable, Optional

INTERVAL_S = 0.2
# the module name under which vLLM's copy of pynvml is loaded
VENDORED_NAME = "vllm_ab_pynvml"
# Clock-event reasons that are no slowdown: the GPU idles (bit 0) or runs at
# its application clocks setting (bit 1). The others (software or hardware
# power cap, thermal slowdown, ...) hold the clock down.
NOT_A_SLOWDOWN = 0x3
IDLE = 0x1
# NVML's clock-event reason bits that hold the clock down, by name (nvml.h)
SLOWDOWNS = {0x4: "software power cap", 0x8: "hardware slowdown", 0x10: "sync boost",
             0x20: "software thermal", 0x40: "hardware thermal", 0x80: "hardware power brake",
             0x100: "display clocks"}


@dataclass(frozen=True)
class Sample:
    gpu: int
    sm_mhz: float
    power_w: Optional[float] = None
    temp_c: Optional[float] = None
    reasons: Optional[int] = None
    busy_pct: Optional[float] = None  # NVML's GPU utilization over its last sample period


Reader = Callable[[], list[Sample]]


def load_pynvml(vendor: str = "vllm") -> Optional[ModuleType]:
    """``pynvml`` where it is installed, else the copy vLLM ships as
    ``<vendor>/third_party/pynvml.py`` (one file of ctypes bindings), loaded
    from its path without importing vLLM; None when neither is there."""
    try:
        import pynvml  # type: ignore[import-not-found,import-untyped,unused-ignore]

        return pynvml
    except ImportError:
        pass
    if VENDORED_NAME in sys.modules:
        return sys.modules[VENDORED_NAME]
    spec = importlib.util.find_spec(vendor)
    for folder in (spec.submodule_search_locations or []) if spec else []:
        path = Path(folder) / "third_party" / "pynvml.py"
        file_spec = importlib.util.spec_from_file_location(VENDORED_NAME, path)
        if path.is_file() and file_spec is not None and file_spec.loader is not None:
            module = importlib.util.module_from_spec(file_spec)
            # registered before it runs: the bindings look themselves up in sys.modules
            sys.modules[VENDORED_NAME] = module
            try:
                file_spec.loader.exec_module(module)
            except BaseException:
                del sys.modules[VENDORED_NAME]
                raise
            return module
    return None


def nvml_reader() -> Optional[Reader]:
    """A reader of every GPU through NVML, or None where NVML cannot be used."""
    try:
        pynvml = load_pynvml()
        if pynvml is None:
            return None
        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByIndex(i) for i in range(pynvml.nvmlDeviceGetCount())]
    except Exception:  # no package, no driver, no GPU: nothing to read
        return None
    reasons_of = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        pynvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)

    def optional(call: Optional[Callable[..., Any]], *args: Any) -> Optional[float]:
        if call is None:
            return None
        try:
            return float(call(*args))
        except Exception:  # a query this GPU or driver does not support
            return None

    def read() -> list[Sample]:
        out = []
        for i, h in enumerate(handles):
            mhz = optional(pynvml.nvmlDeviceGetClockInfo, h, pynvml.NVML_CLOCK_SM)
            if mhz is None:
                continue
            mw = optional(pynvml.nvmlDeviceGetPowerUsage, h)
            temp = optional(pynvml.nvmlDeviceGetTemperature, h, pynvml.NVML_TEMPERATURE_GPU)
            why = optional(reasons_of, h)
            busy = optional(lambda h: pynvml.nvmlDeviceGetUtilizationRates(h).gpu, h)
            out.append(Sample(i, mhz, None if mw is None else mw / 1000.0, temp,
                              None if why is None else int(why), busy))
        return out

    return read


def summary(samples: Sequence[Sample]) -> dict[str, Optional[float]]:
    """``JobRecord`` fields over all samples of all GPUs: ``sm_mhz_min``,
    ``sm_mhz_median``, ``power_w_max``, ``temp_c_max`` and ``clock_reasons``
    (the OR of every sample's reasons other than idle and application clocks:
    0 when nothing held the clock down) and ``gpu_busy_median`` (of all
    samples: an idle moment inside the load is what it shows); None where
    nothing was read. The clocks leave out samples of an idle GPU (the load's
    first and last moments), whose clock says nothing of the load's speed."""
    def top(values: list[Optional[float]]) -> Optional[float]:
        known = [v for v in values if v is not None]
        return max(known) if known else None

    mhz = [s.sm_mhz for s in samples if s.reasons is None or not s.reasons & IDLE]
    masks = [s.reasons for s in samples if s.reasons is not None]
    reasons = 0
    for m in masks:
        reasons |= m & ~NOT_A_SLOWDOWN
    busy = [s.busy_pct for s in samples if s.busy_pct is not None]
    return {"sm_mhz_min": min(mhz) if mhz else None,
            "sm_mhz_median": statistics.median(mhz) if mhz else None,
            "power_w_max": top([s.power_w for s in samples]),
            "temp_c_max": top([s.temp_c for s in samples]),
            "clock_reasons": reasons if masks else None,
            "gpu_busy_median": statistics.median(busy) if busy else None}


def reason_names(mask: int) -> str:
    """The clock-event reasons of ``mask`` by name ("" for none; unnamed bits in hex)."""
    names = [name for bit, name in SLOWDOWNS.items() if mask & bit]
    rest = mask & ~NOT_A_SLOWDOWN & ~sum(SLOWDOWNS)
    return ", ".join(names + ([f"{rest:#x}"] if rest else []))


def describe(fields: Mapping[str, Any]) -> str:
    """The summary's fields as the end of a progress line ("" when nothing was read)."""
    low, mid = fields.get("sm_mhz_min"), fields.get("sm_mhz_median")
    if low is None or mid is None:
        return ""
    out = f"  SM {low:.0f}/{mid:.0f} MHz min/median"
    if fields.get("temp_c_max") is not None:
        out += f", {fields['temp_c_max']:.0f} C"
    if fields.get("power_w_max") is not None:
        out += f", {fields['power_w_max']:.0f} W"
    if fields.get("gpu_busy_median") is not None:
        out += f", busy {fields['gpu_busy_median']:.0f}%"
    if fields.get("clock_reasons"):
        out += f", clock held down (reasons {fields['clock_reasons']:#x})"
    return out


class Sampler:
    """``with Sampler(reader) as s: <the load>``, then ``s.summary()``: one
    read at the start, one every ``interval`` s, one at the end."""

    def __init__(self, reader: Optional[Reader], interval: float = INTERVAL_S) -> None:
        self.reader, self.interval = reader, interval
        self.samples: list[Sample] = []
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read(self) -> None:
        assert self.reader is not None
        try:
            self.samples += self.reader()
        except Exception:  # a failed read is a missing sample, never a failed load
            pass

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def __enter__(self) -> Sampler:
        if self.reader is not None:
            self._read()
            self._thread = threading.Thread(target=self._loop, daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._read()

    def summary(self) -> dict[str, Optional[float]]:
        return summary(self.samples)
