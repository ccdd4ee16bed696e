"""Ingest counts (records and rejects by source and reason) reach a real Pushgateway."""

from __future__ import annotations

import json
import urllib.request
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from tests.ingest.factory import write_saco


def test_ingest_pushes_counters(
    tmp_path: Path, store: ObjectStore, pushgateway: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SAM3_PUSHGATEWAY_URL", pushgateway)
    src = tmp_path / "hq"
    doc = write_saco(src, n_images=3)
    doc["annotations"].append({"id": 5000, "image_id": 777, "bbox": [0, 0, 0.1, 0.1], "iscrowd": 0})
    (src / "annotations.json").write_text(json.dumps(doc))
    Ingest("metrics", [SourceSpec.parse(f"hq={src}")], store).run()

    text = urllib.request.urlopen(f"{pushgateway}/metrics", timeout=5).read().decode()
    samples = {
        (
            s.name,
            tuple(sorted((k, v) for k, v in s.labels.items() if k in ("source", "unit", "reason"))),
        ): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
        if s.labels.get("dataset") == "metrics"
    }
    assert samples[("sam3_ingest_records_total", (("source", "hq"), ("unit", "media")))] == 3
    assert samples[("sam3_ingest_records_total", (("source", "hq"), ("unit", "queries")))] == 6
    assert samples[("sam3_ingest_rejects_total", (("reason", "unknown_image_id"), ("source", "hq")))] == 1


def test_no_pushgateway_configured_is_fine(
    tmp_path: Path, store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SAM3_PUSHGATEWAY_URL", raising=False)
    write_saco(tmp_path / "hq", n_images=1)
    assert Ingest("quiet", [SourceSpec.parse(f"hq={tmp_path / 'hq'}")], store).run().created
