"""Parse annotation files (SA-Co image, plain COCO, SA-Co video) into media plans.

Planning is cheap and global: every partition of an ingest plans the whole
input the same way, so shard boundaries do not depend on how many workers
run. Structural defects found here (invalid JSON, a record of the wrong
shape, unknown or duplicate ids, a bad noun phrase) become rejects; checks
that need pixels or mask decoding happen later, per media item.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, ValidationError

from components.ingest.sources import SourceFiles, SourceSpec
from components.schemas import Reject

log = logging.getLogger(__name__)

BoxMode = Literal["normalised", "pixels"]


@dataclass
class RawQuery:
    """One (media, noun phrase) pair as found in its file, annotations not yet checked."""

    query_id: str
    origin_id: str
    noun_phrase: str
    exhaustive: bool
    record: str
    annotations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    expected_masklets: int | None = None
    spoiled: tuple[str, str] | None = None  # (record, reason): an annotation of it was dropped


@dataclass
class MediaPlan:
    media_id: str
    source: str
    kind: Literal["image", "video"]
    origin: str
    width: int
    height: int
    frame_paths: list[str]
    file: str
    record: str
    box_mode: BoxMode
    queries: list[RawQuery] = field(default_factory=list)
    est_bytes: int = 0


@dataclass
class Plan:
    media: list[MediaPlan]
    rejects: list[Reject]


class _Rec(BaseModel):
    model_config = ConfigDict(extra="allow")


class SacoImage(_Rec):
    id: int
    file_name: str = Field(min_length=1)
    text_input: str
    width: PositiveInt
    height: PositiveInt
    is_instance_exhaustive: bool = True


class _Loose(_Rec):
    """Whatever ids a rejected annotation still carries, to find the query it spoils."""

    image_id: Any = None
    video_id: Any = None
    category_id: Any = None


class Annotation(_Rec):
    id: int
    image_id: int
    iscrowd: int = 0


class CocoImage(_Rec):
    id: int
    file_name: str = Field(min_length=1)
    width: PositiveInt
    height: PositiveInt


class CocoAnnotation(Annotation):
    category_id: int


class Category(_Rec):
    id: int
    name: str


class Video(_Rec):
    id: int
    file_names: list[str] = Field(min_length=1)
    width: PositiveInt
    height: PositiveInt


class VideoAnnotation(_Rec):
    id: int
    video_id: int
    category_id: int
    segmentations: list[Any] = Field(min_length=1)
    iscrowd: int = 0


class VideoNpPair(_Rec):
    video_id: int
    category_id: int
    noun_phrase: str
    num_masklets: int = Field(ge=0)


class Planner:
    """Builds the plan of one source; collects rejects as it goes."""

    def __init__(self, spec: SourceSpec, files: SourceFiles, max_noun_phrase_chars: int) -> None:
        self.spec = spec
        self.files = files
        self.max_np = max_noun_phrase_chars
        self.rejects: list[Reject] = []
        self.media: dict[str, MediaPlan] = {}
        self.dropped: list[tuple[str, Any]] = []  # records of the last _records call that were rejected

    # -- helpers ------------------------------------------------------------
    def reject(self, file: str, record: str, code: str, reason: str) -> None:
        self.rejects.append(Reject(source=self.spec.tag, file=file, record=record, code=code, reason=reason))

    def _records(self, file: str, doc: dict[str, Any], key: str, model: type[_Rec]) -> list[tuple[str, Any]]:
        """Validate ``doc[key]`` entry by entry; duplicates of ``id`` are rejected after the first."""
        out: list[tuple[str, Any]] = []
        seen: dict[int, int] = {}
        self.dropped = []
        raw = doc.get(key, [])
        if not isinstance(raw, list):
            self.reject(file, key, "bad_record", f"'{key}' must be a list")
            return out
        for i, item in enumerate(raw):
            label = f"{key}[{i}]"
            try:
                rec = model.model_validate(item)
            except ValidationError as exc:
                err = exc.errors()[0]
                where = ".".join(str(x) for x in err["loc"]) or "<record>"
                self.reject(file, label, "bad_record", f"{where}: {err['msg']}")
                self.dropped.append((label, item))
                continue
            rid = getattr(rec, "id", None)
            if rid is not None:
                label = f"{key}[{i}] (id {rid})"
                if rid in seen:
                    self.reject(
                        file, label, "duplicate_id", f"duplicate id {rid} (first at {key}[{seen[rid]}])"
                    )
                    self.dropped.append((label, item))
                    continue
                seen[rid] = i
            out.append((label, rec))
        return out

    def noun_phrase_ok(self, file: str, record: str, phrase: str) -> str | None:
        text = " ".join(phrase.split())
        if not text:
            self.reject(file, record, "bad_noun_phrase", "empty noun phrase")
            return None
        if len(text) > self.max_np:
            self.reject(
                file,
                record,
                "bad_noun_phrase",
                f"noun phrase of {len(text)} characters (limit {self.max_np})",
            )
            return None
        return text

    def image_path(self, file_name: str) -> str:
        files = self.files.files()
        for candidate in (f"images/{file_name}", file_name):
            if candidate in files:
                return candidate
        return f"images/{file_name}"

    def media_for(
        self,
        file: str,
        record: str,
        kind: Literal["image", "video"],
        origin: str,
        width: int,
        height: int,
        frames: list[str],
        box_mode: BoxMode,
    ) -> MediaPlan | None:
        media_id = f"{self.spec.tag}:{self.spec.name}/{origin}"
        plan = self.media.get(media_id)
        if plan is None:
            sizes = self.files.files()
            plan = MediaPlan(
                media_id=media_id,
                source=self.spec.tag,
                kind=kind,
                origin=origin,
                width=width,
                height=height,
                frame_paths=frames,
                file=file,
                record=record,
                box_mode=box_mode,
                est_bytes=sum(sizes.get(f, 0) for f in frames),
            )
            self.media[media_id] = plan
        elif (plan.width, plan.height) != (width, height):
            self.reject(
                file,
                record,
                "image_size_mismatch",
                f"{origin} declared {width}x{height} here but {plan.width}x{plan.height} at {plan.record}",
            )
            return None
        return plan

    def image_media(
        self, file: str, record: str, img: SacoImage | CocoImage, box_mode: BoxMode
    ) -> MediaPlan | None:
        """The media plan of one image entry (shared by every pair of the same file name)."""
        frames = [self.image_path(img.file_name)]
        return self.media_for(file, record, "image", img.file_name, img.width, img.height, frames, box_mode)

    # -- formats --------------------------------------------------------------
    def plan_file(self, rel: str) -> None:
        file = self.files.display(rel)
        try:
            doc = json.loads(self.files.read(rel))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            self.reject(file, "<file>", "invalid_json", f"invalid JSON: {exc}")
            return
        if not isinstance(doc, dict):
            self.reject(file, "<file>", "invalid_json", "top level must be a JSON object")
            return
        stem = rel.rsplit(".", 1)[0].replace("/", "_")
        if "videos" in doc or "video_np_pairs" in doc:
            self._plan_video(file, stem, doc)
        elif any(isinstance(i, dict) and "text_input" in i for i in doc.get("images", [])):
            self._plan_saco(file, stem, doc)
        elif "categories" in doc and "images" in doc:
            self._plan_coco(file, stem, doc)
        else:
            self.reject(file, "<file>", "bad_record", "not SA-Co image, SA-Co video or COCO JSON")

    def _qid(self, stem: str, origin_id: str) -> str:
        return f"{self.spec.tag}:{self.spec.name}/{stem}:{origin_id}"

    def _plan_saco(self, file: str, stem: str, doc: dict[str, Any]) -> None:
        pairs: dict[int, RawQuery] = {}
        for label, img in self._records(file, doc, "images", SacoImage):
            phrase = self.noun_phrase_ok(file, label, img.text_input)
            if phrase is None:
                continue
            media = self.image_media(file, label, img, "normalised")
            if media is None:
                continue
            q = RawQuery(self._qid(stem, str(img.id)), str(img.id), phrase, img.is_instance_exhaustive, label)
            media.queries.append(q)
            pairs[img.id] = q
        self._attach(file, doc, Annotation, pairs, lambda a: a.image_id, "image id")

    def _attach(
        self,
        file: str,
        doc: dict[str, Any],
        model: type[_Rec],
        pairs: dict[Any, RawQuery],
        key: Callable[[Any], Any],
        what: str,
    ) -> None:
        """Attach annotations to their queries; a query that lost one is spoiled (rejected later)."""
        for label, ann in self._records(file, doc, "annotations", model):
            q = pairs.get(key(ann))
            if q is None:
                self.reject(
                    file,
                    label,
                    "unknown_image_id",
                    f"annotation refers to {what} {key(ann)}, not in the file",
                )
                continue
            q.annotations.append((label, ann.model_dump()))
        for label, item in self.dropped:
            try:
                q = pairs.get(key(_Loose.model_validate(item)))
            except (ValidationError, TypeError):
                continue
            if q is not None:
                q.spoiled = (label, f"its annotation {label} was rejected")

    def _plan_coco(self, file: str, stem: str, doc: dict[str, Any]) -> None:
        categories: list[tuple[int, str]] = []
        for label, cat in self._records(file, doc, "categories", Category):
            phrase = self.noun_phrase_ok(file, label, cat.name)
            if phrase is not None:
                categories.append((cat.id, phrase))
        pairs: dict[tuple[int, int], RawQuery] = {}
        for label, img in self._records(file, doc, "images", CocoImage):
            media = self.image_media(file, label, img, "pixels")
            if media is None:
                continue
            for cid, phrase in categories:
                origin_id = f"{img.id}:{cid}"
                q = RawQuery(self._qid(stem, origin_id), origin_id, phrase, True, label)
                media.queries.append(q)
                pairs[(img.id, cid)] = q
        self._attach(
            file, doc, CocoAnnotation, pairs, lambda a: (a.image_id, a.category_id), "(image id, category id)"
        )

    def _plan_video(self, file: str, stem: str, doc: dict[str, Any]) -> None:
        videos = {v.id: (label, v) for label, v in self._records(file, doc, "videos", Video)}
        pairs: dict[tuple[int, int], RawQuery] = {}
        for i, item in enumerate(doc.get("video_np_pairs", [])):
            label = f"video_np_pairs[{i}]"
            try:
                pair = VideoNpPair.model_validate(item)
            except ValidationError as exc:
                err = exc.errors()[0]
                self.reject(file, label, "bad_record", f"{'.'.join(map(str, err['loc']))}: {err['msg']}")
                continue
            if pair.video_id not in videos:
                self.reject(
                    file, label, "unknown_image_id", f"pair refers to unknown video id {pair.video_id}"
                )
                continue
            if (pair.video_id, pair.category_id) in pairs:
                self.reject(
                    file,
                    label,
                    "duplicate_id",
                    f"duplicate pair (video {pair.video_id}, category {pair.category_id})",
                )
                continue
            phrase = self.noun_phrase_ok(file, label, pair.noun_phrase)
            if phrase is None:
                continue
            vlabel, video = videos[pair.video_id]
            media = self.media_for(
                file,
                vlabel,
                "video",
                str(video.id),
                video.width,
                video.height,
                [self.image_path(f) for f in video.file_names],
                "pixels",
            )
            if media is None:
                continue
            origin_id = f"{pair.video_id}:{pair.category_id}"
            q = RawQuery(
                self._qid(stem, origin_id),
                origin_id,
                phrase,
                True,
                label,
                expected_masklets=pair.num_masklets,
            )
            media.queries.append(q)
            pairs[(pair.video_id, pair.category_id)] = q
        self._attach(
            file,
            doc,
            VideoAnnotation,
            pairs,
            lambda a: (a.video_id, a.category_id),
            "(video id, category id)",
        )


def plan_source(spec: SourceSpec, files: SourceFiles, max_noun_phrase_chars: int) -> Plan:
    """Plan every top-level ``*.json`` annotation file of one source, in name order."""
    planner = Planner(spec, files, max_noun_phrase_chars)
    annotation_files = sorted(r for r in files.files() if r.endswith(".json") and "/" not in r)
    if not annotation_files:
        planner.reject(spec.path, "<source>", "bad_record", "no annotation JSON at the top of the source")
    for rel in annotation_files:
        planner.plan_file(rel)
    media = sorted(planner.media.values(), key=lambda m: m.media_id)
    return Plan(media=[m for m in media if m.queries], rejects=planner.rejects)
