#!/usr/bin/env bash
# Fetches the compiled moe_align_block_size of vLLM and SGLang from their
# official PyPI wheels into .refs/ (ignored by git), for GPU machines without
# network or without vLLM. Run it on a machine with PyPI access.
#
#   .refs/vllm-0.26.0/_moe_C_stable_libtorch.abi3.so   torch.ops._moe_C (torch >= 2.11)
#   .refs/sglang-kernel-0.4.5/common_ops.abi3.so        torch.ops.sgl_kernel (torch == 2.11.0, sm90)
#
# Both compress well with xz (about 40 and 12 MB) for copying to such a machine;
# the benchmark and the differential test take their paths from
# VLLM_MOE_ALIGN_VLLM_OP_SO and VLLM_MOE_ALIGN_SGLANG_SO.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
dl=$(mktemp -d)
trap 'rm -rf "$dl"' EXIT

fetch() {  # fetch NAME==VERSION MEMBER DEST_DIR
  local spec=$1 member=$2 dest=$3
  if [ -f "$dest/$(basename "$member")" ]; then echo "have $dest/$(basename "$member")"; return; fi
  mkdir -p "$dest"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_31_x86_64 \
    --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 -d "$dl" "$spec"
  unzip -o -j -q "$dl"/*.whl "$member" -d "$dest"
  rm -f "$dl"/*.whl
  echo "fetched $dest/$(basename "$member") ($(du -h "$dest/$(basename "$member")" | cut -f1))"
}

fetch vllm==0.26.0 vllm/_moe_C_stable_libtorch.abi3.so .refs/vllm-0.26.0
fetch sglang-kernel==0.4.5 sgl_kernel/sm90/common_ops.abi3.so .refs/sglang-kernel-0.4.5
