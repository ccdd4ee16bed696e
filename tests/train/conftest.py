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
