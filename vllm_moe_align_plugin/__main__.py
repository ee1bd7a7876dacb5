"""``python -m vllm_moe_align_plugin``: the ``vllm-moe-align`` command."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
