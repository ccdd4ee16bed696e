"""`sam3-pipeline run` end to end on a small config: real kfp local runner, SeaweedFS, torchrun.

The runs share one bucket and one run id (gates are not part of what is
trained), so the later runs reuse the trained stages and only re-gate them.
Together they take every branch of the gates: all pass (promoted, with a rank
killed mid-training), pretrain fails, detector fails, presence fails, joint fails.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
import yaml

from components.embedded_store import EmbeddedStore
from components.promote.registry import Registry
from components.storage import ObjectStore, S3Settings
from components.train.checkpoint import CheckpointStore
from pipeline.config import PipelineConfig
from tests.conftest import drop_bucket

pytestmark = pytest.mark.slow

SMALL = {
    "name": "smoke",
    "data": {
        "dataset": "smoke",
        "synthetic": {
            "images": 24,
            "gold_images": 12,
            "videos": 2,
            "gold_videos": 1,
            "frames": 3,
            "size": 112,
        },
        "negatives_per_image": 5,
        "partitions": 2,
    },
    "pretrain": {
        "size": "tiny112",
        "steps": 4,
        "batch_size": 2,
        "checkpoint_every": 2,
        "train": {"data_workers": 0},
    },
    "detector": {
        "size": "tiny112",
        "steps": 8,
        "batch_size": 1,
        "checkpoint_every": 2,
        "train": {"log_every": 1, "data_workers": 0, "dist_timeout_s": 60},
        "resources": {"nproc": 2},
    },
    "presence": {
        "size": "tiny112",
        "steps": 2,
        "batch_size": 1,
        "checkpoint_every": 2,
        "train": {"data_workers": 0},
    },
    "tracker": {
        "size": "tiny112",
        "steps": 2,
        "batch_size": 1,
        "checkpoint_every": 2,
        "train": {"data_workers": 0, "clips": {"frames": 3}},
    },
    "joint": {
        "size": "tiny112",
        "steps": 2,
        "batch_size": 1,
        "checkpoint_every": 2,
        "train": {"data_workers": 0, "clips": {"frames": 3}},
        "gate": {"baseline_stage": "presence", "max_stage_regression": 100.0},
    },
    "registry": {"model": "smoke", "alias": "production"},
}


@pytest.fixture(scope="module")
def env(s3_server: EmbeddedStore, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    state = s3_server.state()
    assert state is not None
    settings = state.settings().model_copy(update={"bucket": "p" + uuid.uuid4().hex[:12]})
    ObjectStore(settings).ensure_bucket()
    home = tmp_path_factory.mktemp("home")
    yield {**os.environ, **settings.env(), "SAM3_HOME": str(home)}
    drop_bucket(ObjectStore(settings))


@pytest.fixture(scope="module")
def store(env: dict[str, str]) -> ObjectStore:
    return ObjectStore(S3Settings.from_env(env))


def run(config: dict, env: dict[str, str], tmp_path: Path, on_start=None) -> tuple[int, str, str]:  # type: ignore[no-untyped-def, type-arg]
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(config))
    out, err = tmp_path / "out.txt", tmp_path / "err.txt"
    with out.open("wb") as o, err.open("wb") as e:  # files, not pipes: a full pipe would block the ranks
        proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline", "run", "--config", str(path)], stdout=o, stderr=e, env=env
        )
        watcher = threading.Thread(target=on_start, args=(proc,), daemon=True) if on_start else None
        if watcher:
            watcher.start()
        try:
            proc.wait(timeout=900)
        finally:
            if proc.poll() is None:
                for child in psutil.Process(proc.pid).children(recursive=True):
                    child.kill()
                proc.kill()
        if watcher:
            watcher.join(timeout=5)
    return proc.returncode, out.read_text(), err.read_text()


def with_gates(detector: dict, presence: dict) -> dict:  # type: ignore[type-arg]
    cfg = yaml.safe_load(yaml.safe_dump(SMALL))
    cfg["detector"]["gate"], cfg["presence"]["gate"] = detector, presence
    return cfg


RUN_ID = PipelineConfig.model_validate(SMALL).effective_run_id()


def test_run_promotes_and_survives_a_killed_rank(
    env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    killed: list[int] = []
    ckpt = CheckpointStore(store, f"runs/{RUN_ID}/detector")

    def kill_rank_after_first_checkpoint(proc: subprocess.Popen) -> None:  # type: ignore[type-arg]
        deadline = time.monotonic() + 600
        while proc.poll() is None and time.monotonic() < deadline:
            pointer = ckpt.latest() if store.exists(ckpt.latest_key) else None
            if pointer is not None and pointer.step >= 2:
                for p in psutil.Process(proc.pid).children(recursive=True):
                    try:
                        if (
                            "components.train.main" in " ".join(p.cmdline())
                            and p.environ().get("RANK") == "1"
                        ):
                            os.kill(p.pid, signal.SIGKILL)
                            killed.append(p.pid)
                            return
                    except psutil.Error:
                        continue
            time.sleep(0.3)

    code, out, err = run(SMALL, env, tmp_path, kill_rank_after_first_checkpoint)
    assert code == 0, err[-4000:]
    assert killed, "no training rank was found to kill"
    assert re.search(r"resumed from step [2-9]", err), err[-4000:]
    assert out.strip().splitlines()[-1] == store.uri("registry/smoke/versions/1")
    assert "promoted smoke version 1 -> production" in err
    for stage in ("pretrain", "detector", "presence", "tracker", "joint"):
        assert re.search(rf"│ {stage}\s+│\s+\d+ │", err), err[-2000:]  # the summary table
    assert re.search(r"pretrain recognition AUC by phrase length", err), err[-2000:]
    # the tracker beside a tracker that does nothing, on the same prompts
    assert re.search(
        r"tracker tracking, prompted with the true first-visible masks: tracker masklet IoU [\d.]+, "
        r"tracking cgF1 [\d.]+, cross-object IoU [\d.]+; copy last mask: masklet IoU [\d.]+",
        err,
    ), err[-3000:]
    # the gap to a good model: reference predictors scored on the same gold pairs
    assert re.search(r"references on the same gold pairs .*: oracle 100\.0, .*, no recognition 0\.0\n", err)
    registry = Registry(store, "smoke")
    card = registry.card(1)
    assert registry.alias("production").version == 1  # type: ignore[union-attr]
    assert set(card.metrics) == {"pretrain", "detector", "presence", "tracker", "joint"}
    assert card.stage == "joint" and set(card.metrics["pretrain"]) == {"recognition_AUC"}
    assert {"video_cgF1", "tracking_cgF1", "masklet_IoU", "cross_object_IoU"} <= set(card.metrics["joint"])
    assert card.run_id == RUN_ID and card.datasets["train"].startswith(store.uri("datasets/smoke/"))
    (log,) = (Path(env["SAM3_HOME"]) / "kfp" / "logs").glob(f"{RUN_ID}-*.log")
    for secret in (env["SAM3_S3_SECRET_KEY"], env["SAM3_S3_ACCESS_KEY"]):
        assert secret not in card.model_dump_json() and secret not in err and secret not in log.read_text()


def test_impossible_recognition_threshold_stops_at_the_pretrain_gate(
    env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    cfg = with_gates({}, {})
    cfg["pretrain"]["gate"] = {"recognition_AUC": 1.0}
    code, _, err = run(cfg, env, tmp_path)
    assert code == 3, err[-4000:]
    assert "stopped by the pretrain gate" in err and re.search(r"recognition_AUC [\d.]+ < 1", err)
    assert re.search(r"│ detector\s+│.*not run", err), err[-2000:]
    registry = Registry(store, "smoke")
    assert registry.versions() == [1] and registry.alias("production").version == 1  # type: ignore[union-attr]


def test_impossible_detector_threshold_stops_at_its_gate(
    env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    code, out, err = run(with_gates({"cgF1": 100.0}, {}), env, tmp_path)
    assert code == 3, err[-4000:]
    assert "stopped by the detector gate" in err and re.search(r"cgF1 [\d.]+ < 100", err)
    # the exit handler's one-line outcome (the full record is outcome.json)
    assert re.search(
        r"stopped: pretrain recognition_AUC \S+, gate passed; detector cgF1 \S+ IL_MCC \S+ pmF1 \S+, "
        r"gate failed; presence .*gate not run",
        err,
    )
    assert out.strip().splitlines()[-1].endswith("/outcome.json")
    registry = Registry(store, "smoke")
    assert registry.versions() == [1] and registry.alias("production").version == 1  # type: ignore[union-attr]
    assert re.search(r"│ presence\s+│.*not run", err), err[-2000:]


def test_impossible_presence_threshold_stops_at_the_second_gate(
    env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    code, _, err = run(with_gates({"max_regression": 0.0}, {"IL_MCC": 1.0, "cgF1": 100.0}), env, tmp_path)
    assert code == 3, err[-4000:]
    assert "stopped by the presence gate" in err
    assert "detector gate passed" in err and "production v1" in err  # compared with what is in production
    registry = Registry(store, "smoke")
    assert registry.versions() == [1] and registry.alias("production").version == 1  # type: ignore[union-attr]


def test_impossible_video_threshold_stops_at_the_joint_gate(
    env: dict[str, str], store: ObjectStore, tmp_path: Path
) -> None:
    cfg = with_gates({}, {})
    cfg["joint"]["gate"] = {"video_cgF1": 100.0, "baseline_stage": "presence", "max_stage_regression": 100.0}
    code, _, err = run(cfg, env, tmp_path)
    assert code == 3, err[-4000:]
    assert "stopped by the joint gate" in err and re.search(r"video_cgF1 [\d.]+ < 100", err)
    assert re.search(r"cgF1 [\d.]+ >= presence stage [\d.]+ - 100", err)
    registry = Registry(store, "smoke")
    assert registry.versions() == [1] and registry.alias("production").version == 1  # type: ignore[union-attr]


def test_a_failed_step_is_reported_with_exit_1(env: dict[str, str], tmp_path: Path) -> None:
    broken = yaml.safe_load(yaml.safe_dump(SMALL))
    broken["data"] = {
        "dataset": "broken",
        "train": [{"tag": "hq", "path": str(tmp_path / "nothing-here")}],
        "gold": [{"tag": "hq", "path": str(tmp_path / "nothing-here")}],
        "negatives_per_image": 0,
    }
    del broken["tracker"], broken["joint"]  # image stages only: the data has no videos
    code, out, err = run(broken, env, tmp_path)
    assert code == 1, err[-3000:]
    assert "failed" in err and "nothing-here" in err  # the failing step's own error, and the outcome
    assert out.strip().splitlines()[-1].endswith("/outcome.json")
