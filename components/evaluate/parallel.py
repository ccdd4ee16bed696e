"""Run independent pieces of an evaluation in forked worker processes.

Forked workers inherit everything already loaded (no pickling of inputs), and
only their compact results come back. Used where it pays: loading several large
JSON files at once, and matching many pairs. On a platform without ``fork``, or
with one CPU, everything runs in this process.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

logger = logging.getLogger(__name__)

T = TypeVar("T")

# read by forked workers: the tasks and the index of the next one to take
_tasks: Sequence[Callable[[], Any]] = ()
_next: Any = None


def available_cpus() -> int:
    """CPUs this process may use: its affinity, capped by a cgroup v2 CPU quota (Kubernetes limits)."""
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, int(quota) // int(period)))
    except (OSError, ValueError):
        pass
    return cpus


def run_all(
    tasks: Sequence[Callable[[], T]], workers: int, meanwhile: Callable[[], object] | None = None
) -> list[T]:
    """Results of ``tasks`` (in order), on up to ``workers`` CPUs.

    With more than one, this process and ``workers - 1`` forked ones take tasks in
    turn from a shared counter (put the longest first), after this process has run
    ``meanwhile`` (e.g. imports that only it needs). An exception in a task is raised here.
    """
    global _tasks, _next
    workers = min(workers, len(tasks))
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        results = [task() for task in tasks]
        if meanwhile is not None:
            meanwhile()
        return results
    logger.debug("running %d tasks in this process and %d forked one(s)", len(tasks), workers - 1)
    context = multiprocessing.get_context("fork")
    _tasks, _next = tasks, context.Value("i", 0)
    try:
        # an executor, not a Pool: on an error it waits for its workers instead of killing them, and
        # Pool.terminate can deadlock on a queue lock a killed worker held
        with ProcessPoolExecutor(max_workers=workers - 1, mp_context=context) as pool:
            pending = [pool.submit(_take_tasks) for _ in range(workers - 1)]
            try:
                if meanwhile is not None:
                    meanwhile()
                done = _take_tasks()
            except BaseException:
                with _next.get_lock():
                    _next.value = len(tasks)  # the workers stop after the task they are on
                raise
            for future in pending:
                done.update(future.result())
    finally:
        _tasks, _next = (), None
    return [done[i] for i in range(len(tasks))]


def _take_tasks() -> dict[int, Any]:
    """Run tasks until none is left; {task index: result}."""
    done: dict[int, Any] = {}
    while True:
        with _next.get_lock():
            index = _next.value
            _next.value += 1
        if index >= len(_tasks):
            return done
        done[index] = _tasks[index]()
