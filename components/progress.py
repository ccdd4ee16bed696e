"""Progress of long steps: the callback type every long step takes, and one that writes log lines (inside
pipeline steps there is no terminal for bars; the CLI draws bars, pipeline/commands/progress.py)."""

from __future__ import annotations

import logging
from collections.abc import Callable

Progress = Callable[[str, int, int], None]
"""A long step's progress callback: ``progress(stage, done, total)``."""


def log_progress(logger: logging.Logger, every: float = 0.1) -> Progress:
    """A ``progress(stage, done, total)`` callback that logs each stage at about every 10%."""
    reported: dict[str, int] = {}

    def progress(stage: str, done: int, total: int) -> None:
        step = max(1, int(total * every))
        if done == total or done - reported.get(stage, 0) >= step:
            reported[stage] = done
            logger.info("%s: %d/%d", stage, done, total)

    return progress


def step_logging() -> None:
    """Logging for a pipeline step's process: INFO and up, to stderr, with the logger's name."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
