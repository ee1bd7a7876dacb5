"""The package's one logger: a child of vLLM's, so inside vLLM its lines go
through vLLM's handlers and format."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("vllm.moe_align_plugin")


def announce(level: int, msg: str, *args: object) -> None:
    """Logs ``msg``; where no handler is set up yet (vLLM 0.33 loads plugins in
    its main process before it configures logging, which would drop an info
    line), writes it to stderr instead, so the user sees it either way."""
    if logger.hasHandlers():
        logger.log(level, msg, *args)
    else:
        print(f"{logging.getLevelName(level)} {msg % args}", file=sys.stderr, flush=True)
