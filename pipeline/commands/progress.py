"""Progress bars on stderr for long CLI work (stdout stays for results)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, TaskID, TextColumn, TimeRemainingColumn
from rich.progress import Progress as Bars

from components.progress import Progress

stderr = Console(stderr=True)


@contextmanager
def progress_bars() -> Iterator[Progress]:
    """Yield a ``(stage, done, total)`` callback that drives one bar per stage."""
    bars = Bars(
        TextColumn("{task.description:>12}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=stderr,
        transient=False,
        disable=not stderr.is_terminal,
    )
    tasks: dict[str, TaskID] = {}
    last_logged: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bars.add_task(stage, total=total)
        bars.update(tasks[stage], completed=done, total=total)
        if not stderr.is_terminal:  # plain lines in logs: every 10%
            step = max(1, total // 10)
            if done == total or done - last_logged.get(stage, -step) >= step:
                last_logged[stage] = done
                print(f"{stage}: {done}/{total}", file=stderr.file, flush=True)

    with bars:
        yield update
