#!/usr/bin/env bash
# Unpacks the vLLM bundle parts (made by benchmarks/e2e_bundle.sh) on a GPU
# machine without network.
#
#   benchmarks/e2e_unpack.sh PARTS_DIR DEST
#
# Unpacks every part-NN.tar.xz found in PARTS_DIR into DEST (a
# site-packages-style tree: put it on PYTHONPATH). Idempotent: a marker per
# part (DEST/.e2e-bundle/part-NN.tar.xz.done, holding the part's sha256) skips
# parts already unpacked, so one run per carried part works:
#   run 1 carries .e2e/parts/part-00.tar.xz -> unpack -> 1 of N parts
#   run 2 carries .e2e/parts/part-01.tar.xz -> unpack -> 2 of N parts ...
# Prints how many of the bundle's parts are in DEST; exit status 0 even when
# some are still missing (benchmarks/e2e_bundle.py status DEST says 0/1).
# Needs only python3 (tarfile, lzma); no tar or xz binary.
set -euo pipefail

if [ $# -ne 2 ]; then
  echo "usage: $0 PARTS_DIR DEST" >&2
  exit 2
fi
PARTS_DIR="$1"
DEST="$2"
TOOL="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/e2e_bundle.py"
PYTHON="${PYTHON:-python3}"

if ! compgen -G "$PARTS_DIR/part-*.tar.xz" > /dev/null; then
  echo "no part-*.tar.xz in $PARTS_DIR (carry one: .e2e/parts/part-NN.tar.xz)" >&2
  "$PYTHON" "$TOOL" status "$DEST" || true
  exit 1
fi
ls -l "$PARTS_DIR"/part-*.tar.xz
"$PYTHON" "$TOOL" unpack "$PARTS_DIR" "$DEST"
du -sh "$DEST" 2>/dev/null || true
