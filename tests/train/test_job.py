"""The stage job runner: through TorchX local_cwd, the handle is recorded, a retried caller does not
train twice, a stale record (the caller died with its job) leads to one new job that resumes; through
TorchX's kubernetes scheduler (a fake Kubernetes API client), a recorded job whose status cannot be read
fails the caller instead of getting a second job beside it, and a job that is never scheduled fails the
caller after the schedule timeout and is deleted."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from components.errors import LaunchError
from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore
from components.train.config import TrainConfig
from components.train.job import JobRecord, run_stage
from components.train.launcher import NotScheduled, watch
from components.train.placement import Cluster, Resources


@pytest.mark.slow
def test_retried_caller_resubmits_once_and_resumes(
    dataset: str, store: ObjectStore, s3_env: dict[str, str]
) -> None:
    cfg = TrainConfig(
        stage="detector",
        dataset=dataset,
        run_id="retry",
        steps=4,
        batch_size=1,
        checkpoint_every=2,
        data_workers=0,
    )
    ckpt = CheckpointStore(store, cfg.prefix)
    # the first caller trained to step 2, then died with its job: its record never got a final state
    short = cfg.model_copy(update={"steps": 2})
    lines: list[str] = []
    first = run_stage(short, Resources(), "local_cwd", store, log_lines=lines.append, poll_s=0.5)
    assert first.steps == 2 and any("step 2/2" in line for line in lines)
    stale = JobRecord(
        handle="local_cwd://torchx/sam3-detector-retry-gone", scheduler="local_cwd", submitted_at=time.time()
    )
    store.put_json(f"{cfg.prefix}/job.json", stale)

    lines.clear()
    result = run_stage(cfg, Resources(), "local_cwd", store, log_lines=lines.append, poll_s=0.5)
    record = JobRecord.model_validate(store.get_json(f"{cfg.prefix}/job.json"))
    assert record.attempts == 2 and record.state == "SUCCEEDED" and record.handle != stale.handle
    assert any("resumed from step 2" in line for line in lines), "\n".join(lines[-30:])
    assert result.steps == 4 and result.checkpoint == store.uri(ckpt.step_key(4))

    again = run_stage(
        cfg, Resources(), "local_cwd", store
    )  # a third call: already trained, nothing submitted
    assert again == result
    assert JobRecord.model_validate(store.get_json(f"{cfg.prefix}/job.json")).attempts == 2


# -- kubernetes: the recorded job's status cannot be read ----------------------------------------------


class FakeVolcano:
    """Stands in for kubernetes.client.CustomObjectsApi: Volcano jobs by name, a status read that fails
    with ``status_error`` (an HTTP status) when set, and a hook run when a job is created."""

    def __init__(
        self,
        status_error: int | None,
        on_create: Any = None,
        phase: str = "Completed",
        delete_error: int | None = None,
    ) -> None:
        self.status_error = status_error
        self.on_create = on_create
        self.phase = phase  # the Volcano phase every created job reports
        self.delete_error = delete_error
        self.created: list[str] = []  # names of the jobs created (dry runs excluded)
        self.status_reads: list[str] = []
        self.deleted: list[str] = []

    def __call__(self, api_client: Any = None) -> FakeVolcano:  # the CustomObjectsApi(client) call
        return self

    def create_namespaced_custom_object(
        self,
        group: str,
        version: str,
        namespace: str,
        plural: str,
        body: dict[str, Any],
        dry_run: str | None = None,
    ) -> dict[str, Any]:
        assert (group, plural) == ("batch.volcano.sh", "jobs")
        if dry_run is None:
            self.created.append(body["metadata"]["name"])
            if self.on_create is not None:
                self.on_create()
        return body

    def get_namespaced_custom_object_status(
        self, group: str, version: str, namespace: str, plural: str, name: str
    ) -> dict[str, Any]:
        from kubernetes.client.rest import ApiException

        self.status_reads.append(name)
        if name not in self.created and self.status_error is not None:
            error = ApiException(status=self.status_error, reason=_REASONS[self.status_error])
            error.body = json.dumps({"kind": "Status", "message": _MESSAGES[self.status_error].format(name)})
            raise error
        return {"status": {"state": {"phase": self.phase}}}

    def delete_namespaced_custom_object(
        self, group: str, version: str, namespace: str, plural: str, name: str, **_: Any
    ) -> Any:
        from kubernetes.client.rest import ApiException

        if self.delete_error is not None:
            raise ApiException(status=self.delete_error, reason=_REASONS[self.delete_error])
        self.deleted.append(name)
        self.created.remove(name)
        return {}


_REASONS = {403: "Forbidden", 404: "Not Found", 500: "Internal Server Error"}
_MESSAGES = {
    403: 'jobs.batch.volcano.sh "{}" is forbidden: User "system:serviceaccount:sam3:sam3-pipeline" '
    'cannot get resource "jobs/status" in API group "batch.volcano.sh" in the namespace "sam3"',
    404: 'jobs.batch.volcano.sh "{}" not found',
    500: "etcdserver: request timed out",
}


def _kubernetes(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, fake: FakeVolcano) -> None:
    """TorchX's kubernetes scheduler, as shipped, on a kubeconfig that points nowhere and the fake API."""
    kubeconfig = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "c", "cluster": {"server": "https://127.0.0.1:9"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": "u", "namespace": "sam3"}}],
        "current-context": "x",
    }
    (tmp_path / "kubeconfig").write_text(json.dumps(kubeconfig))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "kubeconfig"))
    monkeypatch.setattr("kubernetes.client.CustomObjectsApi", fake)


