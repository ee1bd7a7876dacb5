#!/usr/bin/env bash
# One GPU-machine run of the end-to-end benchmark (benchmarks/e2e_offline.py),
# on a machine with torch but no vLLM and no network.
#
#   benchmarks/e2e_device.sh unpack        unpack the carried part(s) .e2e/parts/part-NN.tar.xz
#                                          into .e2e/site (one run per part; idempotent)
#   benchmarks/e2e_device.sh build         build the plugin in place (CUDA, like
#                                          `make build-inplace`) and give it an entry point
#   benchmarks/e2e_device.sh run [ARGS]    check the set-up, then e2e_offline.py: 1 GPU, or
#                                          `--tp 2 --ep` when 2 or more GPUs are visible;
#                                          ARGS go to e2e_offline.py (e.g. --model qwen3moe)
#   benchmarks/e2e_device.sh all [ARGS]    unpack (if a part is carried), build, run
#
# The bundle (.e2e/site) and the build stay on a warm machine between runs
# (ignored paths are kept), so: runs 1..k `unpack` one part each, then `build`,
# then `run` (or `all` with the last part). Results go to $OUT (at most 8 files):
# e2e_offline.md/.csv/.png, e2e_logs.tar.gz (every run's log, result and trace
# summary), e2e_env.txt. Without $OUT they stay in .e2e/results.
#
# Entry point without pip: vLLM finds plugins through installed distributions'
# entry points; `build` writes .e2e/plugin-meta/vllm_moe_align_plugin-<v>.dist-info
# (METADATA + entry_points.txt) and `run` puts it, the repository root (the
# package with its in-place _C) and .e2e/site on PYTHONPATH. (`pip install
# --no-deps --no-build-isolation -e .` works too, but writes into python3's
# environment.)
#
# Environment: E2E_TP (GPUs to use; default 2 when 2+ are visible, else 1),
# E2E_EP (1/0; default 1 when E2E_TP > 1), E2E_TIME_LIMIT (seconds for
# e2e_offline.py; default: what is left of 550 s since this script started, so
# that `all` ends inside a 600 s device command; each vLLM run gets --timeout
# 300 unless ARGS say otherwise), TORCH_CUDA_ARCH_LIST (default 9.0a),
# MAX_JOBS (default 16),
# VLLM_MOE_ALIGN_CUDA (default 1), PYTHON (default python3).
# Every run sets NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1
# NVSHMEM_DISABLE_NVLS=1 VLLM_ALLREDUCE_USE_SYMM_MEM=0 (no NVLink multicast).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3}"
SITE="$ROOT/.e2e/site"
META="$ROOT/.e2e/plugin-meta"
RESULTS="$ROOT/.e2e/results"
OUT_DIR="${OUT:-$ROOT/.e2e/out}"
# The GPU hosts must never use NVLink multicast (KINDS.md); children inherit these.
export NCCL_NVLS_ENABLE=0 TORCH_SYMM_MEM_DISABLE_MULTICAST=1 NVSHMEM_DISABLE_NVLS=1
export VLLM_ALLREDUCE_USE_SYMM_MEM=0 PYTHONUNBUFFERED=1

STEP="${1:-}"
[ $# -gt 0 ] && shift
case "$STEP" in unpack|build|run|all) ;; *)
  echo "usage: $0 unpack|build|run|all [e2e_offline.py args]" >&2; exit 2 ;;
esac

NGPU="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
echo "GPUs visible to torch: $NGPU"

do_unpack() {
  if compgen -G "$ROOT/.e2e/parts/part-*.tar.xz" > /dev/null; then
    "$ROOT/benchmarks/e2e_unpack.sh" "$ROOT/.e2e/parts" "$SITE"
  else
    echo "no part carried (.e2e/parts/part-NN.tar.xz)"
    "$PYTHON" "$ROOT/benchmarks/e2e_bundle.py" status "$SITE" || true
  fi
}

do_build() {
  local t0=$SECONDS
  VLLM_MOE_ALIGN_CUDA="${VLLM_MOE_ALIGN_CUDA:-1}" TORCH_CUDA_ARCH_LIST="${TORCH_CUDA_ARCH_LIST:-9.0a}" \
    MAX_JOBS="${MAX_JOBS:-16}" "$PYTHON" setup.py -q build_ext --inplace
  local version
  version="$("$PYTHON" -c 'import re,sys; print(re.search(r"__version__ = \"([^\"]+)\"", open(sys.argv[1]).read()).group(1))' \
    vllm_moe_align_plugin/__init__.py)"
  rm -rf "$META"
  mkdir -p "$META/vllm_moe_align_plugin-$version.dist-info"
  printf 'Metadata-Version: 2.1\nName: vllm-moe-align-plugin\nVersion: %s\n' "$version" \
    > "$META/vllm_moe_align_plugin-$version.dist-info/METADATA"
  printf '[vllm.general_plugins]\nmoe_align = vllm_moe_align_plugin:register\n' \
    > "$META/vllm_moe_align_plugin-$version.dist-info/entry_points.txt"
  echo "plugin built in place in $((SECONDS - t0)) s; entry point in $META"
}

