"""The stage job runner through TorchX local_cwd: the handle is recorded, a retried caller does not
train twice, a stale record (the caller died with its job) leads to one new job that resumes."""

from __future__ import annotations

import time

import pytest

from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore
from components.train.config import TrainConfig
from components.train.job import JobRecord, run_stage
from components.train.placement import Resources

pytestmark = pytest.mark.slow


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
