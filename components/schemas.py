"""Data contracts shared by the steps: the Parquet shard schema and the dataset manifest.

See docs/architecture.md ("Data contracts"). Change a field only
together with every reader.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

import pyarrow as pa
from pydantic import BaseModel, ConfigDict, Field

SCHEMA_VERSION = 1
SOURCE_TAGS = ("hq", "syn", "ext", "video")
SourceTag = Literal["hq", "syn", "ext", "video"]

BOX = pa.list_(pa.float32(), 4)
INSTANCE = pa.struct(
    [
        pa.field("object_id", pa.int32(), nullable=False),
        pa.field("crowd", pa.bool_(), nullable=False),
        # one element per frame; null where the object is not visible in that frame
        pa.field("boxes", pa.list_(BOX), nullable=False),  # normalised xywh
        pa.field("masks", pa.list_(pa.string()), nullable=False),  # COCO compressed RLE counts, size (h, w)
    ]
)
QUERY = pa.struct(
    [
        pa.field("query_id", pa.string(), nullable=False),
        pa.field("origin_id", pa.string(), nullable=False),  # the pair's id in its source file
        pa.field("noun_phrase", pa.string(), nullable=False),
        pa.field("positive", pa.bool_(), nullable=False),
        pa.field("hard_negative", pa.bool_(), nullable=False),
        pa.field("exhaustive", pa.bool_(), nullable=False),
        pa.field("instances", pa.list_(INSTANCE), nullable=False),
    ]
)
SHARD_SCHEMA = pa.schema(
    [
        pa.field("media_id", pa.string(), nullable=False),
        pa.field("source", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),  # source-relative file name or video id
        pa.field("width", pa.int32(), nullable=False),
        pa.field("height", pa.int32(), nullable=False),
        pa.field("frames", pa.list_(pa.binary()), nullable=False),
        pa.field("queries", pa.list_(QUERY), nullable=False),
    ],
    metadata={"sam3.schema_version": str(SCHEMA_VERSION)},
)


# -- in-memory records (what the reader yields and the writers take) ----------
@dataclass
class Instance:
    object_id: int
    boxes: list[list[float] | None]
    masks: list[str | None]
    crowd: bool = False


@dataclass
class Query:
    query_id: str
    origin_id: str
    noun_phrase: str
    positive: bool
    exhaustive: bool = True
    hard_negative: bool = False
    instances: list[Instance] = field(default_factory=list)


@dataclass
class MediaRecord:
    media_id: str
    source: str
    kind: Literal["image", "video"]
    origin: str
    width: int
    height: int
    frames: list[bytes]
    queries: list[Query]

    def to_row(self) -> dict[str, object]:
        return {
            "media_id": self.media_id,
            "source": self.source,
            "kind": self.kind,
            "origin": self.origin,
            "width": self.width,
            "height": self.height,
            "frames": self.frames,
            "queries": [
                {
                    "query_id": q.query_id,
                    "origin_id": q.origin_id,
                    "noun_phrase": q.noun_phrase,
                    "positive": q.positive,
                    "hard_negative": q.hard_negative,
                    "exhaustive": q.exhaustive,
                    "instances": [
                        {"object_id": i.object_id, "crowd": i.crowd, "boxes": i.boxes, "masks": i.masks}
                        for i in q.instances
                    ],
                }
                for q in self.queries
            ],
        }

    @classmethod
    def from_row(cls, row: dict[str, object]) -> MediaRecord:
        queries = [
            Query(
                query_id=q["query_id"],
                origin_id=q["origin_id"],
                noun_phrase=q["noun_phrase"],
                positive=q["positive"],
                hard_negative=q["hard_negative"],
                exhaustive=q["exhaustive"],
                instances=[
                    Instance(object_id=i["object_id"], crowd=i["crowd"], boxes=i["boxes"], masks=i["masks"])
                    for i in q["instances"]
                ],
            )
            for q in row["queries"]  # type: ignore[attr-defined]
        ]
        return cls(
            media_id=row["media_id"],  # type: ignore[arg-type]
            source=row["source"],  # type: ignore[arg-type]
            kind=row["kind"],  # type: ignore[arg-type]
            origin=row["origin"],  # type: ignore[arg-type]
            width=row["width"],  # type: ignore[arg-type]
            height=row["height"],  # type: ignore[arg-type]
            frames=row["frames"],  # type: ignore[arg-type]
            queries=queries,
        )


def records_to_table(records: list[MediaRecord]) -> pa.Table:
    return pa.Table.from_pylist([r.to_row() for r in records], schema=SHARD_SCHEMA)


# -- manifest -------------------------------------------------------------------
class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SourceStats(_Model):
    media: int = 0
    queries: int = 0
    positive_queries: int = 0
    negative_queries: int = 0
    hard_negatives: int = 0
    instances: int = 0

    def add(self, other: SourceStats) -> SourceStats:
        return SourceStats(**{k: getattr(self, k) + getattr(other, k) for k in SourceStats.model_fields})

    @classmethod
    def of(cls, records: list[MediaRecord]) -> SourceStats:
        qs = [q for r in records for q in r.queries]
        return cls(
            media=len(records),
            queries=len(qs),
            positive_queries=sum(q.positive for q in qs),
            negative_queries=sum(not q.positive for q in qs),
            hard_negatives=sum(q.hard_negative for q in qs),
            instances=sum(len(q.instances) for q in qs),
        )


class ShardInfo(_Model):
    key: str
    source: str
    rows: int
    bytes: int
    sha256: str
    stats: SourceStats


def stats_by_source(shards: list[ShardInfo]) -> dict[str, SourceStats]:
    """The manifest's per-source totals: the shards' stats summed by source, in source order."""
    sources: dict[str, SourceStats] = {}
    for shard in shards:
        sources[shard.source] = sources.get(shard.source, SourceStats()).add(shard.stats)
    return dict(sorted(sources.items()))


class Reject(_Model):
    source: str
    file: str
    record: str
    code: str = Field(description="short machine-readable reason, e.g. bad_rle")
    reason: str


class RejectsInfo(_Model):
    count: int = 0
    key: str | None = None
    by_code: dict[str, int] = Field(default_factory=dict)


class InputInfo(_Model):
    tag: SourceTag
    path: str
    files: int
    bytes: int
    sha256: str = Field(description="content hash of every file under the path")


class DatasetManifest(_Model):
    schema_version: int = SCHEMA_VERSION
    name: str
    version: str
    created_at: datetime
    producer: str
    parents: list[str] = Field(default_factory=list, description="URIs of the versions this one derives from")
    inputs: list[InputInfo] = Field(default_factory=list)
    options: dict[str, object] = Field(default_factory=dict)
    sources: dict[str, SourceStats]
    shards: list[ShardInfo]
    rejects: RejectsInfo

    @property
    def media(self) -> int:
        return sum(s.media for s in self.sources.values())

    @property
    def queries(self) -> int:
        return sum(s.queries for s in self.sources.values())


def dataset_prefix(name: str, version: str) -> str:
    return f"datasets/{name}/{version}"


def stage_prefix(run_id: str, stage: str) -> str:
    """Where a run's stage keeps its checkpoints, training result and evaluation."""
    return f"runs/{run_id}/{stage}"


def stage_result_key(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/result.json"


def executions_prefix(run_id: str) -> str:
    return f"runs/{run_id}/executions/"


def execution_prefix(run_id: str, execution: str) -> str:
    """Records of one pipeline execution (gate decisions, promotion, outcome) over a run's stages."""
    return f"{executions_prefix(run_id)}{execution or 'manual'}"


def evaluation_prefix(run_id: str, stage: str) -> str:
    return f"{stage_prefix(run_id, stage)}/eval"


def evaluation_metrics_key(run_id: str, stage: str) -> str:
    return f"{evaluation_prefix(run_id, stage)}/metrics.json"


def manifest_key(name: str, version: str) -> str:
    return f"{dataset_prefix(name, version)}/manifest.json"


def ontology_key(name: str, version: str) -> str:
    """The concept ontology a version's hard negatives were mined from (stage 0 closes its labels with it)."""
    return f"{dataset_prefix(name, version)}/ontology.json"


def shard_key(name: str, version: str, index: int) -> str:
    return f"{dataset_prefix(name, version)}/shards/part-{index:05d}.parquet"