def _recorded(store: ObjectStore, cfg: TrainConfig, name: str) -> JobRecord:
    """An earlier caller's record of a job it submitted, whose end it never saw."""
    record = JobRecord(handle=f"kubernetes://torchx/sam3:{name}", scheduler="kubernetes", submitted_at=1.0)
    store.put_json(f"{cfg.prefix}/job.json", record)
    return record


def _cfg(run_id: str) -> TrainConfig:
    return TrainConfig(stage="detector", dataset="s3://sam3/datasets/d/1", run_id=run_id, steps=4)


@pytest.mark.parametrize("error", [403, 500])
def test_an_unreadable_status_fails_the_caller_and_submits_nothing(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, error: int
) -> None:
    """A 403 (the Role lacked jobs/status) or a server error while checking the recorded job: the job may
    still be training into the stage's checkpoints, so the caller fails naming it, and submits nothing."""
    cfg = _cfg(f"denied{error}")
    fake = FakeVolcano(status_error=error)
    _kubernetes(monkeypatch, tmp_path, fake)
    record = _recorded(store, cfg, "sam3-detector-running-abc")
    with pytest.raises(LaunchError) as caught:
        run_stage(cfg, Resources(), "kubernetes", store, poll_s=0.01)
    message = str(caught.value)
    assert fake.status_reads == ["sam3-detector-running-abc"] and fake.created == []
    assert record.handle in message and store.uri(f"{cfg.prefix}/job.json") in message
    assert f"HTTP {error} {_REASONS[error]}" in message and "no second job is submitted" in message
    if error == 403:
        assert 'cannot get resource "jobs/status"' in message and "manifests/base/rbac.yaml" in message
    assert "\n" not in message  # one line, as the entry points print it
    assert JobRecord.model_validate(store.get_json(f"{cfg.prefix}/job.json")) == record  # untouched