do_run() {
  if ! "$PYTHON" "$ROOT/benchmarks/e2e_bundle.py" status "$SITE"; then
    echo "the bundle is incomplete: carry the missing parts and run '$0 unpack' first" >&2
    exit 1
  fi
  if ! compgen -G "$ROOT/vllm_moe_align_plugin/_C*.so" > /dev/null || [ ! -d "$META" ]; then
    do_build
  fi
  export PYTHONPATH="$META:$ROOT:$SITE${PYTHONPATH:+:$PYTHONPATH}"
  mkdir -p "$RESULTS" "$OUT_DIR"
  # The set-up, checked in one process: versions, the plugin's op and entry
  # point, and requirements of the bundled packages the machine may not meet.
  "$PYTHON" - <<'PY' 2>&1 | tee "$RESULTS/e2e_env.txt"
import importlib.metadata as md, sys
import torch
print("python", sys.version.split()[0], "| torch", torch.__version__, "| GPUs",
      [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())])
for name in ("vllm", "triton", "transformers", "numpy", "pydantic", "typing_extensions",
             "anyio", "huggingface_hub", "tokenizers", "numba", "setuptools"):
    try:
        print(f"  {name} {md.version(name)}")
    except md.PackageNotFoundError:
        print(f"  {name} MISSING")
import vllm_moe_align_plugin._ops as ops
print("plugin op loaded:", ops.available(), "| cuda kernel:", ops.has_backend("cuda"), ops.LOAD_ERROR or "")
eps = [f"{e.name} -> {e.value}" for e in md.entry_points(group="vllm.general_plugins")]
print("vllm.general_plugins:", eps)
try:
    from packaging.requirements import Requirement
except ImportError:
    Requirement = None
if Requirement is not None:
    bad = []
    for dist in md.distributions():
        if not dist.locate_file("").as_posix().rstrip("/").endswith(".e2e/site"):
            continue
        for line in dist.requires or []:
            req = Requirement(line)
            if req.marker is not None and not req.marker.evaluate({"extra": ""}):
                continue
            try:
                have = md.version(req.name)
            except md.PackageNotFoundError:
                continue  # left out on purpose (e2e_bundle.py LEFT_OUT) or optional
            if req.specifier and not req.specifier.contains(have, prereleases=True):
                bad.append(f"{dist.metadata['Name']} needs {line}, found {have}")
    print("unmet version requirements:", "; ".join(sorted(set(bad))) or "none")
if not ops.available() or not any(e.startswith("moe_align ") for e in eps):
    sys.exit("plugin op or entry point missing")
if torch.cuda.is_available() and not ops.has_backend("cuda"):
    sys.exit("the plugin was built without its CUDA kernel (nvcc missing?)")
PY
  local tp="${E2E_TP:-$([ "$NGPU" -ge 2 ] && echo 2 || echo 1)}"
  local ep_flag=()
  if [ "${E2E_EP:-$([ "$tp" -gt 1 ] && echo 1 || echo 0)}" = 1 ]; then ep_flag=(--ep); fi
  local rc=0
  # The device command may last 600 s: stop in time to copy what was measured
  # (e2e_offline.py writes its report after each model and on SIGTERM).
  local limit="${E2E_TIME_LIMIT:-$((550 - SECONDS))}"  # SECONDS: since this script started
  if [ "$limit" -lt 120 ]; then limit=120; fi
  echo "e2e_offline.py time limit: $limit s"
  timeout -s TERM -k 30 "$limit" \
    "$PYTHON" "$ROOT/benchmarks/e2e_offline.py" --tp "$tp" "${ep_flag[@]}" --out "$RESULTS" \
    --work "$ROOT/.e2e/run" --timeout 300 "$@" || rc=$?
  for f in e2e_offline.md e2e_offline.csv e2e_offline.png e2e_env.txt; do
    [ -f "$RESULTS/$f" ] && cp "$RESULTS/$f" "$OUT_DIR/"
  done
  if [ -d "$RESULTS/e2e_offline_logs" ]; then
    tar -C "$RESULTS" -czf "$OUT_DIR/e2e_logs.tar.gz" e2e_offline_logs
  fi
  ls -l "$OUT_DIR"
  return "$rc"
}

case "$STEP" in
  unpack) do_unpack ;;
  build) do_build ;;
  run) do_run "$@" ;;
  all) do_unpack; do_build; do_run "$@" ;;
esac
