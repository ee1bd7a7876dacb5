#!/usr/bin/env bash
# Runs a command on a GPU machine without network, with the plugin built in
# place and an unpacked tree-mode wheelhouse on PYTHONPATH.
#
#   tools/wheelhouse/run.sh [OPTIONS] [-- COMMAND [ARGS...]]
#
# Steps: (1) with --parts, unpack the parts found there into the site folder
# (unpack.sh); (2) build the plugin in place (setup.py build_ext --inplace,
# with the machine's torch and nvcc) unless a build is there, and write its
# entry points to a dist-info folder (python -m tools.wheelhouse.inplace), so
# vLLM finds the plugin without pip; (3) check the set-up in one process
# (python -m tools.wheelhouse.envcheck --plugin: versions, where the plugin is
# imported from, its op and entry point, requirements of the wheelhouse's
# packages that are not met), saved as OUT/env.txt; (4) run COMMAND in the
# current folder with PYTHONPATH = entry points (or the wheel's folder) :
# repository : site, its output also in OUT/run.log. With --wheel, vLLM's
# processes must not start in the repository root (its source package would
# shadow the wheel's): the serving harness starts them in its work folder.
# Without COMMAND it stops after (3). The exit status is COMMAND's (1 when a
# step before it failed).
#
# Options (and the environment variables that set their defaults):
#   --site DIR        unpacked wheelhouse to put on PYTHONPATH; "" for none
#                     (WHEELHOUSE_SITE, default .wheelhouse/site)
#   --parts DIR       unpack the parts in DIR into the site first (WHEELHOUSE_PARTS)
#   --out DIR         env.txt, run.log; exported to COMMAND as WHEELHOUSE_OUT
#                     (WHEELHOUSE_OUT, default .wheelhouse/out)
#   --time-limit S    end within about S seconds of this script's start:
#                     COMMAND gets SIGTERM 40 s before, SIGKILL 30 s after that
#                     (WHEELHOUSE_TIME_LIMIT, default 0: no limit)
#   --env NAME=VALUE  set for every step (repeatable), e.g. NCCL_NVLS_ENABLE=0
#   --tar-dirs        after COMMAND, replace each folder in OUT by NAME.tar.gz
#   --rebuild         build the plugin even when a build is there
#   --no-build        never build (the plugin must be importable already)
#   --wheel FILE      run the plugin's wheel as users install it, not a build
#                     in place (installed into .wheelhouse/plugin-wheel)
# Build settings pass through: VLLM_MOE_ALIGN_CUDA, TORCH_CUDA_ARCH_LIST,
# MAX_JOBS (default: the CPU count). PYTHON: the interpreter (default python3).
# Relative paths are taken from the current folder; defaults are in the
# repository. COMMAND sees WHEELHOUSE_NGPU, the number of GPUs torch sees.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
SITE="${WHEELHOUSE_SITE-$ROOT/.wheelhouse/site}"
PARTS="${WHEELHOUSE_PARTS:-}"
RESULTS="${WHEELHOUSE_OUT:-$ROOT/.wheelhouse/out}"
TIME_LIMIT="${WHEELHOUSE_TIME_LIMIT:-0}"
META="$ROOT/.wheelhouse/plugin-meta"
WHEEL_DIR="$ROOT/.wheelhouse/plugin-wheel"
TAR_DIRS=0 BUILD=auto WHEEL=""
usage() { sed -n '2,/^set /p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set /d' >&2; exit "${1:-2}"; }
while [ $# -gt 0 ]; do
  case "$1" in
    --site) SITE="$2"; shift 2 ;;
    --parts) PARTS="$2"; shift 2 ;;
    --out) RESULTS="$2"; shift 2 ;;
    --time-limit) TIME_LIMIT="$2"; shift 2 ;;
    --env) case "$2" in *=*) export "${2?}" ;; *) echo "--env needs NAME=VALUE" >&2; exit 2 ;; esac; shift 2 ;;
    --tar-dirs) TAR_DIRS=1; shift ;;
    --rebuild) BUILD=always; shift ;;
    --no-build) BUILD=never; shift ;;
    --wheel) WHEEL="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    --) shift; break ;;
    *) echo "unknown option $1" >&2; usage ;;
  esac
