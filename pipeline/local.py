"""Run the pipeline on this machine with kfp's local runner (components as subprocesses of this Python).

Steps inherit this process's environment, so the object store settings are
exported here; TorchX local_cwd then starts real torchrun processes. Everything
kfp prints (on stdout) goes to the run's log file; stderr gets the progress:
steps starting and ending, the steps' own log lines, the trainer's step lines,
warnings and errors. stdout stays for the command's result.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import re
import sys
import time
from pathlib import Path
from typing import TextIO

from components.errors import LaunchError
from components.report.outcome import Outcome
from components.schemas import executions_prefix
from components.storage import ObjectStore
from pipeline.config import PipelineConfig
from pipeline.dag import build_pipeline

log = logging.getLogger(__name__)


def run_local(cfg: PipelineConfig, store: ObjectStore, workdir: Path) -> Outcome:
    """Run the whole DAG; return this execution's outcome (as recorded by the exit handler)."""
    from kfp import local

    os.environ.update(store.settings.env())
    workdir.mkdir(parents=True, exist_ok=True)
    local.init(
        runner=local.SubprocessRunner(use_venv=False),
        pipeline_root=str(workdir / "outputs"),
        workspace_root=str(workdir / "workspace"),
        raise_on_error=False,  # a failed step still runs the exit handler; the outcome says what happened
    )
    pipeline = build_pipeline(cfg, target="local")
    started = time.time()
    log_path = workdir / "logs" / f"{cfg.effective_run_id()}-{time.strftime('%Y%m%d-%H%M%S')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    print(f"full log: {log_path}", file=sys.stderr)
    with log_path.open("w") as full, contextlib.redirect_stdout(ConsoleFilter(full, sys.stderr)):
        pipeline()
    outcome = latest_outcome(store, cfg.effective_run_id(), since=started)
    if outcome is None:
        raise LaunchError(f"the pipeline ended without recording an outcome; see the log above ({workdir})")
    return outcome


def latest_outcome(store: ObjectStore, run_id: str, since: float = 0.0) -> Outcome | None:
    """The newest outcome recorded for ``run_id`` after ``since`` (epoch seconds)."""
    found = [
        Outcome.model_validate(store.get_json(key))
        for key, _ in store.list_objects(executions_prefix(run_id))
        if key.endswith("/outcome.json")
    ]
    fresh = [o for o in found if o.finished_at >= since]
    return max(fresh, key=lambda o: o.finished_at) if fresh else None


class ConsoleFilter(io.TextIOBase):
    """A stdout for kfp.local: every line to the log file, the lines that tell progress to the console."""

    SHOWN = re.compile(
        r"Executing task|finished with status|Skipping|Running pipeline|Pipeline .* finished"
        r"|\[KFP Executor [^]]*\]: (?!Got executor_input|Wrote executor|Looking for component|Loading KFP)"
        r"|\] components\.|Traceback|Error\b"
    )

    def __init__(self, full: TextIO, console: TextIO) -> None:
        self.full, self.console, self.pending = full, console, ""

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        self.full.write(text)
        self.pending += text
        *lines, self.pending = self.pending.split("\n")
        for line in lines:
            if self.SHOWN.search(line):
                self.console.write(line.strip() + "\n")
        return len(text)

    def flush(self) -> None:
        self.full.flush()
        self.console.flush()