def test_a_job_the_api_does_not_know_is_submitted_anew(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """HTTP 404 for the recorded job: it is gone, so one new job is submitted (and trains the stage)."""
    cfg = _cfg("gone")
    ckpt = CheckpointStore(store, cfg.prefix)
    fake = FakeVolcano(status_error=404, on_create=lambda: ckpt.save(cfg.steps, {"w": torch.ones(2)}, {}))
    _kubernetes(monkeypatch, tmp_path, fake)
    _recorded(store, cfg, "sam3-detector-gone-abc")
    result = run_stage(cfg, Resources(), "kubernetes", store, poll_s=0.01)
    (name,) = fake.created
    record = JobRecord.model_validate(store.get_json(f"{cfg.prefix}/job.json"))
    assert record.handle == f"kubernetes://torchx/sam3:{name}" and record.attempts == 2
    assert record.state == "SUCCEEDED" and result.steps == cfg.steps


# -- kubernetes: a job that is never scheduled -------------------------------------------------------


@pytest.mark.parametrize("delete_error", [None, 403])
def test_a_job_never_scheduled_fails_the_step_and_is_deleted(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, delete_error: int | None
) -> None:
    """The gang stays Pending (no room in the queue, no matching node): after kubernetes.schedule_timeout_s
    the step fails, naming the job and what to check, and the job is deleted (none of its pods runs)."""
    cfg = _cfg(f"pending{delete_error or ''}")
    fake = FakeVolcano(status_error=404, phase="Pending", delete_error=delete_error)
    _kubernetes(monkeypatch, tmp_path, fake)
    cluster = Cluster(schedule_timeout_s=0.05)
    with pytest.raises(LaunchError) as caught:
        run_stage(cfg, Resources(), "kubernetes", store, cluster=cluster, poll_s=0.01)
    message = str(caught.value)
    record = JobRecord.model_validate(store.get_json(f"{cfg.prefix}/job.json"))
    assert record.handle in message and "stayed Pending" in message and "schedule_timeout_s" in message
    assert "Volcano queue 'sam3'" in message and "node selector" in message and "\n" not in message
    assert record.state == "NOT_SCHEDULED" and record.finished_at is not None
    if delete_error is None:
        assert fake.deleted == [record.handle.rsplit(":", 1)[1]] and "it was deleted" in message
    else:
        assert fake.deleted == [] and "HTTP 403 Forbidden" in message and "delete it by hand" in message
    # a retried step does not watch the deleted job: it submits a new one
    fake.phase, fake.delete_error = "Completed", None
    ckpt = CheckpointStore(store, cfg.prefix)
    fake.on_create = lambda: ckpt.save(cfg.steps, {"w": torch.ones(2)}, {})
    assert run_stage(cfg, Resources(), "kubernetes", store, cluster=cluster, poll_s=0.01).steps == cfg.steps
    assert JobRecord.model_validate(store.get_json(f"{cfg.prefix}/job.json")).attempts == 2


class _Runner:
    """A TorchX runner that reports the states given, one per status call (the last one repeated)."""

    def __init__(self, states: list[str]) -> None:
        self.states = states

    def status(self, handle: str) -> Any:
        from torchx.specs import AppState, AppStatus

        state = self.states.pop(0) if len(self.states) > 1 else self.states[0]
        return AppStatus(state=AppState[state])


def test_the_schedule_timeout_counts_an_unbroken_wait_to_start() -> None:
    """Waiting counts from when the job is first seen waiting, and starts again after it has run (a
    Volcano job that restarts is Pending again while its pods are placed anew)."""
    ticks = iter(range(100))
    clock = lambda: float(next(ticks))  # noqa: E731 one second per status call
    states = ["SUBMITTED", "PENDING", "PENDING", "RUNNING", "PENDING", "PENDING", "PENDING", "SUCCEEDED"]
    status = watch(_Runner(states), "h", "r", poll_s=0, schedule_timeout_s=2.5, clock=clock)
    assert status.state.name == "SUCCEEDED"
    with pytest.raises(NotScheduled) as caught:
        watch(
            _Runner(["PENDING"]),
            "kubernetes://torchx/sam3:j",
            "r",
            poll_s=0,
            schedule_timeout_s=2.5,
            clock=clock,
        )
    assert caught.value.handle == "kubernetes://torchx/sam3:j" and caught.value.waited_s == 3
    assert (
        watch(_Runner(["PENDING"] * 50 + ["FAILED"]), "h", "r", poll_s=0, clock=clock).state.name == "FAILED"
    )