done
case "$TIME_LIMIT" in ''|*[!0-9]*) echo "--time-limit needs whole seconds" >&2; exit 2 ;; esac
abs() { [ -z "$1" ] || realpath -m -- "$1"; }
SITE="$(abs "$SITE")" RESULTS="$(abs "$RESULTS")" PARTS="$(abs "$PARTS")" WHEEL="$(abs "$WHEEL")"
mkdir -p "$ROOT/.wheelhouse" "$RESULTS"
[ -f "$ROOT/.wheelhouse/.gitignore" ] || printf '# written by tools/wheelhouse\n*\n' > "$ROOT/.wheelhouse/.gitignore"
export PYTHONUNBUFFERED=1 WHEELHOUSE_OUT="$RESULTS"

if [ -n "$PARTS" ]; then
  "$ROOT/tools/wheelhouse/unpack.sh" "$PARTS" "$SITE" || true
fi
if [ -n "$SITE" ] && ! PYTHONPATH="$ROOT" "$PYTHON" -m tools.wheelhouse status "$SITE"; then
  echo "the wheelhouse in $SITE is incomplete: unpack the missing parts first" >&2
  exit 1
fi

if [ -n "$WHEEL" ]; then
  [ -f "$WHEEL" ] || { echo "--wheel $WHEEL: no such file" >&2; exit 1; }
  rm -rf "$WHEEL_DIR"
  "$PYTHON" -m pip install -q --no-deps --no-index --no-compile --target "$WHEEL_DIR" "$WHEEL"
  echo "installed $(basename "$WHEEL") into $WHEEL_DIR"
  META="$WHEEL_DIR"
elif [ "$BUILD" = always ] || { [ "$BUILD" = auto ] && { ! compgen -G "$ROOT/vllm_moe_align_plugin/_C*.so" > /dev/null || [ ! -d "$META" ]; }; }; then
  t0=$SECONDS
  (cd "$ROOT" && MAX_JOBS="${MAX_JOBS:-$(nproc)}" "$PYTHON" setup.py -q build_ext --inplace)
  PYTHONPATH="$ROOT" "$PYTHON" -m tools.wheelhouse.inplace "$ROOT" "$META"
  echo "plugin built in place in $((SECONDS - t0)) s; entry points in $META"
fi

export PYTHONPATH="$META:$ROOT${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"
WHEELHOUSE_NGPU="$("$PYTHON" -c 'import torch; print(torch.cuda.device_count())')"
export WHEELHOUSE_NGPU
echo "GPUs visible to torch: $WHEELHOUSE_NGPU"
SITE_ARGS=()
[ -z "$SITE" ] || SITE_ARGS=(--site "$SITE")
set +e
# outside the repository root, so the plugin is imported as vLLM will import it
(cd / && "$PYTHON" -m tools.wheelhouse.envcheck ${SITE_ARGS[@]+"${SITE_ARGS[@]}"} --plugin) 2>&1 | tee "$RESULTS/env.txt"
rc="${PIPESTATUS[0]}"
set -e
[ "$rc" = 0 ] || { echo "set-up check failed (see $RESULTS/env.txt)" >&2; exit 1; }
[ $# -gt 0 ] || exit 0

LIMIT_CMD=()
if [ "$TIME_LIMIT" -gt 0 ]; then
  left=$((TIME_LIMIT - 40 - SECONDS))  # SECONDS: since this script started
  if [ "$left" -lt 1 ]; then echo "no time left for the command (--time-limit $TIME_LIMIT)" >&2; exit 1; fi
  echo "command time limit: $left s"
  LIMIT_CMD=(timeout -s TERM -k 30 "$left")
fi
set +e
${LIMIT_CMD[@]+"${LIMIT_CMD[@]}"} "$@" 2>&1 | tee "$RESULTS/run.log"
rc="${PIPESTATUS[0]}"
set -e
if [ "$TAR_DIRS" = 1 ]; then
  for dir in "$RESULTS"/*/; do
    [ -d "$dir" ] || continue
    name="$(basename "$dir")"
    tar -C "$RESULTS" -czf "$RESULTS/$name.tar.gz" "$name" && rm -rf "${RESULTS:?}/$name"
  done
fi
ls -l "$RESULTS"
exit "$rc"
