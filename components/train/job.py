"""Run one training stage as a TorchX job that survives a retried caller.

The job's handle is recorded in ``runs/<run_id>/<stage>/job.json`` as soon as
the scheduler accepts it. When the caller (a KFP pod, a CLI) runs again for
the same stage, it finds the record and, if the job is still alive, resumes
watching it instead of submitting a second one; if the job is gone or failed,
it submits a new one, which resumes from the stage's ``latest.json``. When the
scheduler cannot be asked (no permission, unreachable, a handle it cannot
read), the caller fails, naming the job: the job may still be training into
the stage's checkpoints, and a second one must not join it. A stage whose last
checkpoint already reached its step count is not run again.

A Kubernetes job that waits to be scheduled (Volcano phase Pending: its gang is
not placed) for longer than ``Cluster.schedule_timeout_s`` fails the caller,
naming the job and what to check, and is deleted: none of its pods runs, so
nothing writes the checkpoints, and its queued pods would otherwise start
whenever room appears with no step watching them.
"""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict

from components.errors import LaunchError
from components.schemas import stage_result_key
from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore, checkpoint_config
from components.train.config import TrainConfig
from components.train.launcher import (
    NotScheduled,
    Scheduler,
    Topology,
    error_of,
    local_path,
    scheduler_cfg,
    stage_app,
    watch,
)
from components.train.placement import Cluster, Resources, patch_job

log = logging.getLogger(__name__)


class JobRecord(BaseModel):
    model_config = ConfigDict(extra="forbid")

    handle: str
    scheduler: str
    submitted_at: float
    attempts: int = 1
    state: str = "SUBMITTED"
    finished_at: float | None = None
    error: str | None = None


class StageResult(BaseModel):
    model_config = ConfigDict(extra="forbid")

    stage: str
    run_id: str
    checkpoint: str  # s3:// URI of the final step folder
    steps: int
    seconds: float  # wall time of the job(s) that trained it (0 when nothing had to run)
    handle: str | None


def topology(resources: Resources, scheduler: Scheduler, *, max_restarts: int, image: str) -> Topology:
    """The torchrun layout; a local job gets a free rendezvous port (concurrent local jobs need their own)."""
    return Topology(
        nnodes=resources.nnodes,
        nproc=resources.nproc,
        gpus_per_node=resources.gpus,
        cpu=resources.cpu,
        mem_mb=resources.memory_gb * 1024,
        max_restarts=max_restarts,
        rdzv_port=_free_port() if scheduler == "local_cwd" else 29500,
        image=image,
    )


def run_stage(
    cfg: TrainConfig,
    resources: Resources,
    scheduler: Scheduler,
    store: ObjectStore,
    *,
    cluster: Cluster | None = None,
    max_restarts: int = 3,
    log_lines: Callable[[str], None] | None = None,
    poll_s: float = 2.0,
) -> StageResult:
    """Train the stage to ``cfg.steps`` (or find it trained); return its final checkpoint."""
    ckpt = CheckpointStore(store, cfg.prefix, keep=cfg.keep_checkpoints)
    record_key = f"{cfg.prefix}/job.json"
    result_key = stage_result_key(cfg.run_id, cfg.stage)
    done = ckpt.latest()
    if done is not None:
        _check_same_start(cfg, store, done.key)
    if done is not None and done.step >= cfg.steps:
        log.info("%s stage already trained to step %d: %s", cfg.stage, done.step, store.uri(done.key))
        if store.exists(result_key):
            return StageResult.model_validate(store.get_json(result_key))
        return StageResult(
            stage=cfg.stage,
            run_id=cfg.run_id,
            checkpoint=store.uri(done.key),
            steps=done.step,
            seconds=0.0,
            handle=None,
        )
    cluster = cluster or Cluster()
    if scheduler == "local_cwd":
        local_path()
    from torchx.runner import get_runner
    from torchx.specs import AppState

    topo = topology(resources, scheduler, max_restarts=max_restarts, image=cluster.trainer_image)
    app = stage_app(cfg, topo)
    role = app.roles[0].name
    started = time.time()
    with get_runner() as runner:
        record = _alive(runner, store, record_key, cfg.stage)
        if record is None:
            previous = _read(store, record_key)
            handle = runner.schedule(
                _request(runner, app, cfg, resources, scheduler, cluster, max_restarts=max_restarts)
            )
            record = JobRecord(
                handle=str(handle),
                scheduler=scheduler,
                submitted_at=time.time(),
                attempts=(previous.attempts + 1) if previous else 1,
            )
            store.put_json(record_key, record)  # at once: a retried caller must find it
            log.info("submitted %s (attempt %d)", handle, record.attempts)
        else:
            log.info("resuming to watch %s, submitted earlier", record.handle)
        try:
            status = watch(
                runner,
                record.handle,
                role,
                log_lines=log_lines,
                poll_s=poll_s,
                schedule_timeout_s=cluster.schedule_timeout_s if scheduler == "kubernetes" else None,
            )
        except NotScheduled as late:
            raise _not_scheduled(runner, store, record_key, record, cfg.stage, cluster, late) from None
        record.state = status.state.name if status else "UNKNOWN"
        record.finished_at = time.time()
        ok = status is not None and status.state == AppState.SUCCEEDED
        record.error = None if ok else error_of(status)
        store.put_json(record_key, record)
        if not ok:
            raise LaunchError(
                f"{cfg.stage} training job {record.handle} ended {record.state}: {record.error}"
            )
    final = ckpt.latest()
    if final is None or final.step < cfg.steps:
        reached = final.step if final else 0
        raise LaunchError(
            f"{record.handle} succeeded but the last checkpoint is step {reached} of {cfg.steps}"
        )
    result = StageResult(
        stage=cfg.stage,
        run_id=cfg.run_id,
        checkpoint=store.uri(final.key),
        steps=final.step,
        seconds=round(time.time() - started, 1),
        handle=record.handle,
    )
    store.put_json(result_key, result)
    return result


