#!/usr/bin/env bash
# Checks vllm-moe-align-plugin against one vLLM release, CPU-only.
#
#   compat/check_vllm_version.sh VERSION [SRC]
#
# VERSION  a vLLM release on PyPI, e.g. 0.10.0 or 0.26.0
# SRC      a clone of the plugin (default: $SRC or /tmp/compat-work/src; cloned
#          from /work/main when missing)
#
# Steps: a fresh venv (python3) -> pip install vllm==VERSION pytest hypothesis
# ninja (vLLM brings the torch it pins), plus the plugin's build requirements
# (setuptools, wheel) -> the plugin built CPU-only into it
# (VLLM_MOE_ALIGN_CUDA=0, editable, no build isolation) -> vllm-moe-align info,
# vllm-moe-align verify --cases 100, python -m pytest -q -rs tests/.
# Every command is printed before it runs (set -x). The check steps all run even
# if one fails; the exit status is non-zero if any step failed.
# Environment: WORK (scratch root, default /tmp/compat-work), PYTHON (default
# python3), KEEP_VENV=1 to reuse an existing venv (skips the pip install of vLLM).
set -uo pipefail

VERSION="${1:?usage: $0 VLLM_VERSION [SRC]}"
WORK="${WORK:-/tmp/compat-work}"
SRC="${2:-${SRC:-$WORK/src}}"
PYTHON="${PYTHON:-python3}"
VENV="$WORK/venv-$VERSION"
export VLLM_MOE_ALIGN_CUDA=0      # CPU kernel only: torch's CUDA != the machine's nvcc
export MAX_JOBS="${MAX_JOBS:-2}"
export CUDA_VISIBLE_DEVICES=""    # no GPU here; keep torch/vLLM off CUDA
export PIP_PROGRESS_BAR=off
export PS4='+ [$(date +%H:%M:%S)] '

declare -A STATUS=()
step() {  # step NAME CMD...: runs CMD, records PASS/FAIL for NAME
  local name="$1"; shift
  echo
  echo "=== $name ==="
  "$@"
  local rc=$?
  if [ "$rc" -eq 0 ]; then STATUS[$name]=PASS; else STATUS[$name]="FAIL (exit $rc)"; fi
  echo "=== $name: ${STATUS[$name]} ==="
  return "$rc"
}
summary() {
  echo
  echo "=== SUMMARY vLLM $VERSION ==="
  local failed=0 name
  for name in install build info verify pytest; do
    echo "  $name: ${STATUS[$name]:-not run}"
    case "${STATUS[$name]:-not run}" in PASS) ;; *) failed=1 ;; esac
  done
  exit "$failed"
}

set -x
uname -srm
nproc
df -h /tmp
"$PYTHON" --version

if [ ! -d "$SRC/.git" ]; then
  git clone /work/main "$SRC"
fi
git -C "$SRC" log -1 --format='plugin commit %H %s'
git -C "$SRC" status --short

install_deps() {
  set -x
  if [ "${KEEP_VENV:-0}" = 1 ] && [ -x "$VENV/bin/python" ]; then
    echo "reusing $VENV"
  else
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV" || return 1
    "$VENV/bin/python" -m pip install "vllm==$VERSION" pytest hypothesis ninja || return 1
  fi
  # The plugin's build requirements (pyproject.toml [build-system]): with
  # --no-build-isolation pip does not install them, and a python3.11 venv has
  # setuptools 65.5 without `wheel` (-> "invalid command 'bdist_wheel'").
  "$VENV/bin/python" -m pip install "setuptools>=64" wheel ninja || return 1
  "$VENV/bin/python" -m pip freeze --all
  "$VENV/bin/python" - <<'PY'
import importlib.metadata as md, torch
print("vllm", md.version("vllm"), "| torch", torch.__version__, "cuda", torch.version.cuda,
      "| python", __import__("sys").version.split()[0])
PY
}

build_plugin() {
  set -x
  # Objects and the in-place .so of a build against another torch must not be reused.
  rm -rf "$SRC/build" "$SRC"/*.egg-info "$SRC"/vllm_moe_align_plugin/_C*.so
  (cd "$SRC" && VLLM_MOE_ALIGN_CUDA=0 "$VENV/bin/python" -m pip install -v \
      --no-build-isolation --no-deps -e .) || return 1
  "$VENV/bin/python" -c "import vllm_moe_align_plugin, vllm_moe_align_plugin._ops as o; \
print(vllm_moe_align_plugin.__file__, 'compiled op loaded:', o.available(), o.LOAD_ERROR)"
}

run_pytest() {
  set -x
  (cd "$SRC" && "$VENV/bin/python" -m pytest -q -rs tests/)
}

step install install_deps || summary
step build build_plugin || summary
step info "$VENV/bin/vllm-moe-align" info
step verify "$VENV/bin/vllm-moe-align" verify --cases 100
step pytest run_pytest
summary
