"""The reader: rank/worker splits cover every record exactly once; source weights steer the mix."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from components.dataset import Dataset
from components.errors import ConfigError
from components.ingest.ingest import Ingest, IngestOptions
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from tests.ingest.factory import write_coco, write_saco


@pytest.fixture
def dataset(tmp_path: Path, store: ObjectStore) -> Dataset:
    write_saco(tmp_path / "hq", n_images=12)
    write_coco(tmp_path / "ext", n_images=6)
    opts = IngestOptions(shard_max_rows=4, row_group_rows=2)
    result = Ingest(
        "r",
        [SourceSpec.parse(f"hq={tmp_path / 'hq'}"), SourceSpec.parse(f"ext={tmp_path / 'ext'}")],
        store,
        opts,
    ).run()
    return Dataset.open(result.uri, store)


def test_rank_and_worker_shares_partition_the_records(dataset: Dataset) -> None:
    everything = sorted(r.media_id for r in dataset.records())
    assert len(everything) == 18
    shares = [
        [r.media_id for r in dataset.records(rank=rank, world_size=2, worker=w, num_workers=2)]
        for rank in range(2)
        for w in range(2)
    ]
    assert all(shares)
    assert sorted(m for share in shares for m in share) == everything


def test_source_weights_steer_the_mix(dataset: Dataset) -> None:
    stream = dataset.mixed({"hq": 3.0, "ext": 1.0}, seed=1)
    counts = Counter(next(stream).source for _ in range(400))
    assert 0.65 < counts["hq"] / 400 < 0.85
    only_ext = dataset.mixed({"hq": 0.0, "ext": 1.0})
    assert {next(only_ext).source for _ in range(20)} == {"ext"}
    with pytest.raises(ConfigError, match="video"):
        next(dataset.mixed({"video": 1.0}))
