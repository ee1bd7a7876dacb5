"""Checks a built wheel of the plugin: its two compiled libraries are in it (_C,
and _C_cuda with the CUDA kernels), the CUDA code covers the expected archs
(cubins and PTX, listed by cuobjdump), the build info compiled into it names a
torch that the wheel's metadata requires, and nothing else is bundled. Prints
a summary; exit status 1 on a problem.

    python -m tools.wheel.inspect_wheel [--archs "8.0;8.9;9.0a;10.0+PTX"] WHEEL...

cuobjdump is taken from CUDA_HOME/bin, PATH, /usr/local/cuda/bin or the copy
bundled with Triton (triton/backends/nvidia/bin); without one the arch check
is skipped with a note.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from email.parser import Parser
from typing import Optional

MARKER = b"VLLM_MOE_ALIGN_BUILD_INFO="  # setup.py BUILD_INFO_MARKER
LIBRARY = re.compile(r"^vllm_moe_align_plugin/_C(_cuda)?\.[^/]+\.so$")


def find_cuobjdump() -> Optional[str]:
    candidates = []
    if os.environ.get("CUDA_HOME"):
        candidates.append(os.path.join(os.environ["CUDA_HOME"], "bin", "cuobjdump"))
    candidates += [shutil.which("cuobjdump") or "", "/usr/local/cuda/bin/cuobjdump"]
    spec = importlib.util.find_spec("triton")
    for root in (spec.submodule_search_locations or []) if spec else []:
        candidates.append(os.path.join(root, "backends", "nvidia", "bin", "cuobjdump"))
    return next((c for c in candidates if c and os.access(c, os.X_OK)), None)


def expected_code(arch_list: str) -> tuple[set[str], set[str]]:
    """TORCH_CUDA_ARCH_LIST -> (cubin archs, PTX archs): "9.0a" -> sm_90a,
    "10.0+PTX" -> sm_100 and compute_100."""
    cubins, ptx = set(), set()
    for arch in arch_list.replace(";", " ").split():
        num = arch.replace("+PTX", "").replace(".", "")
        cubins.add(f"sm_{num}")
        if arch.endswith("+PTX"):
            ptx.add(f"compute_{num}")
    return cubins, ptx


def cuda_code(cuobjdump: str, library: str) -> tuple[set[str], set[str]]:
    """(cubin archs, PTX archs) in ``library``, from cuobjdump's listings."""
    def listed(flag: str, pattern: str) -> set[str]:
        out = subprocess.run([cuobjdump, flag, library], capture_output=True, text=True).stdout
        return set(re.findall(pattern, out))

    return (listed("--list-elf", r"\.(sm_\d+a?)\.cubin"),
            listed("--list-ptx", r"\.(sm_\d+a?)\.ptx"))


def read_build_info(data: bytes) -> Optional[dict]:
    start = data.find(MARKER)
    if start < 0:
        return None
    start += len(MARKER)
    end = data.find(b"\0", start)
    return json.loads(data[start:end].decode())


def _torch_requirement_problems(info: dict, requires: list[str], filename: str) -> list[str]:
    """A stable-ABI library: the wheel requires torch >= its floor and is
    tagged abi3 (one wheel for every Python 3). A C++-ABI library: the wheel
    pins the torch major.minor it was built against."""
    wanted = {r.replace(" ", "") for r in requires}
    if info.get("abi") == "stable":
        problems = []
        floor = info.get("torch_floor")
        print(f"  stable ABI: torch >= {floor}")
        if f"torch>={floor}" not in wanted:
            problems.append(f"the metadata does not require torch>={floor} ({requires})")
        if "-abi3-" not in filename:
            problems.append(f"a stable-ABI wheel should be tagged abi3: {filename}")
        return problems
    major_minor = ".".join(info["torch"].split("+")[0].split(".")[:2])
    if f"torch=={major_minor}.*" not in wanted:
        return [f"the metadata does not pin torch=={major_minor}.* ({requires})"]
    return []


def inspect(wheel: str, arch_list: Optional[str]) -> list[str]:
    """Prints what the wheel holds; returns the problems found."""
    problems = []
    with zipfile.ZipFile(wheel) as zf:
        names = zf.namelist()
        libraries = [n for n in names if LIBRARY.match(n)]
        other_binaries = [n for n in names if ".so" in os.path.basename(n) and n not in libraries]
        metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
        meta = Parser().parsestr(zf.read(metadata).decode())
        print(f"{os.path.basename(wheel)}: {os.path.getsize(wheel) / 2**20:.1f} MiB, "
              f"{len(names)} files")
        by_name = {os.path.basename(n).split(".")[0]: n for n in libraries}
        if sorted(by_name) != ["_C", "_C_cuda"] or len(libraries) != 2:
            return [f"expected the libraries _C and _C_cuda, found {libraries}"]
        if other_binaries:
            problems.append(f"bundled libraries (torch and CUDA bring their own): {other_binaries}")
        for name in libraries:
            print(f"  {name}: {zf.getinfo(name).file_size / 2**20:.1f} MiB")
        info = read_build_info(zf.read(by_name["_C"]))
        library = by_name["_C_cuda"]
        data = zf.read(library)
        requires = meta.get_all("Requires-Dist") or []
        print(f"  Requires-Dist: {', '.join(requires)}")
        if info is None:
            problems.append("the library carries no build info")
        else:
            print(f"  built for torch {info['torch']} (CUDA {info['torch_cuda']}), nvcc {info['nvcc']}, "
                  f"archs {' '.join(info['cuda_archs'])}, command {info['command']}")
            problems += _torch_requirement_problems(info, requires, os.path.basename(wheel))
            if not info.get("cuda"):
                problems.append("the library has no CUDA kernels")
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, os.path.basename(library))
            with open(path, "wb") as f:
                f.write(data)
            cuobjdump = find_cuobjdump()
            if cuobjdump is None:
                print("  (no cuobjdump found: CUDA code not listed)")
                return problems
            cubins, ptx = cuda_code(cuobjdump, path)
            print(f"  cubins: {' '.join(sorted(cubins)) or 'none'}; "
                  f"PTX: {' '.join(sorted(p.replace('sm_', 'compute_') for p in ptx)) or 'none'}")
            if arch_list:
                want_cubins, want_ptx = expected_code(arch_list)
                have_ptx = {p.replace("sm_", "compute_") for p in ptx}
                if want_cubins - cubins:
                    problems.append(f"missing cubins: {sorted(want_cubins - cubins)}")
                if want_ptx - have_ptx:
                    problems.append(f"missing PTX: {sorted(want_ptx - have_ptx)}")
    return problems


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("wheels", nargs="+")
    parser.add_argument("--archs", default=None,
                        help="TORCH_CUDA_ARCH_LIST the wheel was built for (checked with cuobjdump)")
    args = parser.parse_args(argv)
    problems = []
    for wheel in args.wheels:
        problems += [f"{os.path.basename(wheel)}: {p}" for p in inspect(wheel, args.archs)]
    for problem in problems:
        print(f"PROBLEM {problem}", file=sys.stderr)
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
