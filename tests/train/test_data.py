"""The training stream of the joint stage: image and clip batches, each at its own size."""

from __future__ import annotations

import itertools

from components.model.batch import ModelBatch
from components.model.clips import ClipBatch
from components.train.config import TrainConfig
from components.train.data import BatchStream


def test_joint_stream_interleaves_images_and_clips_at_their_own_batch_sizes(
    video_dataset: str, s3_env: dict[str, str]
) -> None:
    cfg = TrainConfig(
        stage="joint",
        dataset=video_dataset,
        run_id="stream",
        size="tiny112",
        batch_size=2,
        video_fraction=0.5,
        clips={"frames": 2, "max_objects": 2, "batch_size": 3},
    )
    batches = list(itertools.islice(iter(BatchStream(cfg, 0, 1, 0, 112)), 12))
    clips = [b for b in batches if isinstance(b, ClipBatch)]
    images = [b for b in batches if isinstance(b, ModelBatch)]
    assert clips and images and len(clips) + len(images) == len(batches)
    assert {len(b.clips) for b in clips} == {3}
    assert {b.num_images for b in images} == {2}
    assert {c.frames.shape[0] for b in clips for c in b.clips} == {2}

    # without clips.batch_size a clip batch is as large as an image batch, as before
    same = cfg.model_copy(update={"clips": cfg.clips.model_copy(update={"batch_size": None})})
    first = next(b for b in BatchStream(same, 0, 1, 0, 112) if isinstance(b, ClipBatch))
    assert len(first.clips) == 2
