#!/usr/bin/env bash
# Installs a built wheel the way a user would and runs the test suite against
# the installed package, not the source tree:
#   1. a fresh virtual environment with REQUIREMENTs (default: vllm==0.33.0)
#      and the test tools, then the wheel; no compiler is reachable (cc, gcc,
#      g++, c++, clang, nvcc on PATH fail loudly, CUDA_HOME is unset), so a
#      step that tried to build something would fail;
#   2. the repository without vllm_moe_align_plugin/ copied to WORK, so the
#      tests can only import the installed package (checked first);
#   3. vllm-moe-align info and verify, then pytest over the copied tests.
#
# usage: tools/wheel/test_installed.sh WHEEL VENV [REQUIREMENT ...]
# Environment: PYTHON (python3), WORK (build/wheel-test), KEEP_VENV=1 (reuse
# VENV and its requirements when it exists; the wheel is always reinstalled),
# PYTEST_ARGS (-q).
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'
  exit 2
fi
root=$(cd "$(dirname "$0")/../.." && pwd)
wheel=$(realpath "$1")
venv=$(realpath -m "$2")
shift 2
reqs=("$@")
[ ${#reqs[@]} -gt 0 ] || reqs=("vllm==0.33.0")
work=$(realpath -m "${WORK:-$root/build/wheel-test}")
py=${PYTHON:-python3}

say() { echo "test-installed: $*"; }

# No compiler from here on.
shadow="$work/no-compilers"
rm -rf "$work"
mkdir -p "$shadow"
for tool in cc gcc g++ c++ clang clang++ nvcc; do
  printf '#!/bin/sh\necho "test-installed: %s was called: a wheel install must not compile" >&2\nexit 1\n' \
    "$tool" > "$shadow/$tool"
  chmod +x "$shadow/$tool"
done
export PATH="$shadow:$PATH"
unset CUDA_HOME CUDA_PATH
say "compilers hidden: $(command -v c++) $(command -v nvcc)"

if [ "${KEEP_VENV:-0}" = 1 ] && [ -x "$venv/bin/python" ]; then
  say "reusing $venv"
  "$venv/bin/python" -m pip uninstall -q -y vllm-moe-align-plugin || true
else
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --no-cache-dir --upgrade pip
  say "installing ${reqs[*]} and the test tools into $venv"
  "$venv/bin/python" -m pip install -q --no-cache-dir "${reqs[@]}" pytest hypothesis
fi
say "installing $(basename "$wheel")"
"$venv/bin/python" -m pip install --no-cache-dir "$wheel"

# The repository (tracked and untracked files) without the package.
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | grep -zv '^vllm_moe_align_plugin/' | xargs -0 tar cf -) | (cd "$work" && tar xf -)
cd "$work"
"$venv/bin/python" - "$venv" <<'PY'
import os
import sys

import vllm_moe_align_plugin
from vllm_moe_align_plugin import _ops

venv = os.path.realpath(sys.argv[1])
where = os.path.realpath(vllm_moe_align_plugin.__file__)
assert where.startswith(venv + os.sep), f"imported {where}, not the package installed in {venv}"
assert _ops.available(), _ops.LOAD_ERROR
print(f"test-installed: importing {where}; library {_ops.binary_path()}")
PY
"$venv/bin/vllm-moe-align" info
"$venv/bin/vllm-moe-align" verify --cases 100
# shellcheck disable=SC2086
"$venv/bin/python" -m pytest -p no:cacheprovider ${PYTEST_ARGS:--q} tests
