"""The SYN and EXT sources of the synthetic data: what each models, as the ingest reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from components.dataset import Dataset
from components.ingest.config import DataConfig, SyntheticData
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from components.synthetic import generate
from components.synthetic.ontology import build_ontology
from components.synthetic.queries import Query
from components.synthetic.sources import EXT_CATEGORIES, loose, weak_labels

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_hq_syn_and_ext_ingest_as_three_sources_that_differ_as_saco_s_do(
    tmp_path: Path, store: ObjectStore
) -> None:
    out = tmp_path / "synth"
    summary = generate(
        out, images=4, gold_images=2, videos=0, gold_videos=0, size=64, syn_images=4, ext_images=3
    )
    assert {"syn_train", "ext_train"} <= set(summary.splits) and summary.splits[
        "ext_train"
    ].hard_negative_pairs == 0
    specs = [
        SourceSpec.parse(f"{t}={out / d}")
        for t, d in (("hq", "train"), ("syn", "syn_train"), ("ext", "ext_train"))
    ]
    dataset = Dataset.open(Ingest("three", specs, store).run().uri, store)
    by_source: dict[str, list] = {}
    for record in dataset.records():
        by_source.setdefault(record.source, []).append(record)
    assert {s: len(r) for s, r in by_source.items()} == {"hq": 4, "syn": 4, "ext": 3}
    ext_queries = [q for r in by_source["ext"] for q in r.queries]
    assert len(ext_queries) == 3 * len(EXT_CATEGORIES)  # every category of every image: a COCO conversion
    assert {q.noun_phrase for q in ext_queries} == set(EXT_CATEGORIES)  # two words, colour and shape only
    assert not any(q.hard_negative for q in ext_queries) and any(q.positive for q in ext_queries)
    assert sum(len(q.instances) for r in by_source["syn"] for q in r.queries) > 0


def test_the_weak_annotator_misses_instances_and_misnames_phrases() -> None:
    rng = np.random.default_rng(0)
    objects = [{"shape": "circle", "colour": "red", "size": "small", "texture": "solid"}] * 4
    query = Query("circle", {"shape": "circle"}, (0, 1, 2, 3))
    weak = [q for _ in range(400) for q in weak_labels(rng, [query], objects)]
    kept = sum(len(q.instances) for q in weak) / (4 * len(weak))
    assert 0.65 < kept < 0.85  # a quarter missed
    wrong = sum(q.noun_phrase != "circle" for q in weak) / len(weak)
    assert 0.05 < wrong < 0.15 and all(
        q.noun_phrase in {c.name for c in build_ontology().concepts} for q in weak
    )


def test_defaults_name_the_same_data_as_before() -> None:
    plain = SyntheticData()
    assert "syn_images" not in plain.identity() and not plain.sources()
    assert SyntheticData(ext_images=5).identity()["ext_images"] == 5
    assert "syn_images" not in DataConfig(synthetic=plain).identity()["synthetic"]


def test_the_weak_annotator_s_masks_are_loose() -> None:
    mask = np.zeros((224, 224), bool)
    mask[100:120, 100:120] = True
    wide = loose(mask, 224)
    assert (wide & mask).sum() == mask.sum() and wide.sum() > 1.5 * mask.sum()
