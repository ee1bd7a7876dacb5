#!/usr/bin/env bash
# Builds the vLLM 0.26.0 bundle for the offline GPU machines (run it where PyPI
# is reachable; it needs python3 with pip, tar and xz).
#
#   benchmarks/e2e_bundle.sh            -> .e2e/parts/part-00.tar.xz, part-01.tar.xz, ...
#
# Why: the GPU machines have Python 3.12, torch 2.11.0+cu130 (the torch vLLM
# 0.26.0 is built for), transformers and most of the scientific stack, but no
# vLLM and no network, and each run carries at most ~60 MiB of extra files.
#
# What it does:
#   1. downloads vllm==0.26.0 and the packages of `benchmarks/e2e_bundle.py pins`
#      (vLLM's offline-inference imports that the machines lack; the machines'
#      package list is hard-coded in e2e_bundle.py, from KINDS.md) as CPython
#      3.12 manylinux x86_64 wheels, each with --no-deps, so nothing the machine
#      has (torch above all) is fetched;
#   2. checks the requirement closure of those wheels (every requirement is
#      bundled, on the machine, or deliberately left out with a reason);
#   3. installs them into one site-packages-style tree (.e2e/work-py3.12/site),
#      strips vLLM of what the bf16 Triton path never loads (FlashAttention
#      2/3 extensions, the Rust front end, DeepGEMM, Blackwell kernels, ...);
#   4. packs the tree into part-NN.tar.xz files of at most 58 MiB each, split by
#      files (each part unpacks on its own), and prints their sizes.
#
# On the GPU machine, one run per part (each carrying .e2e/parts/part-NN.tar.xz):
#   benchmarks/e2e_device.sh unpack     (= benchmarks/e2e_unpack.sh .e2e/parts .e2e/site)
# then PYTHONPATH=.e2e/site (benchmarks/e2e_device.sh run does it all).
#
# Environment:
#   E2E_PYVER     target CPython (default 3.12; 3.11 builds a tree for checking
#                 the import closure on a 3.11 machine)
#   E2E_WORK      work folder (default .e2e/work-py$E2E_PYVER)
#   E2E_PARTS     output folder (default .e2e/parts; for E2E_PYVER != 3.12:
#                 .e2e/parts-py$E2E_PYVER)
#   E2E_PART_MIB  part size limit in MiB (default 58)
#   E2E_XZ_OPTS   xz options (default "-9 -T0")
#   VLLM_WHEEL    an already downloaded vllm-0.26.0 wheel (skips its download)
#   E2E_PACK=0    stop after the tree (no parts)
#   E2E_KINDS     the GPU machines' KINDS.md, whose package list (when the file
#                 exists) replaces the one in e2e_bundle.py for the closure check
#   PYTHON        python with pip (default python3)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PYTHON="${PYTHON:-python3}"
PYVER="${E2E_PYVER:-3.12}"
WORK="${E2E_WORK:-$ROOT/.e2e/work-py$PYVER}"
if [ "$PYVER" = 3.12 ]; then PARTS_DEFAULT="$ROOT/.e2e/parts"; else PARTS_DEFAULT="$ROOT/.e2e/parts-py$PYVER"; fi
PARTS="${E2E_PARTS:-$PARTS_DEFAULT}"
PART_MIB="${E2E_PART_MIB:-58}"
XZ_OPTS="${E2E_XZ_OPTS:--9 -T0}"
TOOL="$ROOT/benchmarks/e2e_bundle.py"
WHEELS="$WORK/wheels"
SITE="$WORK/site"

# pip matches manylinux tags exactly: offer every glibc from 2.17 to 2.39 (the
# machines run Python 3.12.3, Ubuntu 24.04's, whose glibc is 2.39).
PLATFORMS=()
for n in $(seq 39 -1 17); do PLATFORMS+=(--platform "manylinux_2_${n}_x86_64"); done
PLATFORMS+=(--platform manylinux2014_x86_64 --platform manylinux1_x86_64)
PIP_TARGET_ARGS=(--only-binary=:all: --python-version "$PYVER" --implementation cp "${PLATFORMS[@]}")

echo "== bundle for CPython $PYVER: work $WORK, parts $PARTS"
mkdir -p "$WHEELS"

echo "== 1. download (no dependencies resolved; every package is pinned)"
mapfile -t PINS < <("$PYTHON" "$TOOL" pins)
if [ -n "${VLLM_WHEEL:-}" ]; then
  cp -f "$VLLM_WHEEL" "$WHEELS/"
fi
# One call, --no-deps: pip reuses wheels already in $WHEELS.
"$PYTHON" -m pip download -q --no-deps "${PIP_TARGET_ARGS[@]}" -d "$WHEELS" "${PINS[@]}"
# Exactly one wheel per pin (a stale version would install twice).
"$PYTHON" - "$WHEELS" "${PINS[@]}" <<'PY'
import re, sys
from pathlib import Path
wheels, pins = Path(sys.argv[1]), sys.argv[2:]
norm = lambda s: re.sub(r"[-_.]+", "_", s).lower()
want = {norm(p.split("==")[0]): p.split("==")[1] for p in pins}
for w in sorted(wheels.glob("*.whl")):
    name, version = w.name.split("-")[:2]
    if want.get(norm(name)) != version:
        print(f"removing {w.name} (not pinned)"); w.unlink()
have = {norm(w.name.split("-")[0]) for w in wheels.glob("*.whl")}
missing = sorted(set(want) - have)
if missing:
    sys.exit(f"wheels missing after download: {missing}")
print(f"{len(want)} wheels in {wheels}")
PY

echo "== 2. requirement closure"
# The machines' package list: e2e_bundle.py DEVICE_PACKAGES, or a fresher KINDS.md.
KINDS_ARGS=()
if [ -f "${E2E_KINDS:-/work/.library/device/KINDS.md}" ]; then
  KINDS_ARGS=(--kinds "${E2E_KINDS:-/work/.library/device/KINDS.md}")
fi
"$PYTHON" "$TOOL" closure "$WHEELS" --python-version "$PYVER" "${KINDS_ARGS[@]}"

echo "== 3. tree"
rm -rf "$SITE"
"$PYTHON" -m pip install -q --no-deps --no-compile --no-index "${PIP_TARGET_ARGS[@]}" \
  --target "$SITE" "$WHEELS"/*.whl
"$PYTHON" "$TOOL" strip "$SITE"
du -sh "$SITE"

if [ "${E2E_PACK:-1}" = 0 ]; then
  echo "tree ready in $SITE (E2E_PACK=0: no parts)"
  exit 0
fi

echo "== 4. parts (at most $PART_MIB MiB each, xz $XZ_OPTS)"
"$PYTHON" "$TOOL" pack "$SITE" "$PARTS" --max-mib "$PART_MIB" --xz-opts "$XZ_OPTS" --work "$WORK"
ls -l "$PARTS"
echo "Carry one part per GPU run: .e2e/parts/part-NN.tar.xz, then: benchmarks/e2e_device.sh unpack"
