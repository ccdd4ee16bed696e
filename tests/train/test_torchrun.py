"""The tiny model trained by real torchrun processes (gloo, 2 ranks) against a real S3 server."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from safetensors.torch import load as load_safetensors

from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore
from components.train.config import TrainConfig

pytestmark = pytest.mark.slow

LOSS = re.compile(r"step (\d+)/\d+ loss ([0-9.]+|nan|inf)")


def torchrun(cfg: TrainConfig, env: dict[str, str], log: Path, restarts: int = 0) -> subprocess.Popen[bytes]:
    """torchrun with 2 local ranks; output goes to a file (a full pipe would stall the ranks)."""
    bin_dir = Path(sys.executable).parent
    with open(log, "wb") as out:
        return subprocess.Popen(
            [
                str(bin_dir / "torchrun"),
                "--standalone",
                "--nproc-per-node",
                "2",
                "--max-restarts",
                str(restarts),
                "-m",
                "components.train.main",
                "--config-json",
                cfg.model_dump_json(),
            ],
            env={**env, "OMP_NUM_THREADS": "1"},
            stdout=out,
            stderr=subprocess.STDOUT,
        )


def test_two_ranks_train_loss_falls_and_checkpoint_commits(
    dataset: str, s3_env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    cfg = TrainConfig(
        stage="detector",
        dataset=dataset,
        run_id="ddp",
        steps=16,
        batch_size=2,
        checkpoint_every=8,
        log_every=1,
        data_workers=0,
        optim={"lr": 5e-4, "warmup_steps": 2},
    )
    log = tmp_path / "train.log"
    proc = torchrun(cfg, s3_env, log)
    proc.wait(timeout=600)
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    losses = [float(v) for _, v in LOSS.findall(err)]
    assert len(losses) == 16 and all(v == v and v < float("inf") for v in losses), err[-2000:]
    assert sum(losses[-4:]) / 4 < sum(losses[:4]) / 4, losses
    pointer = CheckpointStore(store, cfg.prefix).latest()
    assert pointer is not None and pointer.step == 16 and pointer.kept == [8, 16]
    assert err.strip().splitlines()[-1] == store.uri(pointer.key)


def kill_rank_and_resume(cfg: TrainConfig, s3_env: dict[str, str], store: ObjectStore, tmp_path: Path) -> str:
    """Run 2 ranks, SIGKILL rank 1 after the first checkpoint; torchrun restarts both, which resume."""
    ckpt = CheckpointStore(store, cfg.prefix)
    log = tmp_path / "train.log"
    proc = torchrun(cfg, s3_env, log, restarts=3)
    try:
        deadline = time.monotonic() + 400
        while (ckpt.latest() is None or ckpt.latest().step < 3) and time.monotonic() < deadline:  # type: ignore[union-attr]
            assert proc.poll() is None, log.read_text()[-3000:]
            time.sleep(0.5)
        victim = next(
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "components.train.main" in " ".join(p.cmdline()) and p.environ().get("RANK") == "1"
        )
        os.kill(victim.pid, signal.SIGKILL)
        proc.wait(timeout=600)
    finally:
        for p in psutil.Process(proc.pid).children(recursive=True) if proc.poll() is None else []:
            p.kill()
        if proc.poll() is None:
            proc.kill()
    err = log.read_text()
    assert proc.returncode == 0, err[-3000:]
    resumed = [int(s) for s in re.findall(r"resumed from step (\d+)", err)]
    assert resumed and min(resumed) >= 3, err[-3000:]
    pointer = ckpt.latest()
    assert pointer is not None and pointer.step == cfg.steps
    return err


def crash_config(stage: str, dataset: str, run_id: str, **fields: object) -> TrainConfig:
    """A short run that checkpoints every 3 steps, logs every step, and gives up on a lost peer soon."""
    common = {"batch_size": 1, "checkpoint_every": 3, "log_every": 1, "data_workers": 0, "dist_timeout_s": 45}
    fields = {"stage": stage, "dataset": dataset, "run_id": run_id, **common, **fields}
    return TrainConfig.model_validate(fields)


def test_killed_rank_is_restarted_and_resumes_from_the_last_checkpoint(
    dataset: str, s3_env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    kill_rank_and_resume(crash_config("detector", dataset, "crash", steps=14), s3_env, store, tmp_path)


@pytest.mark.parametrize("stage", ["tracker", "joint"])
def test_video_stages_survive_a_killed_rank(
    stage: str, video_dataset: str, s3_env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    """The tracker stage (clips only) and the joint stage (clips and images) resume like the image stages."""
    cfg = crash_config(
        stage, video_dataset, f"crash-{stage}", size="tiny112", steps=8, clips={"frames": 3, "max_objects": 2}
    )
    err = kill_rank_and_resume(cfg, s3_env, store, tmp_path)
    assert re.search(r"step \d+/8 loss [0-9.]+ \(.*track_dice=", err), err[-2000:]  # the tracker's terms
    weights = load_safetensors(
        store.get_bytes(store.key_of(CheckpointStore(store, cfg.prefix).latest().weights))
    )  # type: ignore[union-attr]
    assert any(k.startswith("tracker.") for k in weights) and any(k.startswith("detector.") for k in weights)


def test_pretrain_stage_resumes_after_a_killed_rank_and_hands_its_backbone_to_the_detector(
    dataset: str, s3_env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    """Stage 0 under torchrun like the others: a killed rank resumes, the learning curve records gold
    recognition at every checkpoint once (no step twice), and the detector loads exactly its backbone."""
    from components.model.builder import build_model
    from components.model.video import load_model_weights
    from components.train.checkpoint import read_weights
    from components.train.history import read_history

    cfg = crash_config(
        "pretrain", dataset, "crash-pretrain", eval_dataset=dataset, size="tiny112", steps=8, batch_size=2
    )
    err = kill_rank_and_resume(cfg, s3_env, store, tmp_path)
    assert re.search(r"step \d+/8 loss [0-9.]+ \(.*align_local=", err), err[-2000:]
    assert "gold recognition AUC" in err
    history = read_history(store, cfg.run_id, "pretrain")
    assert history is not None
    assert [s["step"] for s in history["steps"]] == list(range(1, 9))
    assert [e["step"] for e in history["evaluations"]] == [3, 6, 8]
    assert all(0 <= e["recognition_AUC"] <= 1 for e in history["evaluations"])
    pointer = CheckpointStore(store, cfg.prefix).latest()
    assert pointer is not None
    saved = load_safetensors(store.get_bytes(store.key_of(pointer.weights)))
    assert any(k.startswith("align.") for k in saved) and any(k.startswith("backbone.") for k in saved)
    detector = build_model("tiny112")
    load_model_weights(detector, read_weights(store.uri(pointer.key), store), "stage 0")
    mine = detector.state_dict()
    backbone = [k for k in saved if k.startswith("backbone.") and not k.endswith(".attn.freqs_cis")]
    assert backbone and all(mine[k].equal(saved[k]) for k in backbone)
