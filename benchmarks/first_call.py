"""The first call of a fresh process, in the orders a user's script can take.

    python -m benchmarks.first_call [--processes 7] [--out DIR]

Each measurement runs in its own fresh Python process (``--child ORDER``):

- ``seed``: import the plugin, create ``topk_ids`` on CUDA, time one call
  (the order of a script that imports at the top);
- ``cuda-first``: CUDA used (one tensor on the GPU) before the import, then as
  ``seed``;
- ``eager-loading``: ``seed`` with ``CUDA_MODULE_LOADING=EAGER`` (every
  kernel of every library loaded when CUDA starts);
- ``seed-split``: ``seed`` with the kernel load (``preload_cuda_kernels``)
  timed on its own before the call, which shows how much of the first call
  is loading the plugin's kernels;
- ``module-floor``: no plugin: CUDA up, then an empty kernel in a module of
  its own (compiled with nvcc for this GPU beforehand, untimed), loaded and
  launched through the driver (``cuModuleLoadData``, first launch,
  synchronize): what the first kernel of any library costs, whatever it
  does, and so the floor under the part of ``seed`` that loads kernels.

Times are wall-clock microseconds around the call and a synchronize, on the
seed's shape (4096 x 2 routes, 64 experts, block 128). Reports the median over
processes per order, and min-max.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ORDERS = ("seed", "cuda-first", "eager-loading", "seed-split", "module-floor")
SHAPE = (4096, 2, 64, 128)  # tokens, top_k, experts, block


def empty_cubin(arch: str, folder: Path) -> bytes:
    """A cubin for ``sm_<arch>`` holding one empty kernel, ``empty_kernel``."""
    src, cubin = folder / "empty.cu", folder / "empty.cubin"
    src.write_text('extern "C" __global__ void empty_kernel() {}\n')
    subprocess.run(["nvcc", "-cubin", f"-arch=sm_{arch}", "-o", str(cubin), str(src)], check=True,
                   capture_output=True)
    return cubin.read_bytes()


def module_floor() -> dict:
    """The ``module-floor`` order: load + first launch of an empty kernel's own
    module after CUDA is up (``first_call_us``; ``load_us`` the load alone,
    which lazy loading may leave partly to the launch), then a second launch."""
    import ctypes
    import tempfile

    import torch

    torch.zeros(1, device="cuda")
    torch.cuda.synchronize()
    major, minor = torch.cuda.get_device_capability()
    with tempfile.TemporaryDirectory() as tmp:
        image = empty_cubin(f"{major}{minor}", Path(tmp))
    cuda = ctypes.CDLL("libcuda.so.1")
    cuda.cuLaunchKernel.argtypes = [ctypes.c_void_p] + [ctypes.c_uint] * 7 + [ctypes.c_void_p] * 3

    def check(code: int) -> None:
        if code != 0:
            raise RuntimeError(f"CUDA driver error {code}")

    module, func = ctypes.c_void_p(), ctypes.c_void_p()

    def launch() -> None:
        check(cuda.cuLaunchKernel(func, 1, 1, 1, 32, 1, 1, 0, None, None, None))
        check(cuda.cuCtxSynchronize())

    t0 = time.perf_counter()
    check(cuda.cuModuleLoadData(ctypes.byref(module), image))
    check(cuda.cuModuleGetFunction(ctypes.byref(func), module, b"empty_kernel"))
    t1 = time.perf_counter()
    launch()
    t2 = time.perf_counter()
    launch()
    t3 = time.perf_counter()
    return {"order": "module-floor", "load_us": (t1 - t0) * 1e6, "first_call_us": (t2 - t0) * 1e6,
            "second_call_us": (t3 - t2) * 1e6}


def child(order: str) -> dict:
    if order == "module-floor":
        return module_floor()
    import torch

    if order == "cuda-first":
        torch.zeros(1, device="cuda")
    from vllm_moe_align_plugin import _ops, moe_align_block_size

    tokens, top_k, experts, block = SHAPE
    ids = torch.randint(0, experts, (tokens, top_k), dtype=torch.int32, device="cuda")
    torch.cuda.synchronize()
    out: dict = {"order": order}
    if order == "seed-split":
        t0 = time.perf_counter()
        _ops.preload_cuda_kernels()
        out["load_us"] = (time.perf_counter() - t0) * 1e6
    t0 = time.perf_counter()
    moe_align_block_size(ids, block, experts)
    torch.cuda.synchronize()
    out["first_call_us"] = (time.perf_counter() - t0) * 1e6
    t0 = time.perf_counter()
    moe_align_block_size(ids, block, experts)
    torch.cuda.synchronize()
    out["second_call_us"] = (time.perf_counter() - t0) * 1e6
    return out


def run(processes: int) -> list[dict]:
    results = []
    for _ in range(processes):
        for order in ORDERS:  # interleaved, so drift touches every order alike
            env = dict(os.environ)
            if order == "eager-loading":
                env["CUDA_MODULE_LOADING"] = "EAGER"
            proc = subprocess.run([sys.executable, "-m", "benchmarks.first_call", "--child", order],
                                  env=env, capture_output=True, text=True, check=True)
            results.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    return results


def summary(results: list[dict]) -> str:
    from vllm_moe_align_plugin.bench import markdown_table

    def stat(rows: list[dict], key: str) -> str:
        vals = [r[key] for r in rows if key in r]
        if not vals:
            return "-"
        return f"{statistics.median(vals):.0f} ({min(vals):.0f}-{max(vals):.0f})"

    rows = []
    for order in ORDERS:
        mine = [r for r in results if r["order"] == order]
        if mine:
            rows.append([order, stat(mine, "first_call_us"), stat(mine, "load_us"),
                         stat(mine, "second_call_us")])
    return markdown_table(["order", "first call us, median (min-max)", "kernel load us",
                           "second call us"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", choices=ORDERS, help=argparse.SUPPRESS)
    parser.add_argument("--processes", type=int, default=7, help="fresh processes per order")
    parser.add_argument("--out", type=Path, default=None, help="folder for first_call.json")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child)))
        return
    results = run(args.processes)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "first_call.json").write_text(json.dumps(results, indent=1))
    print(summary(results))


if __name__ == "__main__":
    main()
