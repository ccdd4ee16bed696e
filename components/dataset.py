"""Read a dataset version: open its manifest, stream its records.

The trainer's entry to the data. Records stream shard by shard, row group by
row group, never the whole dataset in memory; a stream can be split by rank
and data-loader worker (each row group goes to exactly one of them), and
sources can be mixed with sampling weights (e.g. HQ/SYN/EXT/video from config).
"""

from __future__ import annotations

import logging
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from components.errors import ConfigError, DataError
from components.schemas import SCHEMA_VERSION, DatasetManifest, MediaRecord, ShardInfo, ontology_key
from components.storage import ObjectStore, StorageError

if TYPE_CHECKING:
    from components.ontology import Ontology

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Unit:
    """One row group of one shard: the smallest piece of work handed to a reader."""

    shard: ShardInfo
    row_group: int


class Dataset:
    def __init__(self, uri: str, store: ObjectStore, manifest: DatasetManifest) -> None:
        self.uri = uri.rstrip("/")
        self.store = store
        self.manifest = manifest
        self._units: list[Unit] | None = None

    @classmethod
    def open(cls, uri: str, store: ObjectStore | None = None) -> Dataset:
        """Open ``s3://bucket/datasets/NAME/VERSION``; only committed versions (with a manifest) open."""
        store = store or ObjectStore.from_env()
        prefix = store.key_of(uri.rstrip("/"))
        if not prefix.startswith("datasets/") or prefix.count("/") != 2:
            raise ConfigError(f"{uri}: expected s3://BUCKET/datasets/NAME/VERSION")
        key = f"{prefix}/manifest.json"
        if not store.exists(key):
            raise DataError(f"{uri}: no manifest.json (not a dataset, or not committed yet)")
        manifest = DatasetManifest.model_validate(store.get_json(key))
        if manifest.schema_version != SCHEMA_VERSION:
            raise DataError(
                f"{uri}: schema_version {manifest.schema_version}, this reader knows {SCHEMA_VERSION}"
            )
        return cls(uri, store, manifest)

    def ontology(self) -> Ontology | None:
        """The concept ontology this version's hard negatives were mined from, if it carries one."""
        from components.ontology import Ontology

        key = ontology_key(self.manifest.name, self.manifest.version)
        if not self.store.exists(key):
            return None
        try:
            return Ontology.model_validate_json(self.store.get_bytes(key))
        except ValueError as exc:
            raise DataError(f"{self.store.uri(key)}: invalid ontology: {exc}") from None

    @property
    def sources(self) -> list[str]:
        return sorted(self.manifest.sources)

    def units(self, sources: list[str] | None = None) -> list[Unit]:
        """Every (shard, row group), in manifest order; row-group counts come from the Parquet footers."""
        if self._units is None:
            import pyarrow.parquet as pq

            fs = self.store.arrow_fs()
            units: list[Unit] = []
            for shard in self.manifest.shards:
                with fs.open_input_file(self.store.arrow_path(shard.key)) as fh:
                    groups = pq.ParquetFile(fh).metadata.num_row_groups
                units.extend(Unit(shard, g) for g in range(groups))
            self._units = units
        wanted = set(sources) if sources is not None else None
        return [u for u in self._units if wanted is None or u.shard.source in wanted]

    def read_unit(self, unit: Unit) -> list[MediaRecord]:
        import pyarrow.parquet as pq

        fs = self.store.arrow_fs()
        try:
            with fs.open_input_file(self.store.arrow_path(unit.shard.key)) as fh:
                table = pq.ParquetFile(fh).read_row_group(unit.row_group)
        except OSError as exc:
            raise StorageError(f"reading {self.store.uri(unit.shard.key)}: {exc}") from exc
        return [MediaRecord.from_row(row) for row in table.to_pylist()]

    def records(
        self,
        *,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
        sources: list[str] | None = None,
        shuffle_seed: int | None = None,
    ) -> Iterator[MediaRecord]:
        """Stream this reader's share: row groups ``i`` with ``i % (W*K) == rank*K + worker``."""
        if not (0 <= rank < world_size and 0 <= worker < num_workers):
            raise ConfigError(f"bad shard spec rank={rank}/{world_size} worker={worker}/{num_workers}")
        units = self.units(sources)
        if shuffle_seed is not None:
            random.Random(shuffle_seed).shuffle(units)
        slot, slots = rank * num_workers + worker, world_size * num_workers
        for unit in units[slot::slots]:
            records = self.read_unit(unit)
            if shuffle_seed is not None:
                random.Random(f"{shuffle_seed}:{unit.shard.key}:{unit.row_group}").shuffle(records)
            yield from records

    def mixed(
        self,
        weights: Mapping[str, float],
        *,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        worker: int = 0,
        num_workers: int = 1,
    ) -> Iterator[MediaRecord]:
        """An endless stream that draws each record's source by ``weights`` (re-reading a source when spent).

        Sources with weight 0 are skipped; a weighted source missing from the dataset is an error.
        """
        active = {s: float(w) for s, w in weights.items() if w > 0}
        missing = sorted(set(active) - set(self.manifest.sources))
        if missing:
            raise ConfigError(f"source weights name {missing}, but {self.uri} holds {self.sources}")
        if not active:
            raise ConfigError("every source weight is 0")
        rng = random.Random(f"{seed}:{rank}:{worker}")
        epochs = dict.fromkeys(active, 0)
        streams = {s: self._cycle(s, seed, rank, world_size, worker, num_workers, epochs) for s in active}
        names, probs = list(active), list(active.values())
        while True:
            yield next(streams[rng.choices(names, probs)[0]])

    def _cycle(
        self,
        source: str,
        seed: int,
        rank: int,
        world_size: int,
        worker: int,
        num_workers: int,
        epochs: dict[str, int],
    ) -> Iterator[MediaRecord]:
        while True:
            n = 0
            for record in self.records(
                rank=rank,
                world_size=world_size,
                worker=worker,
                num_workers=num_workers,
                sources=[source],
                shuffle_seed=seed + epochs[source],
            ):
                n += 1
                yield record
            if n == 0:
                # fewer row groups than readers: fall back to the whole source so no reader starves
                for record in self.records(sources=[source], shuffle_seed=seed + epochs[source]):
                    n += 1
                    yield record
            if n == 0:
                raise DataError(f"{self.uri}: source {source!r} has no records")
            epochs[source] += 1
