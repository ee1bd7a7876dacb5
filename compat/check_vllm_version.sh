#!/usr/bin/env bash
# Checks vllm-moe-align-plugin against one vLLM release, CPU-only.
#
#   compat/check_vllm_version.sh VLLM_VERSION [COMMIT]
#
# VLLM_VERSION  a vLLM release on PyPI, e.g. 0.10.0 or 0.26.0
# COMMIT        the plugin commit to check (default HEAD), of the repository
#               this script lives in; it is cloned into the scratch folder, so
#               uncommitted changes are not part of the check
#
# Steps: a fresh venv (PYTHON -m venv) -> pip install vllm==VLLM_VERSION pytest
# hypothesis ninja (vLLM brings the torch it pins), plus the plugin's build
# requirements (setuptools, wheel: --no-build-isolation installs neither) ->
# the plugin built CPU-only into it (VLLM_MOE_ALIGN_CUDA=0, editable, no build
# isolation) -> vllm-moe-align info, vllm-moe-align verify --cases 100,
# python -m pytest -q -rs tests/.
# Every command is printed with a timestamp before it runs (set -x), so the
# output is the record of the run (e.g. ... 2>&1 | tee vllm-0.26.0.log). The
# check steps all run even if one fails; the exit status is non-zero if any
# step failed.
#
# Environment: WORK (scratch folder, default $TMPDIR/vllm-moe-align-compat, or
# /tmp/... without TMPDIR), PYTHON (default python3), KEEP_VENV=1 to reuse the
# venv of an earlier run of the same VLLM_VERSION (skips installing vLLM),
# MAX_JOBS (default 2).
set -uo pipefail

usage() { sed -n '2,/^set /p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set /d' >&2; exit "${1:-2}"; }
case "${1:-}" in -h|--help) usage 0 ;; "") usage ;; esac
[ $# -le 2 ] || usage
VERSION="$1"
COMMIT="${2:-HEAD}"
REPO="$(git -C "$(dirname "$0")/.." rev-parse --show-toplevel)" || exit 2
SHA="$(git -C "$REPO" rev-parse --verify --quiet "$COMMIT^{commit}")" || {
  echo "$COMMIT: not a commit of $REPO" >&2; exit 2; }
WORK="${WORK:-${TMPDIR:-/tmp}/vllm-moe-align-compat}"
SRC="$WORK/src-${SHA:0:12}"
PYTHON="${PYTHON:-python3}"
VENV="$WORK/venv-$VERSION"
export VLLM_MOE_ALIGN_CUDA=0      # CPU kernel only: the torch a vLLM release pins may not match the local nvcc
export MAX_JOBS="${MAX_JOBS:-2}"
export CUDA_VISIBLE_DEVICES=""    # keep torch and vLLM off any GPU
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
  echo "=== SUMMARY vLLM $VERSION, plugin $SHA ==="
  local failed=0 name
  for name in clone install build info verify pytest; do
    echo "  $name: ${STATUS[$name]:-not run}"
    case "${STATUS[$name]:-not run}" in PASS) ;; *) failed=1 ;; esac
  done
  exit "$failed"
}

clone_plugin() {
  set -x
  rm -rf "$SRC"
  git clone --quiet --no-checkout "$REPO" "$SRC" || return 1
  # A commit that no branch reaches is not cloned; fetch it by name.
  git -C "$SRC" cat-file -e "$SHA^{commit}" 2>/dev/null || git -C "$SRC" fetch --quiet "$REPO" "$SHA" || return 1
  git -C "$SRC" checkout --quiet --detach "$SHA" || return 1
  git -C "$SRC" log -1 --format='plugin commit %H %s'
}

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
  # --no-build-isolation pip does not install them, and a fresh venv may have a
  # setuptools without bdist_wheel and no `wheel` ("invalid command 'bdist_wheel'").
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
  # (from the clone: a python -c started in another checkout would import that one)
  (cd "$SRC" && "$VENV/bin/python" -c "import vllm_moe_align_plugin, vllm_moe_align_plugin._ops as o; \
print(vllm_moe_align_plugin.__file__, 'compiled op loaded:', o.available(), o.LOAD_ERROR)")
}

run_pytest() {
  set -x
  (cd "$SRC" && "$VENV/bin/python" -m pytest -q -rs tests/)
}

mkdir -p "$WORK" || exit 2
set -x
uname -srm
nproc
df -h "$WORK"
"$PYTHON" --version

step clone clone_plugin || summary
step install install_deps || summary
step build build_plugin || summary
step info "$VENV/bin/vllm-moe-align" info
step verify "$VENV/bin/vllm-moe-align" verify --cases 100
step pytest run_pytest
summary
