"""Dataset records for model tests, rendered by the synthetic generator (same scenes as `data synth`)."""

from __future__ import annotations

import io

from PIL import Image

from components import masks
from components.schemas import Instance, MediaRecord, Query
from components.synthetic.images import image_item


def synthetic_record(index: int, *, size: int = 96, seed: int = 0, split: str = "train") -> MediaRecord:
    """Image ``index`` of a synthetic split as a shard record: a query per noun phrase, negatives included."""
    scene, queries = image_item(seed, split, index, size)
    buf = io.BytesIO()
    Image.fromarray(scene.image, mode="RGB").save(buf, format="JPEG", quality=90)
    rles = [masks.encode(o.visible) for o in scene.objects]
    boxes = [masks.normalised(masks.box_xywh(r), size, size) for r in rles]
    media_id = f"syn:{split}:{index}"
    return MediaRecord(
        media_id=media_id,
        source="syn",
        kind="image",
        origin=f"{index:06d}.jpg",
        width=size,
        height=size,
        frames=[buf.getvalue()],
        queries=[
            Query(
                query_id=f"{media_id}:{n}",
                origin_id=str(1000 * index + n + 1),
                noun_phrase=q.noun_phrase,
                positive=q.positive,
                hard_negative=q.hard_negative,
                instances=[
                    Instance(object_id=i, boxes=[boxes[i]], masks=[str(rles[i]["counts"])])
                    for i in q.instances
                ],
            )
            for n, q in enumerate(queries)
        ],
    )


def synthetic_video_record(
    index: int, *, size: int = 96, frames: int = 8, seed: int = 0, split: str = "video_train"
) -> MediaRecord:
    """Video ``index`` of a synthetic video split as a shard record (per-frame masks, None while hidden)."""
    from components.synthetic.video import video_item

    clip, queries = video_item(seed, split, index, size, frames)
    encoded = []
    for image in clip.frames:
        buf = io.BytesIO()
        Image.fromarray(image, mode="RGB").save(buf, format="JPEG", quality=90)
        encoded.append(buf.getvalue())
    per_track = []
    for track in clip.tracks:
        rles = [masks.encode(v) if v.any() else None for v in track.visible]
        per_track.append(
            (
                [None if r is None else str(r["counts"]) for r in rles],
                [None if r is None else masks.normalised(masks.box_xywh(r), size, size) for r in rles],
            )
        )
    media_id = f"video:{split}:{index}"
    return MediaRecord(
        media_id=media_id,
        source="video",
        kind="video",
        origin=f"{index + 1:05d}",
        width=size,
        height=size,
        frames=encoded,
        queries=[
            Query(
                query_id=f"{media_id}:{n}",
                origin_id=f"{index + 1}:{n + 1}",
                noun_phrase=q.noun_phrase,
                positive=q.positive,
                hard_negative=q.hard_negative,
                instances=[
                    Instance(object_id=i, boxes=per_track[i][1], masks=per_track[i][0]) for i in q.instances
                ],
            )
            for n, q in enumerate(queries)
        ],
    )
