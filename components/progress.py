"""Progress of long steps as log lines (inside pipeline steps there is no terminal for bars)."""

from __future__ import annotations

import logging
from collections.abc import Callable


def log_progress(logger: logging.Logger, every: float = 0.1) -> Callable[[str, int, int], None]:
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
