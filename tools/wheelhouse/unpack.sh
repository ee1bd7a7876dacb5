#!/usr/bin/env bash
# Unpacks a wheelhouse's parts on the machine without network.
#
#   tools/wheelhouse/unpack.sh [--install] PARTS_DIR DEST [-- PIP_ARGS...]
#
# Unpacks every part-NN.tar.xz found in PARTS_DIR into DEST. Idempotent: a
# marker per part (DEST/.wheelhouse-parts/part-NN.tar.xz.done, holding the
# part's sha256) skips parts already unpacked, so the parts may arrive one at a
# time, e.g. one per copy to the machine, each followed by this script. Prints
# how many of the wheelhouse's parts DEST holds; exit status 0 even when some
# are still missing (`python3 -m tools.wheelhouse status DEST` says 0 or 1).
#
# A tree-mode wheelhouse (the default) is used as it is: put DEST on PYTHONPATH
# (tools/wheelhouse/run.sh --site DEST does). A wheels-mode one is installed
# with --install, once every part is there: pip install --no-index
# --find-links DEST <its requirements> into PYTHON's environment (PIP_ARGS,
# e.g. --user or --target DIR, are passed on).
#
# Needs only python3 (tarfile, lzma); no tar or xz binary. PYTHON: the
# interpreter (default python3).
set -euo pipefail

usage() { sed -n '2,/^set /p' "$0" | sed -e 's/^# \{0,1\}//' -e '/^set /d' >&2; exit "${1:-2}"; }
INSTALL=0
if [ "${1:-}" = "-h" ] || [ "${1:-}" = "--help" ]; then usage 0; fi
if [ "${1:-}" = "--install" ]; then INSTALL=1; shift; fi
[ $# -ge 2 ] || usage
PARTS_DIR="$1"
DEST="$2"
shift 2
if [ "${1:-}" = "--" ]; then shift; fi
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
PYTHON="${PYTHON:-python3}"
wheelhouse() { PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" "$PYTHON" -m tools.wheelhouse "$@"; }

if compgen -G "$PARTS_DIR/part-*.tar.xz" > /dev/null; then
  ls -l "$PARTS_DIR"/part-*.tar.xz
  wheelhouse unpack "$PARTS_DIR" "$DEST"
  du -sh "$DEST" 2>/dev/null || true
else
  echo "no part-*.tar.xz in $PARTS_DIR" >&2
  wheelhouse status "$DEST" || true
  [ "$INSTALL" = 1 ] || exit 1
fi
if [ "$INSTALL" = 1 ]; then
  wheelhouse install --python "$PYTHON" "$DEST" -- "$@"
fi
