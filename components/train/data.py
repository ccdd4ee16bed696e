"""The training data stream: dataset records -> model batches, split by rank and loader worker."""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, IterableDataset, get_worker_info

from components.dataset import Dataset
from components.errors import ConfigError
from components.storage import ObjectStore
from components.train.config import TrainConfig

log = logging.getLogger(__name__)

IMAGE_SOURCES = ("hq", "syn", "ext")
VIDEO_SOURCE = "video"


def image_source_weights(cfg: TrainConfig, available: list[str]) -> dict[str, float]:
    """The configured weights of the image sources this dataset holds (videos belong to the tracker)."""
    weights = {s: w for s, w in cfg.sources.items() if w > 0 and s in available and s in IMAGE_SOURCES}
    if not weights:
        raise ConfigError(
            f"sources {cfg.sources} select no image source of {cfg.dataset} (it holds {available})"
        )
    return weights


def video_source(cfg: TrainConfig, available: list[str]) -> dict[str, float]:
    if VIDEO_SOURCE not in available:
        raise ConfigError(
            f"the {cfg.stage} stage trains on videos, but {cfg.dataset} holds none (it holds {available})"
        )
    return {VIDEO_SOURCE: 1.0}


class BatchStream(IterableDataset):
    """An endless stream of batches for one rank; each loader worker reads its own row groups.

    Image stages get image batches; the tracker stage clip batches (components.model.clips);
    the joint stage either kind, a clip batch with probability ``video_fraction``.
    """

    def __init__(
        self, cfg: TrainConfig, rank: int, world_size: int, start_step: int, resolution: int
    ) -> None:
        self.cfg = cfg
        self.rank = rank
        self.world_size = world_size
        self.start_step = start_step
        self.resolution = resolution

    def __iter__(self) -> Iterator[Any]:
        from components.embedded_store import default_store
        from components.model.align_batch import records_to_align_batch
        from components.model.batch import records_to_batch
        from components.model.clips import records_to_clips
        from components.model.config import ModelConfig

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        store: ObjectStore = default_store()
        dataset = Dataset.open(self.cfg.dataset, store)
        cfg = self.cfg
        # a resumed job starts a fresh shuffle instead of replaying the batches it already trained on
        seed = cfg.seed * 1_000_003 + self.start_step
        shard = {"rank": self.rank, "world_size": self.world_size, "worker": worker, "num_workers": workers}
        images = videos = None
        if cfg.stage != "tracker":
            images = dataset.mixed(image_source_weights(cfg, dataset.sources), seed=seed, **shard)
        if cfg.video:
            videos = dataset.mixed(video_source(cfg, dataset.sources), seed=seed, **shard)
        rng = random.Random(f"{seed}:{self.rank}:{worker}")
        kinds = random.Random(f"{seed}:kinds")  # the same image/video sequence on every rank
        if cfg.align:
            assert images is not None
            ontology = dataset.ontology()
            if ontology is None:
                log.warning(
                    "%s carries no ontology: stage 0 learns from the queried pairs alone (no ancestors or "
                    "descendants)",
                    cfg.dataset,
                )
            grid = self.resolution // ModelConfig.preset(cfg.size).vision.patch_size
            while True:
                records = [next(images) for _ in range(cfg.batch_size)]
                yield records_to_align_batch(
                    records, resolution=self.resolution, grid=grid, ontology=ontology
                )
        while True:
            video = cfg.stage == "tracker" or (cfg.stage == "joint" and kinds.random() < cfg.video_fraction)
            if video:
                assert videos is not None
                clips = cfg.clips.batch_size or cfg.batch_size
                yield records_to_clips([next(videos) for _ in range(clips)], cfg.clips, self.resolution, rng)
                continue
            assert images is not None
            yield records_to_batch(
                [next(images) for _ in range(cfg.batch_size)],
                resolution=self.resolution,
                max_queries_per_image=cfg.max_queries_per_image,
                exemplar_prob=cfg.exemplar_prob,
                positive_fraction=cfg.positive_fraction,
                rng=rng,
            )


def batch_loader(
    cfg: TrainConfig, rank: int, world_size: int, start_step: int, resolution: int
) -> DataLoader:
    workers = cfg.data_workers
    return DataLoader(
        BatchStream(cfg, rank, world_size, start_step, resolution),
        batch_size=None,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        persistent_workers=bool(workers),
        pin_memory=torch.cuda.is_available(),
    )
