"""Shard planning and Parquet encoding.

Shard boundaries are a pure function of the planned media (their order and
estimated sizes), never of how many workers run, so a partitioned ingest
writes byte-identical shards to a single-worker one. A shard never mixes
sources, so readers can weight sources without reading rows they skip.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from components.ingest.readers import MediaPlan
from components.schemas import SHARD_SCHEMA, MediaRecord, records_to_table


@dataclass
class ShardPlan:
    index: int
    source: str
    media: list[MediaPlan]


def plan_shards(media: list[MediaPlan], target_bytes: int, max_rows: int) -> list[ShardPlan]:
    """Cut the (already ordered) media into shards of at most ``max_rows`` rows and ~``target_bytes``."""
    shards: list[ShardPlan] = []
    current: list[MediaPlan] = []
    size = 0
    for m in media:
        if current and (
            m.source != current[0].source or len(current) >= max_rows or size + m.est_bytes > target_bytes
        ):
            shards.append(ShardPlan(len(shards), current[0].source, current))
            current, size = [], 0
        current.append(m)
        size += m.est_bytes
    if current:
        shards.append(ShardPlan(len(shards), current[0].source, current))
    return shards


def encode_shard(records: list[MediaRecord], row_group_rows: int) -> bytes:
    """Parquet bytes for one shard: frames stored as-is (already compressed), the rest zstd."""
    table = records_to_table(records)
    return encode_table(table, row_group_rows)


def encode_table(table: pa.Table, row_group_rows: int) -> bytes:
    sink = pa.BufferOutputStream()
    pq.write_table(
        table.cast(SHARD_SCHEMA),
        sink,
        row_group_size=row_group_rows,
        compression={name: ("NONE" if name == "frames" else "ZSTD") for name in SHARD_SCHEMA.names},
        use_dictionary=["media_id", "source", "kind"],
        write_statistics=["media_id", "source", "kind", "width", "height"],
    )
    return sink.getvalue().to_pybytes()
