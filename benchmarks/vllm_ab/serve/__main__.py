"""``python -m benchmarks.vllm_ab.serve``: every requested model's A/B run, one after
the other; exit status 1 when a check failed or a run did not finish
(``--dry-run``: print each model's plan and commands, run nothing)."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Optional

from benchmarks.vllm_ab import environment

from . import options
from .driver import ModelRun


def main(argv: Optional[list[str]] = None) -> int:
    args = options.parse_args(argv)
    environment.kill_groups_on_sigterm()
    work = args.work or Path(tempfile.mkdtemp(prefix="serve_ab_"))
    failed: dict[str, list[str]] = {}
    for model in args.model:
        run = ModelRun(args, model, work)
        if args.dry_run:
            print("\n".join(run.plan()))
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        problems = run.run()
        print(f"\n{model}: written {run.stem}.md, .csv, .png; logs in {run.log_dir}")
        if problems:
            failed[model] = problems
    if args.dry_run:
        return 0
    if failed:
        print("\nFAILED:")
        for model, problems in failed.items():
            print("  " + "\n  ".join(f"{model}: {p}" for p in problems))
        return 1
    print("\nOK: every round finished, greedy tokens identical, the same compiled graph on every "
          "server, plugin line in every process of every plugin server and in none of the "
          "baseline's")
    return 0


if __name__ == "__main__":
    sys.exit(main())