def _check_same_start(cfg: TrainConfig, store: ObjectStore, step_key: str) -> None:
    """A stage's checkpoints are reused or resumed only when they started where this stage starts: a
    base alias that moved to another version resolves to other weights under the same run id (a cluster
    run reads the alias when it starts; `run` pins it into the run id instead)."""
    saved = checkpoint_config(store.uri(step_key), store)
    if saved is None or saved.get("init") == cfg.init:
        return
    raise LaunchError(
        f"{cfg.stage} stage: the checkpoints under {store.uri(cfg.prefix)} started from {saved.get('init')}, "
        f"this run starts it from {cfg.init}: the base moved under the same run id. Pin the base to a "
        "version (MODEL@VERSION) or set run_id for this run"
    )


def _not_scheduled(
    runner: Any,
    store: ObjectStore,
    key: str,
    record: JobRecord,
    stage: str,
    cluster: Cluster,
    late: NotScheduled,
) -> LaunchError:
    """The error for a job that was never scheduled, after deleting it and recording its end. No pod of it
    runs (it waited for all of them to be placed), so nothing writes the stage's checkpoints and deleting
    it is safe; its queued pods would otherwise start whenever room appears, with no step watching."""
    try:
        runner.delete(record.handle)
        fate = "it was deleted"
    except Exception as exc:  # no permission, an unreachable API: say so, the step fails either way
        fate = f"it could not be deleted ({_reason(exc)}): delete it by hand"
    record.state = "NOT_SCHEDULED"
    record.finished_at = time.time()
    record.error = f"not scheduled within {late.waited_s:.0f} s (kubernetes.schedule_timeout_s)"
    store.put_json(key, record)
    return LaunchError(
        f"{stage} training job {record.handle} stayed Pending for {late.waited_s:.0f} s "
        f"(kubernetes.schedule_timeout_s {cluster.schedule_timeout_s:.0f}): its pods were never all placed, "
        f"and {fate}. Check the Volcano queue {cluster.queue!r} (its capacity and the jobs ahead of it: "
        f"kubectl get queue {cluster.queue} -o yaml; kubectl get podgroups -n {cluster.namespace}), that "
        "nodes have the stage's GPUs, CPU and memory free and match its node selector and tolerations, "
        f"and the job's events (kubectl describe vcjob -n {cluster.namespace})"
    )


def _read(store: ObjectStore, key: str) -> JobRecord | None:
    return JobRecord.model_validate(store.get_json(key)) if store.exists(key) else None


def _alive(runner: Any, store: ObjectStore, key: str, stage: str) -> JobRecord | None:
    """The recorded job, when the scheduler still knows it and it has not ended; None when there is no
    record, the job ended, or the scheduler says it does not exist (kubernetes: HTTP 404).

    Any other failure to ask raises: the job may still be running, and a second job would train into the
    same checkpoints beside it."""
    record = _read(store, key)
    if record is None or record.finished_at is not None:
        return None
    try:
        status = runner.status(record.handle)
    except Exception as exc:  # no permission, a scheduler that cannot be reached, an unparsable handle
        hint = (
            " (the pipeline's service account lacks a permission: manifests/base/rbac.yaml)"
            if getattr(exc, "status", None) == 403
            else ""
        )
        raise LaunchError(
            f"cannot check the {stage} training job {record.handle}, submitted earlier and recorded in "
            f"{store.uri(key)}: {_reason(exc)}. It may still be training, so no second job is submitted "
            f"beside it: fix the cause{hint} and retry, or delete the job and the record to start anew"
        ) from exc
    if status is None or status.is_terminal():
        return None  # local_cwd forgets jobs of another process; a failed job is resubmitted
    return record


def _reason(exc: Exception) -> str:
    """One line for a failed status call; a Kubernetes ApiException gives its status, reason and message."""
    status, reason = getattr(exc, "status", None), getattr(exc, "reason", None)
    if status is None:
        return f"{type(exc).__name__}: {exc}".splitlines()[0]
    message = ""
    with contextlib.suppress(ValueError, TypeError, AttributeError):  # a body that is no Status object
        message = str(json.loads(getattr(exc, "body", None) or "{}").get("message", ""))
    return f"HTTP {status} {reason or ''}".rstrip() + (f": {message}" if message else "")


def _request(
    runner: Any,
    app: Any,
    cfg: TrainConfig,
    resources: Resources,
    scheduler: Scheduler,
    cluster: Cluster,
    *,
    max_restarts: int,
    validate_spec: bool = True,
) -> Any:
    info = runner.dryrun(app, scheduler, cfg=scheduler_cfg(scheduler, cluster, validate_spec=validate_spec))
    if scheduler == "kubernetes":
        labels = {"sam3.dev/run-id": cfg.run_id, "sam3.dev/stage": cfg.stage}
        patch_job(info.request.resource, resources, cluster, labels, max_restarts=max_restarts)
    return info


def dryrun(
    cfg: TrainConfig,
    resources: Resources,
    scheduler: Scheduler,
    *,
    cluster: Cluster | None = None,
    max_restarts: int = 3,
) -> str:
    """The request the scheduler would get, as text (for kubernetes: the patched Volcano Job YAML)."""
    from torchx.runner import get_runner

    cluster = cluster or Cluster()
    topo = topology(resources, scheduler, max_restarts=max_restarts, image=cluster.trainer_image)
    app = stage_app(cfg, topo)
    with get_runner() as runner:
        request = _request(
            runner, app, cfg, resources, scheduler, cluster, max_restarts=max_restarts, validate_spec=False
        )
        return str(request)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
