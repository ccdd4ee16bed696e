"""records_to_batch: hand-made records -> the official batch structure, checked field by field."""

from __future__ import annotations

import io
import random

import numpy as np
import pytest
import torch
from PIL import Image

from components.errors import DataError
from components.model.batch import ModelBatch, records_to_batch
from components.schemas import Instance, MediaRecord, Query
from tests.ingest.factory import box_mask, jpeg, rle

W, H, R = 40, 30, 56


def _instance(
    object_id: int, x0: int, y0: int, x1: int, y1: int, *, box: bool = True, crowd: bool = False
) -> Instance:
    counts = rle(box_mask(H, W, x0, y0, x1, y1))["counts"]
    xywh = [x0 / W, y0 / H, (x1 - x0) / W, (y1 - y0) / H] if box else None
    return Instance(object_id=object_id, boxes=[xywh], masks=[counts], crowd=crowd)


def _record(media_id: str = "hq:1", *, frame: bytes | None = None) -> MediaRecord:
    return MediaRecord(
        media_id=media_id,
        source="hq",
        kind="image",
        origin="a.jpg",
        width=W,
        height=H,
        frames=[frame if frame is not None else jpeg(W, H, 0)],
        queries=[
            Query(
                query_id="q1",
                origin_id="11",
                noun_phrase="red square",
                positive=True,
                instances=[_instance(1, 4, 2, 20, 14), _instance(2, 0, 0, 40, 30, crowd=True)],
            ),
            Query(
                query_id="q2",
                origin_id="12",
                noun_phrase="blue circle",
                positive=True,
                exhaustive=False,
                instances=[_instance(3, 20, 10, 36, 26, box=False), _instance(4, 30, 0, 38, 8)],
            ),
            Query(query_id="q3", origin_id="13", noun_phrase="zebra", positive=False, hard_negative=True),
        ],
    )


def _batch(records: list[MediaRecord], **options: object) -> ModelBatch:
    kwargs: dict = {
        "resolution": R,
        "max_queries_per_image": 8,
        "exemplar_prob": 0.0,
        "rng": random.Random(0),
    }
    return records_to_batch(records, **{**kwargs, **options})


def test_images_are_resized_and_normalised() -> None:
    white = io.BytesIO()
    Image.new("RGB", (W, H), (255, 255, 255)).save(white, "PNG")
    batch = _batch([_record("a"), _record("b", frame=white.getvalue())])
    images = batch.data.img_batch
    assert images.shape == (2, 3, R, R) and images.dtype == torch.float32
    assert images.min() >= -1 and images.max() <= 1
    torch.testing.assert_close(images[1], torch.ones(3, R, R))
    assert batch.media_ids == ["a", "b"]


def test_each_query_is_a_text_prompt_with_its_targets() -> None:
    batch = _batch([_record()])
    data = batch.data
    assert batch.query_ids == ["q1", "q2", "q3"]
    assert data.find_text_batch == ["red square", "blue circle", "zebra"]
    stage = data.find_inputs[0]
    assert stage.img_ids.tolist() == [0, 0, 0] and stage.text_ids.tolist() == [0, 1, 2]
    assert stage.input_boxes.shape == (0, 3, 4)  # no exemplar prompts
    targets = data.find_targets[0]
    assert targets.num_boxes.tolist() == [1, 2, 0]  # the crowd is dropped; the negative has none
    assert targets.is_exhaustive.tolist() == [True, False, True]
    expected = torch.tensor(
        [
            [12 / W, 8 / H, 16 / W, 12 / H],  # normalised cx, cy, w, h
            [28 / W, 18 / H, 16 / W, 16 / H],  # box taken from the mask
            [34 / W, 4 / H, 8 / W, 8 / H],
        ]
    )
    torch.testing.assert_close(targets.boxes, expected)
    assert targets.boxes_padded.shape == (3, 2, 4)
    assert targets.segments.shape == (3, R, R) and targets.segments.dtype == torch.bool
    assert targets.is_valid_segment.all()
    box_region = np.zeros((R, R), bool)
    box_region[round(2 * R / H) : round(14 * R / H), round(4 * R / W) : round(20 * R / W)] = True
    mask = targets.segments[0].numpy()
    assert (mask & box_region).sum() / (mask | box_region).sum() > 0.9
    metadata = data.find_metadatas[0]
    assert metadata.coco_image_id.tolist() == [11, 12, 13]
    assert metadata.original_size.tolist() == [[H, W]] * 3


def test_exemplar_boxes_come_from_the_ground_truth() -> None:
    data = _batch([_record()], exemplar_prob=1.0).data
    stage, targets = data.find_inputs[0], data.find_targets[0]
    assert stage.input_boxes.shape == (1, 3, 4)  # (boxes, queries, cx cy w h), as the geometry encoder takes
    assert stage.input_boxes_mask.tolist() == [[False], [False], [True]]  # (queries, boxes); True = padding
    assert stage.input_boxes_label[0, :2].tolist() == [1, 1]
    torch.testing.assert_close(stage.input_boxes[0, 0], targets.boxes[0])
    assert any(torch.equal(stage.input_boxes[0, 1], b) for b in targets.boxes[1:])


def test_queries_are_capped_per_image() -> None:
    first = _batch([_record()], max_queries_per_image=2, rng=random.Random(3))
    again = _batch([_record()], max_queries_per_image=2, rng=random.Random(3))
    assert len(first.query_ids) == 2 and first.query_ids == again.query_ids
    assert first.query_ids == sorted(first.query_ids)  # record order kept


def test_videos_are_skipped() -> None:
    video = _record("video:1")
    video.kind = "video"
    batch = _batch([video, _record()])
    assert batch.media_ids == ["hq:1"] and batch.num_images == 1
    with pytest.raises(DataError, match="no image query"):
        _batch([video])


def test_undecodable_images_name_the_record() -> None:
    with pytest.raises(DataError, match="hq:broken"):
        _batch([_record("hq:broken", frame=b"not a jpeg")])


def test_batch_moves_as_a_whole() -> None:
    batch = _batch([_record()])
    moved = batch.to("cpu")
    assert moved.query_ids == batch.query_ids
    torch.testing.assert_close(moved.data.find_targets[0].boxes, batch.data.find_targets[0].boxes)
    assert moved.data.find_text_batch == batch.data.find_text_batch
