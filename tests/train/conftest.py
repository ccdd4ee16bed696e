"""Fixtures of the training tests: a small ingested synthetic dataset in the per-test bucket."""

from __future__ import annotations

from pathlib import Path

import pytest

from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from components.synthetic import generate


@pytest.fixture
def dataset(tmp_path: Path, store: ObjectStore) -> str:
    data = tmp_path / "synth"
    generate(data, images=24, gold_images=4, videos=0, gold_videos=0, seed=5)
    return Ingest("tiny", [SourceSpec.parse(f"hq={data / 'train'}")], store).run().uri


@pytest.fixture
def video_dataset(tmp_path: Path, store: ObjectStore) -> str:
    """Images and short videos (4 frames) in one dataset, as the video stages read them."""
    data = tmp_path / "synth-video"
    generate(data, images=8, gold_images=2, videos=4, gold_videos=1, frames=4, size=112, seed=6)
    specs = [SourceSpec.parse(f"hq={data / 'train'}"), SourceSpec.parse(f"video={data / 'video_train'}")]
    return Ingest("tiny-video", specs, store).run().uri
