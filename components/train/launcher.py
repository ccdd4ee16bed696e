"""Launch a training stage as a TorchX job: local_cwd (torchrun processes) or kubernetes (Volcano).

The AppDef is TorchX's own ``dist.torchrun`` component running
``components.train.main`` with the stage's TrainConfig, plus torchrun's
``--max-restarts`` so a crashed rank is restarted and resumes from the last
checkpoint. Secrets never enter the AppDef: locally the job inherits the
environment, on Kubernetes the pods get SAM3_S3_* from a Secret.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from components.errors import ConfigError, LaunchError
from components.images import TRAINER_IMAGE
from components.train.config import TrainConfig
from components.train.placement import Cluster

log = logging.getLogger(__name__)

Scheduler = Literal["local_cwd", "kubernetes"]


@dataclass
class Topology:
    nnodes: int = 1
    nproc: int = 1
    gpus_per_node: int = 0
    cpu: int = 2
    mem_mb: int = 8192
    max_restarts: int = 3  # torchrun restarts of the worker group on a rank failure
    max_retries: int = 0  # scheduler-level retries of the whole job
    rdzv_port: int = 29500
    image: str = TRAINER_IMAGE  # a pipeline config's kubernetes.images sets it (Cluster.trainer_image)
    env: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.nnodes < 1 or self.nproc < 1:
            raise ConfigError(f"--nnodes and --nproc must be >= 1, got {self.nnodes}x{self.nproc}")
        if self.gpus_per_node and self.nproc > self.gpus_per_node:
            raise ConfigError(f"--nproc {self.nproc} exceeds the {self.gpus_per_node} GPUs per node")


APP_NAME_MAX = 36
"""TorchX appends '-<14 characters>' to make the job name and Volcano names pods '<job>-<task>-<index>':
both must stay within 63 characters (the labels carry the full run id)."""


def app_name(cfg: TrainConfig) -> str:
    return f"sam3-{cfg.stage}-{cfg.run_id}"[:APP_NAME_MAX].rstrip("-")


def stage_app(cfg: TrainConfig, topo: Topology) -> Any:
    """The AppDef the pipeline and the CLI launch for one stage."""
    import warnings

    from torchx.components.dist import torchrun

    leaked = [k for k in topo.env if k.startswith("SAM3_S3_") and "KEY" in k]
    if leaked:
        raise ConfigError(f"secrets must not be passed in the job spec: {leaked}")
    env = {"SAM3_LOG_LEVEL": "INFO", "PYTHONUNBUFFERED": "1", **topo.env}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        app = torchrun(
            "--config-json",
            cfg.model_dump_json(),
            m="components.train.main",
            name=app_name(cfg),
            image=topo.image,
            j=f"{topo.nnodes}x{topo.nproc}",
            gpu=topo.gpus_per_node,
            cpu=topo.cpu,
            memMB=topo.mem_mb,
            env=env,
            max_retries=topo.max_retries,
            rdzv_port=topo.rdzv_port,
            tee=3,
        )
    role = app.roles[0]
    shell, command = role.args
    if not command.startswith("torchrun "):
        raise LaunchError(f"unexpected torchrun command from TorchX: {command[:60]}...")
    role.args = [shell, f"torchrun --max-restarts {topo.max_restarts} " + command.removeprefix("torchrun ")]
    return app


def scheduler_cfg(scheduler: Scheduler, cluster: Cluster, *, validate_spec: bool = True) -> dict[str, Any]:
    if scheduler == "local_cwd":
        return {}
    return {
        "queue": cluster.queue,
        "namespace": cluster.namespace,
        "validate_spec": validate_spec,
        "service_account": cluster.service_account,
        "priority_class": cluster.priority_class,
    }


def local_path() -> None:
    """TorchX local_cwd runs ``torchrun`` from PATH: make it this interpreter's."""
    venv_bin = str(Path(sys.executable).parent)
    if venv_bin not in os.environ.get("PATH", "").split(os.pathsep):
        os.environ["PATH"] = venv_bin + os.pathsep + os.environ.get("PATH", "")


class NotScheduled(LaunchError):
    """The job waited longer than its schedule timeout to start (its pods were never all placed)."""

    def __init__(self, handle: str, waited_s: float) -> None:
        super().__init__(f"{handle} was not scheduled within {waited_s:.0f} s")
        self.handle = handle
        self.waited_s = waited_s


WAITING = ("UNSUBMITTED", "SUBMITTED", "PENDING")
"""TorchX app states of a job that has not started: for a Volcano job, phase Pending (its gang not placed,
or placed again after a restart)."""


def watch(
    runner: Any,
    handle: str,
    role: str,
    *,
    log_lines: Callable[[str], None] | None = None,
    poll_s: float = 2.0,
    schedule_timeout_s: float | None = None,
    clock: Callable[[], float] = time.monotonic,
) -> Any:
    """Follow a submitted job to its end, forwarding its log lines; return its final status. A job that
    stays waiting to start (``WAITING``) for longer than ``schedule_timeout_s`` at a stretch raises
    ``NotScheduled`` (the job is left as it is: the caller decides)."""
    printed = 0
    waiting_since: float | None = None
    while True:
        status = runner.status(handle)
        if log_lines is not None:
            printed = _forward_logs(runner, handle, role, printed, log_lines)
        if status is None or status.is_terminal():
            return status
        now = clock()
        if status.state.name not in WAITING:
            waiting_since = None
        elif waiting_since is None:
            waiting_since = now
        elif schedule_timeout_s is not None and now - waiting_since > schedule_timeout_s:
            raise NotScheduled(handle, now - waiting_since)
        time.sleep(poll_s)


def _forward_logs(runner: Any, handle: str, role: str, printed: int, sink: Callable[[str], None]) -> int:
    """Forward new log lines of replica 0 (the combined torchrun output) since the last call."""
    try:
        lines = list(runner.log_lines(handle, role, 0))
    except Exception:  # logs may not exist yet
        return printed
    for line in lines[printed:]:
        sink(line.rstrip("\n"))
    return len(lines)


def error_of(status: Any) -> str:
    if status is None:
        return "no status"
    for role in status.roles or []:
        for replica in role.replicas or []:
            if replica.structured_error_msg and replica.structured_error_msg != "<NONE>":
                return str(replica.structured_error_msg)[:2000]
    return str(status.msg or status.structured_error_msg or "see the job's logs")
