"""Ingest against a real SeaweedFS server: round trip, versioning, partitions, commit ordering."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from components.dataset import Dataset
from components.ingest.ingest import Ingest
from components.ingest.sources import SourceSpec
from components.storage import ObjectStore
from tests.ingest.factory import jpeg, write_coco, write_saco, write_video


@pytest.fixture
def inputs(tmp_path: Path) -> dict[str, Path]:
    paths = {"hq": tmp_path / "hq", "ext": tmp_path / "ext", "video": tmp_path / "clips"}
    write_saco(paths["hq"], n_images=5)
    write_coco(paths["ext"])
    write_video(paths["video"])
    return paths


def specs(paths: dict[str, Path]) -> list[SourceSpec]:
    return [SourceSpec.parse(f"{tag}={p}") for tag, p in paths.items()]


def objects(store: ObjectStore) -> dict[str, int]:
    return dict(store.list_objects(""))


def test_round_trip_counts_masks_and_boxes(inputs: dict[str, Path], store: ObjectStore) -> None:
    result = Ingest("rt", specs(inputs), store).run()
    assert result.created and result.uri.startswith(f"s3://{store.bucket}/datasets/rt/")
    records = {r.media_id: r for r in Dataset.open(result.uri, store).records()}

    saco = json.loads((inputs["hq"] / "annotations.json").read_text())
    coco = json.loads((inputs["ext"] / "annotations.json").read_text())
    video = json.loads((inputs["video"] / "annotations.json").read_text())
    n_saco_media = len({i["file_name"] for i in saco["images"]})
    assert len(records) == n_saco_media + len(coco["images"]) + len(video["videos"])
    queries = {q.query_id: (r, q) for r in records.values() for q in r.queries}
    assert len(queries) == len(saco["images"]) + len(coco["images"]) * len(coco["categories"]) + len(
        video["video_np_pairs"]
    )

    # SA-Co: masks byte-identical, boxes equal at float32
    for a in saco["annotations"]:
        r, q = queries[f"hq:hq/annotations:{a['image_id']}"]
        assert r.frames[0] == (inputs["hq"] / "images" / r.origin).read_bytes()
        siblings = [x["id"] for x in saco["annotations"] if x["image_id"] == a["image_id"]]
        inst = q.instances[siblings.index(a["id"])]
        assert inst.masks == [a["segmentation"]["counts"]]
        assert np.array_equal(np.float32(inst.boxes[0]), np.float32(a["bbox"]))
    # COCO polygons and uncompressed RLE: same pixels after conversion; absent categories are negatives
    for a in coco["annotations"]:
        _, q = queries[f"ext:ext/annotations:{a['image_id']}:{a['category_id']}"]
        inst = q.instances[0]
        h = w = 40
        expect = mask_utils.decode(
            mask_utils.merge(mask_utils.frPyObjects(a["segmentation"], h, w))
            if isinstance(a["segmentation"], list)
            else mask_utils.frPyObjects(a["segmentation"], h, w)
        )
        got = mask_utils.decode({"size": [h, w], "counts": inst.masks[0].encode()})
        assert np.array_equal(expect, got)
        assert inst.crowd == bool(a["iscrowd"])
        assert np.allclose(inst.boxes[0], np.float32(np.array(a["bbox"]) / 40))
    assert not queries["ext:ext/annotations:1:3"][1].positive
    # video: per-frame masks, hidden frame stays null, boxes normalised from pixels
    for a in video["annotations"]:
        r, q = queries[f"video:clips/annotations:{a['video_id']}:{a['category_id']}"]
        assert r.kind == "video" and len(r.frames) == len(a["segmentations"])
        inst = q.instances[0]
        assert inst.masks == [s["counts"] if s else None for s in a["segmentations"]]
        assert [b is None for b in inst.boxes] == [b is None for b in a["bboxes"]]
        for got_box, box in zip(inst.boxes, a["bboxes"], strict=True):
            if box is not None:
                assert np.array_equal(np.float32(got_box), np.float32(np.array(box) / 32))


def test_reingest_is_a_noop_and_a_changed_file_is_a_new_version(
    inputs: dict[str, Path], store: ObjectStore
) -> None:
    first = Ingest("v", specs(inputs), store).run()
    before = objects(store)
    again = Ingest("v", specs(inputs), store).run()
    assert again.uri == first.uri and not again.created
    assert objects(store) == before  # wrote nothing

    (inputs["hq"] / "images" / "img000.jpg").write_bytes(jpeg(32, 32, seed=777))  # one input file changed
    changed = Ingest("v", specs(inputs), store).run()
    assert changed.created and changed.uri != first.uri


def test_three_partitions_equal_one_worker(
    inputs: dict[str, Path], store: ObjectStore, tmp_path: Path
) -> None:
    from components.ingest.ingest import IngestOptions

    opts = IngestOptions(shard_max_rows=2)  # several shards from small inputs
    single = Ingest("p", specs(inputs), store, opts).run()
    assert single.manifest is not None and len(single.manifest.shards) >= 4

    other = ObjectStore(store.settings.model_copy(update={"bucket": store.bucket + "b"}))
    other.ensure_bucket()
    workers = [Ingest("p", specs(inputs), other, opts) for _ in range(3)]
    for i, w in enumerate(workers):
        w.run_partition(i, 3)
        assert not w.committed()
    # nothing is visible before the commit
    with pytest.raises(Exception, match="no manifest"):
        Dataset.open(other.uri(workers[0].prefix), other)
    merged = Ingest("p", specs(inputs), other, opts).commit()
    assert merged.manifest is not None
    assert merged.manifest.version == single.manifest.version
    assert [(s.key, s.sha256, s.rows) for s in merged.manifest.shards] == [
        (s.key, s.sha256, s.rows) for s in single.manifest.shards
    ]
    assert merged.manifest.sources == single.manifest.sources
    rows_a = sorted((r.media_id, len(r.queries)) for r in Dataset.open(single.uri, store).records())
    rows_b = sorted((r.media_id, len(r.queries)) for r in Dataset.open(merged.uri, other).records())
    assert rows_a == rows_b
    assert not [k for k in objects(other) if "_staging" in k]


def test_commit_refuses_missing_partitions(inputs: dict[str, Path], store: ObjectStore) -> None:
    from components.errors import DataError

    job = Ingest("m", specs(inputs), store)
    job.run_partition(1, 3)
    with pytest.raises(DataError, match=r"partitions \[0, 2\] of 3 have not finished"):
        job.commit()
    assert not job.committed()
