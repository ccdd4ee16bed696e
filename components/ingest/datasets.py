"""The pipeline's data steps: sources -> committed train and gold datasets (negatives: components.negatives).

The synthetic generator, when configured, writes into the object store under
``raw/synthetic/<hash>/`` (``summary.json`` last), so every later step reads its
sources from S3 exactly as on a cluster. Ingest runs as N partitions and one
commit (components.ingest.ingest.Ingest); the train and gold datasets are
partitioned together.
"""

from __future__ import annotations

import hashlib
import json
import logging
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Literal

from components.errors import ConfigError
from components.ingest.config import DataConfig, SyntheticData
from components.ingest.ingest import Ingest, IngestOptions
from components.ingest.sources import SourceSpec, open_source
from components.progress import Progress
from components.storage import ObjectStore

log = logging.getLogger(__name__)

GOLD_SUFFIX = "-gold"


def synthetic_prefix(syn: SyntheticData) -> str:
    digest = hashlib.sha256(json.dumps(syn.identity(), sort_keys=True).encode()).hexdigest()[:16]
    return f"raw/synthetic/{digest}"


def prepare(cfg: DataConfig, store: ObjectStore, progress: Progress | None = None) -> None:
    """Materialise the synthetic data in the object store (once; a no-op when already there)."""
    if cfg.synthetic is None:
        return
    from components.synthetic import generate

    prefix = synthetic_prefix(cfg.synthetic)
    if store.exists(f"{prefix}/summary.json"):
        log.info("synthetic data already at %s", store.uri(prefix))
        return
    syn = cfg.synthetic
    with tempfile.TemporaryDirectory(prefix="sam3-synth-") as tmp:
        out = Path(tmp) / "synth"
        generate(
            out,
            images=syn.images,
            gold_images=syn.gold_images,
            videos=syn.videos,
            gold_videos=syn.gold_videos,
            frames=syn.frames,
            size=syn.size,
            seed=syn.seed,
            syn_images=syn.syn_images,
            ext_images=syn.ext_images,
            progress=progress,
        )
        files = sorted(p for p in out.rglob("*") if p.is_file() and p.name != "summary.json")
        done = 0

        def upload(path: Path) -> None:
            store.put_file(f"{prefix}/{path.relative_to(out).as_posix()}", path)

        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in pool.map(upload, files):
                done += 1
                if progress:
                    progress("upload", done, len(files))
        store.put_file(f"{prefix}/summary.json", out / "summary.json")  # last: the commit
    log.info("synthetic data written to %s", store.uri(prefix))


def source_specs(cfg: DataConfig, store: ObjectStore, split: Literal["train", "gold"]) -> list[SourceSpec]:
    """Training (``train``) or evaluation (``gold``) sources, synthetic ones as S3 prefixes."""
    listed = cfg.train if split == "train" else cfg.gold
    specs = [SourceSpec.parse(f"{s.tag}={s.path}") for s in listed]
    if cfg.synthetic is not None:
        from components.synthetic.sources import EXT_SPLIT, SYN_SPLIT

        root = store.uri(synthetic_prefix(cfg.synthetic))
        images, videos = ("train", "video_train") if split == "train" else ("gold", "video_gold")
        syn = cfg.synthetic
        # the clean images: SA-Co/HQ beside the SYN and EXT sources; alone, the tag they always had
        specs.append(SourceSpec(tag="hq" if syn.sources() else "syn", path=f"{root}/{images}"))
        if split == "train" and syn.syn_images:
            specs.append(SourceSpec(tag="syn", path=f"{root}/{SYN_SPLIT}"))
        if split == "train" and syn.ext_images:
            specs.append(SourceSpec(tag="ext", path=f"{root}/{EXT_SPLIT}"))
        if (cfg.synthetic.videos if split == "train" else cfg.synthetic.gold_videos) > 0:
            specs.append(SourceSpec(tag="video", path=f"{root}/{videos}"))
    return specs


def ingests(cfg: DataConfig, store: ObjectStore, progress: Progress | None = None) -> dict[str, Ingest]:
    options = IngestOptions(image_check=cfg.image_check)
    return {
        "train": Ingest(cfg.dataset, source_specs(cfg, store, "train"), store, options, progress),
        "gold": Ingest(cfg.dataset + GOLD_SUFFIX, source_specs(cfg, store, "gold"), store, options, progress),
    }


def ingest_partition(
    cfg: DataConfig, store: ObjectStore, partition: int, partitions: int, progress: Progress | None = None
) -> None:
    for split, ingest in ingests(cfg, store, progress).items():
        if ingest.committed():
            log.info("%s dataset %s already committed", split, ingest.uri)
            continue
        summary = ingest.run_partition(partition, partitions)
        log.info(
            "%s partition %d/%d: %d shards, %d rejects",
            split,
            partition,
            partitions,
            len(summary.shards),
            len(summary.rejects),
        )


def commit(cfg: DataConfig, store: ObjectStore) -> dict[str, str]:
    """Commit both datasets; returns {"train": URI, "gold": URI}."""
    return {split: ingest.commit().uri for split, ingest in ingests(cfg, store).items()}


def gold_annotations(cfg: DataConfig, store: ObjectStore, dest: Path) -> list[Path]:
    """The gold image source's annotation JSON files, copied into ``dest`` for the evaluator.

    Several files in that source are read as several annotators of the same pairs (oracle evaluation).
    """
    images = [spec for spec in source_specs(cfg, store, "gold") if spec.tag != "video"]
    if len(images) != 1:
        raise ConfigError(f"evaluation needs exactly one gold image source, found {len(images)}")
    files = open_source(images[0], store)
    paths = []
    for rel in sorted(r for r in files.files() if r.endswith(".json") and "/" not in r):
        path = dest / rel
        path.write_bytes(files.read(rel))
        paths.append(path)
    if not paths:
        raise ConfigError(f"gold source {images[0].path} holds no annotation JSON at its top level")
    return paths


def gold_video_annotations(cfg: DataConfig, store: ObjectStore, dest: Path) -> Path:
    """The gold video source's annotation JSON (SA-Co video format), copied into ``dest``."""
    videos = [spec for spec in source_specs(cfg, store, "gold") if spec.tag == "video"]
    if len(videos) != 1:
        raise ConfigError(f"video evaluation needs exactly one gold video source, found {len(videos)}")
    files = open_source(videos[0], store)
    found = sorted(r for r in files.files() if r.endswith(".json") and "/" not in r)
    if len(found) != 1:
        raise ConfigError(
            f"gold video source {videos[0].path} must hold one annotation JSON at its top, not {found}"
        )
    path = dest / f"video-{found[0]}"
    path.write_bytes(files.read(found[0]))
    return path
