"""Deterministic synthetic SA-Co-style data: coloured shapes named by short noun phrases.

``generate(out)`` writes::

    out/ontology.json                 the concept graph (components.ontology.Ontology)
    out/train/, out/gold/             SA-Co image format: annotations.json + images/NNNNNN.jpg
    out/video_train/, out/video_gold/ SA-Co video format: annotations.json + images/VVVVV/FFFFF.jpg
    out/syn_train/                    (``syn_images`` > 0) the SYN source: a weaker annotator's labels
    out/ext_train/                    (``ext_images`` > 0) the EXT source: another domain, COCO categories
    out/summary.json                  SynthSummary, written last

The same seed and arguments give byte-identical files.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from pydantic import ValidationError

from components.errors import ConfigError
from components.progress import Progress
from components.synthetic.images import write_image_split
from components.synthetic.ontology import build_ontology, category_ids
from components.synthetic.output import write_json
from components.synthetic.sources import EXT_SPLIT, SYN_SPLIT, write_ext_split, write_syn_split
from components.synthetic.summary import SplitSummary, SynthParams, SynthSummary
from components.synthetic.video import write_video_split

__all__ = ["SplitSummary", "SynthParams", "SynthSummary", "generate"]

log = logging.getLogger(__name__)

_OUTPUTS = (
    "summary.json",
    "ontology.json",
    "train",
    "gold",
    "video_train",
    "video_gold",
    SYN_SPLIT,
    EXT_SPLIT,
)


def generate(
    out: Path,
    *,
    images: int = 400,
    gold_images: int | None = None,
    videos: int = 16,
    gold_videos: int | None = None,
    frames: int = 12,
    size: int = 224,
    seed: int = 0,
    syn_images: int = 0,
    ext_images: int = 0,
    progress: Progress | None = None,
) -> SynthSummary:
    """Write a synthetic dataset into ``out`` and return (and save) its summary.

    ``gold_images`` defaults to ``max(20, images // 4)``, ``gold_videos`` to
    ``max(4, videos // 2)``. ``syn_images`` and ``ext_images``: the SYN and EXT training sources
    (components.synthetic.sources; none by default). ``progress(split, done, total)`` is called after
    each image or video. ``out`` may be missing, empty or an earlier output of
    this function (which is replaced); anything else in it is refused.
    """
    try:
        params = SynthParams(
            images=images,
            gold_images=max(20, images // 4) if gold_images is None else gold_images,
            videos=videos,
            gold_videos=max(4, videos // 2) if gold_videos is None else gold_videos,
            frames=frames,
            size=size,
            seed=seed,
        )
    except ValidationError as exc:
        first = exc.errors()[0]
        raise ConfigError(f"synthetic data: {'.'.join(map(str, first['loc']))}: {first['msg']}") from None
    out = Path(out)
    _prepare(out)
    ontology = build_ontology()
    ontology.dump(out / "ontology.json")
    ids = category_ids(ontology)
    size, seed = params.size, params.seed
    splits = {
        "train": write_image_split(
            out, "train", count=params.images, size=size, seed=seed, category_ids=ids, progress=progress
        ),
        "gold": write_image_split(
            out, "gold", count=params.gold_images, size=size, seed=seed, category_ids=ids, progress=progress
        ),
    }
    if syn_images:
        splits[SYN_SPLIT] = write_syn_split(
            out, count=syn_images, size=size, seed=seed, category_ids=ids, progress=progress
        )
    if ext_images:
        splits[EXT_SPLIT] = write_ext_split(out, count=ext_images, size=size, seed=seed, progress=progress)
    for split, count in (("video_train", params.videos), ("video_gold", params.gold_videos)):
        splits[split] = write_video_split(
            out,
            split,
            count=count,
            size=size,
            frames=params.frames,
            seed=seed,
            category_ids=ids,
            progress=progress,
        )
    summary = SynthSummary(params=params, concepts=len(ontology.concepts), splits=splits)
    write_json(out / "summary.json", summary.model_dump(mode="json"), indent=1)
    log.info("synthetic dataset written to %s", out)
    return summary


def _prepare(out: Path) -> None:
    """Make ``out`` ready: create it, or clear an earlier output; refuse a folder with anything else in it."""
    if out.exists():
        foreign = sorted(p.name for p in out.iterdir() if p.name not in _OUTPUTS)
        if foreign:
            raise ConfigError(f"{out}: holds {foreign[:3]}, not only synthetic data; refusing to write there")
        for name in _OUTPUTS:  # summary.json first: a half-cleared folder is not a finished dataset
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)
