"""``python -m benchmarks.vllm_ab offline|serve [options]``: one load of the
harness (the same as ``python -m benchmarks.vllm_ab.<load>``)."""

from __future__ import annotations

import sys

LOADS = ("offline", "serve")


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in LOADS:
        print(f"usage: python -m benchmarks.vllm_ab {{{','.join(LOADS)}}} [options]  "
              "(each load's --help lists its options)", file=sys.stderr)
        return 2
    if argv[0] == "offline":
        from .offline.__main__ import main as offline_main

        return offline_main(argv[1:])
    from .serve.__main__ import main as serve_main

    return serve_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
