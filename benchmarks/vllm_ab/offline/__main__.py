"""``python -m benchmarks.vllm_ab.offline [options]``: the offline load (``driver``).

``--child SPEC`` runs one run's child instead (``child``); it imports nothing
but the child's own modules, so a baseline run's processes never load the
plugin's package."""

from __future__ import annotations

import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    if argv[:1] == ["--child"]:
        if len(argv) != 2:
            raise SystemExit("usage: python -m benchmarks.vllm_ab.offline --child SPEC.json")
        from .child import main as child_main

        return child_main(Path(argv[1]))
    from .driver import main as offline_main

    return offline_main(argv)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
