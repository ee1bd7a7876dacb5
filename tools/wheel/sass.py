"""The machine code (SASS) of the plugin's CUDA kernels, per kernel, for one
GPU arch: how many instructions and of which kinds, and, given two builds,
which kernels changed.

    python -m tools.wheel.sass [--arch sm_90a] [--kernel REGEX] [--show NAME] BUILD [BUILD]

BUILD: a wheel of the plugin, or a CUDA library (``_C_cuda*.so``). With one
build: a table of its kernels. With two: the same table with both builds'
counts, each kernel marked ``same`` (identical instructions) or ``changed``;
exit status 1 when any kernel changed (a refactor that should keep the
machine code can be checked with it). ``--show NAME`` prints the
instructions of the kernels whose short name contains NAME (of the last
build given).

The columns count what a kernel's time usually hangs on: barriers (BAR),
shared-memory atomics (ATOMS), warp shuffles and votes, global loads and
stores, reconvergence regions (BSSY: one per divergent branch the compiler
could not turn into predication) and reads of the shared window's base
(``SR_CgaCtaId``: a special-register read that the compiler may repeat inside
each such region). cuobjdump is found as ``inspect_wheel`` finds it (CUDA_HOME,
PATH, /usr/local/cuda, the copy bundled with Triton).
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Sequence
from typing import Optional

from tools.wheel.inspect_wheel import LIBRARY, find_cuobjdump

#: (column, pattern on the opcode and operands)
COLUMNS = (
    ("BAR", re.compile(r"^BAR\.")),
    ("ATOMS", re.compile(r"^ATOMS\b")),
    ("SHFL", re.compile(r"^SHFL\b")),
    ("VOTE", re.compile(r"^VOTE\b")),
    ("LDG", re.compile(r"^LDG\b")),
    ("STG", re.compile(r"^STG\b")),
    ("BSSY", re.compile(r"^BSSY\b")),
    ("CgaCtaId", re.compile(r"^S2U?R\b.*SR_CgaCtaId")),
)
_ARCH = re.compile(r"^arch = (\S+)")
_FUNCTION = re.compile(r"^\s*Function : (\S+)")
_INSTRUCTION = re.compile(r"^\s*/\*[0-9a-f]{4,}\*/\s+(.*?)\s*;")
_PREDICATE = re.compile(r"^@!?U?P[0-9T]\s+")


def parse(sass: str, arch: Optional[str] = None) -> dict[str, list[str]]:
    """cuobjdump -sass output -> {mangled function name: its instructions},
    each instruction as text (predicate, opcode, operands; no address or
    encoding). With ``arch``, only the cubins of exactly that arch (cuobjdump's
    ``-arch sm_90a`` also lists sm_90 cubins); a function found in several
    such cubins (one per source file's build) is kept once."""
    out: dict[str, list[str]] = {}
    current: Optional[list[str]] = None
    cubin_arch: Optional[str] = None
    for line in sass.splitlines():
        m = _ARCH.match(line)
        if m:
            cubin_arch, current = m.group(1), None
            continue
        m = _FUNCTION.match(line)
        if m:
            wanted = arch is None or cubin_arch == arch
            current = [] if wanted and m.group(1) not in out else None
            if current is not None:
                out[m.group(1)] = current
            continue
        m = _INSTRUCTION.match(line)
        if m and current is not None:
            current.append(re.sub(r"\s+", " ", m.group(1)))
    return out


def short_name(mangled: str, demangled: Optional[str] = None) -> str:
    """``void ns::(anonymous namespace)::tiny_kernel<int, 1>(int const*, ...)``
    -> ``tiny_kernel<int, 1>``: the name without return type, namespaces or
    parameters (the anonymous namespace's tag differs between builds)."""
    text = (demangled or mangled).replace("(anonymous namespace)::", "")
    if text.startswith("void "):
        text = text[len("void "):]
    depth, start, end = 0, 0, len(text)
    for i, ch in enumerate(text):  # at template depth 0: the last "::", the first "("
        if ch == "<":
            depth += 1
        elif ch == ">":
            depth -= 1
        elif depth == 0 and ch == ":" and text.startswith("::", i):
            start = i + 2
        elif depth == 0 and ch == "(":
            end = i
            break
    return text[start:end]


def demangle(names: Sequence[str]) -> list[Optional[str]]:
    """c++filt's reading of each name, or None without c++filt."""
    tool = shutil.which("c++filt")
    if not tool or not names:
        return [None] * len(names)
    out = subprocess.run([tool], input="\n".join(names), capture_output=True, text=True).stdout
    lines = out.splitlines()
    return lines if len(lines) == len(names) else [None] * len(names)


def cuda_library(build: str, tmp: str) -> str:
    """The CUDA library of a wheel (extracted into ``tmp``), or ``build`` itself."""
    if not build.endswith(".whl"):
        return build
    with zipfile.ZipFile(build) as z:
        names = [n for n in z.namelist() if LIBRARY.match(n) and "/_C_cuda." in n]
        if not names:
            raise SystemExit(f"{build}: no _C_cuda library in the wheel (a build without CUDA kernels)")
        return z.extract(names[0], tmp)


def kernels(cuobjdump: str, library: str, arch: str) -> dict[str, list[str]]:
    """{short kernel name: instructions} of ``library``'s cubin for ``arch``."""
    proc = subprocess.run([cuobjdump, "-sass", "-arch", arch, library], capture_output=True,
                          text=True)
    if proc.returncode != 0:
        raise SystemExit(f"cuobjdump failed on {library}: {proc.stderr.strip()[-500:]}")
    by_mangled = parse(proc.stdout, arch)
    if not by_mangled:
        raise SystemExit(f"{library}: no {arch} machine code")
    names = list(by_mangled)
    return {short_name(m, d): by_mangled[m] for m, d in zip(names, demangle(names))}


def counts(code: list[str]) -> list[int]:
    """[instructions, then one count per COLUMNS entry]."""
    ops = [_PREDICATE.sub("", c) for c in code]
    return [len(ops)] + [sum(1 for op in ops if pattern.search(op)) for _, pattern in COLUMNS]


def table(builds: list[dict[str, list[str]]], pattern: Optional[str]) -> tuple[str, bool]:
    """A markdown table of the kernels (both builds' counts as ``a -> b``), and
    whether any kernel changed."""
    names = sorted(set().union(*builds))
    if pattern:
        names = [n for n in names if re.search(pattern, n)]
    header = ["kernel", "instructions", *(c for c, _ in COLUMNS)]
    if len(builds) == 2:
        header.append("")
    rows, changed = [], False
    for name in names:
        cells = [counts(b[name]) if name in b else None for b in builds]
        row = [name]
        for k in range(1 + len(COLUMNS)):  # one build's value, or "a -> b"
            values = ["-" if c is None else str(c[k]) for c in cells]
            row.append(values[0] if len(set(values)) == 1 else " -> ".join(values))
        if len(builds) == 2:
            same = all(name in b for b in builds) and builds[0][name] == builds[1][name]
            changed |= not same
            row.append("same" if same else "changed")
        rows.append(row)
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines), changed


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("builds", nargs="+", metavar="BUILD", help="a wheel or a _C_cuda library (1 or 2)")
    ap.add_argument("--arch", default="sm_90a", help="the cubin to read (default sm_90a)")
    ap.add_argument("--kernel", help="only kernels whose short name matches this regex")
    ap.add_argument("--show", metavar="NAME", help="print the instructions of these kernels")
    args = ap.parse_args(argv)
    if len(args.builds) > 2:
        ap.error("one build, or two to compare")
    cuobjdump = find_cuobjdump()
    if cuobjdump is None:
        raise SystemExit("no cuobjdump (CUDA_HOME, PATH, /usr/local/cuda or Triton's copy)")
    with tempfile.TemporaryDirectory() as tmp:
        builds = [kernels(cuobjdump, cuda_library(b, f"{tmp}/{i}"), args.arch)
                  for i, b in enumerate(args.builds)]
    text, changed = table(builds, args.kernel)
    print(text)
    if args.show:
        for name, code in sorted(builds[-1].items()):
            if args.show in name:
                print(f"\n{name} ({len(code)} instructions):")
                print("\n".join(f"  {c}" for c in code))
    return 1 if changed else 0


if __name__ == "__main__":
    sys.exit(main())
