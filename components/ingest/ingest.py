"""Ingest: annotation files + media -> versioned Parquet shards in the object store.

Flow (docs/architecture.md, "Data contracts"): fingerprint the inputs -> version; if the
version's manifest exists, stop (a no-op). Otherwise plan every source (cheap,
identical in every worker), cut shards, check and write the shards of this
partition (``index % N == I``), stage the partition's summary, and, on commit,
merge the summaries into ``rejects.jsonl`` and ``manifest.json`` (last).
"""

from __future__ import annotations

import hashlib
import json
import logging
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict

from components.errors import ConfigError, DataError
from components.ingest.readers import MediaPlan, plan_source
from components.ingest.shards import encode_shard, plan_shards
from components.ingest.sources import SourceFiles, SourceSpec, open_source
from components.ingest.validate import ImageCheck, Limits, build_record
from components.progress import Progress
from components.schemas import (
    SCHEMA_VERSION,
    DatasetManifest,
    InputInfo,
    Reject,
    RejectsInfo,
    ShardInfo,
    SourceStats,
    dataset_prefix,
    manifest_key,
    shard_key,
    stats_by_source,
)
from components.storage import ObjectStore
from components.telemetry import IngestMetrics

log = logging.getLogger(__name__)

PRODUCER = "sam3-pipeline data ingest"


@dataclass(frozen=True)
class IngestOptions:
    max_pixels: int = 64_000_000
    image_check: ImageCheck = "structure"
    max_noun_phrase_chars: int = 200
    shard_target_bytes: int = 32 * 1024 * 1024
    shard_max_rows: int = 1024
    row_group_rows: int = 64
    check_threads: int = 2  # how, not what: not part of the version

    def identity(self) -> dict[str, int | str]:
        """The options that shape the output (and so the version)."""
        return {k: v for k, v in asdict(self).items() if k != "check_threads"}


class PartitionSummary(BaseModel):
    """What one partition wrote; staged until the commit merges all of them."""

    model_config = ConfigDict(extra="forbid")

    partition: int
    partitions: int
    planned_shards: int
    shards: list[ShardInfo]
    rejects: list[Reject]


@dataclass
class IngestResult:
    uri: str
    manifest: DatasetManifest | None
    created: bool


def fingerprint(spec: SourceSpec, files: SourceFiles) -> InputInfo:
    listing = files.files()
    h = hashlib.sha256()
    for rel in sorted(listing):
        h.update(f"{rel}\0{files.fingerprint(rel)}\n".encode())
    return InputInfo(
        tag=spec.tag, path=spec.path, files=len(listing), bytes=sum(listing.values()), sha256=h.hexdigest()
    )


def compute_version(inputs: list[tuple[SourceSpec, InputInfo]], options: IngestOptions) -> str:
    doc = {
        "schema_version": SCHEMA_VERSION,
        "producer": PRODUCER,
        "inputs": [[spec.tag, spec.name, info.sha256] for spec, info in inputs],
        "options": options.identity(),
    }
    return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:16]


class Ingest:
    """One ingest of a set of sources into dataset ``name``."""

    def __init__(
        self,
        name: str,
        sources: list[SourceSpec],
        store: ObjectStore,
        options: IngestOptions | None = None,
        progress: Progress | None = None,
    ) -> None:
        if not name or "/" in name or name in (".", ".."):
            raise ConfigError(f"--dataset {name!r}: must be a plain name without '/'")
        if not sources:
            raise ConfigError("give at least one --source TAG=PATH")
        self.name = name
        self.store = store
        self.options = options or IngestOptions()
        self.progress = progress or (lambda stage, done, total: None)
        self.specs = sorted(set(sources), key=lambda s: (s.tag, s.name, s.path))
        names = [(s.tag, s.name) for s in self.specs]
        if len(set(names)) != len(names):
            raise ConfigError("two sources share a tag and folder name; their media ids would collide")
        self.files = {spec: open_source(spec, store) for spec in self.specs}
        self.metrics = IngestMetrics(name)
        self._inputs: list[tuple[SourceSpec, InputInfo]] | None = None

    # -- identity ----------------------------------------------------------------
    @property
    def inputs(self) -> list[tuple[SourceSpec, InputInfo]]:
        if self._inputs is None:
            out = []
            for i, spec in enumerate(self.specs):
                self.progress("fingerprint", i, len(self.specs))
                out.append((spec, fingerprint(spec, self.files[spec])))
            self.progress("fingerprint", len(self.specs), len(self.specs))
            self._inputs = out
        return self._inputs

    @property
    def version(self) -> str:
        return compute_version(self.inputs, self.options)

    @property
    def prefix(self) -> str:
        return dataset_prefix(self.name, self.version)

    @property
    def uri(self) -> str:
        return self.store.uri(self.prefix)

    def staging_key(self, partition: int, partitions: int) -> str:
        return f"{self.prefix}/_staging/part-{partition:04d}-of-{partitions:04d}.json"

    def committed(self) -> bool:
        return self.store.exists(manifest_key(self.name, self.version))

    # -- work ----------------------------------------------------------------------
    def run(self, strict: bool = False) -> IngestResult:
        """Single-worker ingest: partition 0 of 1, then commit."""
        if self.committed():
            log.info("dataset %s already exists: nothing to do", self.uri)
            return IngestResult(self.uri, self.load_manifest(), created=False)
        self.run_partition(0, 1)
        return self.commit(strict=strict)

    def plan(self) -> tuple[list[MediaPlan], list[Reject]]:
        media: list[MediaPlan] = []
        rejects: list[Reject] = []
        for spec in self.specs:
            plan = plan_source(spec, self.files[spec], self.options.max_noun_phrase_chars)
            media.extend(plan.media)
            rejects.extend(plan.rejects)
        return media, rejects

    def run_partition(self, partition: int, partitions: int) -> PartitionSummary:
        if not 0 <= partition < partitions:
            raise ConfigError(f"--partition {partition}/{partitions}: need 0 <= I < N")
        staged = self.staging_key(partition, partitions)
        if self.committed():
            log.info(
                "dataset %s already committed: partition %d/%d has nothing to do",
                self.uri,
                partition,
                partitions,
            )
            return PartitionSummary(
                partition=partition, partitions=partitions, planned_shards=0, shards=[], rejects=[]
            )
        if self.store.exists(staged):
            log.info("partition %d/%d already staged at %s", partition, partitions, self.store.uri(staged))
            return PartitionSummary.model_validate(self.store.get_json(staged))
        self.store.ensure_bucket()
        media, plan_rejects = self.plan()
        shards = plan_shards(media, self.options.shard_target_bytes, self.options.shard_max_rows)
        mine = [s for s in shards if s.index % partitions == partition]
        rejects = list(plan_rejects) if partition == 0 else []
        limits = Limits(max_pixels=self.options.max_pixels, image_check=self.options.image_check)
        written: list[ShardInfo] = []
        total_media = sum(len(s.media) for s in mine)
        done = 0
        with (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="upload") as uploads,
            ThreadPoolExecutor(max_workers=self.options.check_threads, thread_name_prefix="check") as checks,
        ):
            pending: list[tuple[Future[object], ShardInfo]] = []
            for shard in mine:
                records = []
                # image decoding and file reads release the GIL: check media on a few threads, in order
                for record, bad in checks.map(
                    lambda m: build_record(m, self.files[self._spec_of(m)], limits), shard.media
                ):
                    rejects.extend(bad)
                    if record is not None:
                        records.append(record)
                    done += 1
                    self.progress("ingest", done, total_media)
                if not records:
                    continue
                data = encode_shard(records, self.options.row_group_rows)
                key = shard_key(self.name, self.version, shard.index)
                info = ShardInfo(
                    key=key,
                    source=shard.source,
                    rows=len(records),
                    bytes=len(data),
                    sha256=hashlib.sha256(data).hexdigest(),
                    stats=SourceStats.of(records),
                )
                # upload in the background while the next shard is checked; at most one waits
                pending.append((uploads.submit(self.store.put_bytes, key, data), info))
                while len(pending) > 1:
                    fut, done_info = pending.pop(0)
                    fut.result()
                    written.append(done_info)
            for fut, done_info in pending:
                fut.result()
                written.append(done_info)
        summary = PartitionSummary(
            partition=partition,
            partitions=partitions,
            planned_shards=len(shards),
            shards=written,
            rejects=rejects,
        )
        for info in written:
            self.metrics.count_records(info.source, info.stats.media, info.stats.queries)
        for r in rejects:
            self.metrics.count_reject(r.source, r.code)
        self.metrics.push("sam3-ingest", {"dataset": self.name, "partition": f"{partition}-of-{partitions}"})
        self.store.put_json(staged, summary)  # after its shards: a staged summary means the shards are there
        return summary

    def _spec_of(self, media: MediaPlan) -> SourceSpec:
        for spec in self.specs:
            if media.media_id.startswith(f"{spec.tag}:{spec.name}/"):
                return spec
        raise AssertionError(media.media_id)

    def commit(self, strict: bool = False) -> IngestResult:
        """Merge the staged partitions into one version: rejects.jsonl, then manifest.json."""
        if self.committed():
            return IngestResult(self.uri, self.load_manifest(), created=False)
        staged_prefix = f"{self.prefix}/_staging/"
        staged = [k for k, _ in self.store.list_objects(staged_prefix)]
        if not staged:
            raise DataError(f"nothing staged under {self.store.uri(staged_prefix)}: run the partitions first")
        summaries = [PartitionSummary.model_validate(self.store.get_json(k)) for k in staged]
        counts = {s.partitions for s in summaries}
        if len(counts) != 1:
            raise DataError(
                f"staged partitions disagree on N: {sorted(counts)}; clear {staged_prefix} and re-run"
            )
        n = counts.pop()
        have = {s.partition for s in summaries}
        missing = sorted(set(range(n)) - have)
        if missing:
            raise DataError(f"partitions {missing} of {n} have not finished; run them, then commit again")
        shards = sorted((sh for s in summaries for sh in s.shards), key=lambda sh: sh.key)
        rejects = sorted(
            (r for s in summaries for r in s.rejects), key=lambda r: (r.source, r.file, r.record)
        )
        if not shards:
            raise DataError(f"no valid records remained ({len(rejects)} rejected); first: {_first(rejects)}")
        if strict and rejects:
            raise DataError(f"--strict: {len(rejects)} records rejected; first: {_first(rejects)}")
        info = RejectsInfo(count=len(rejects))
        for r in rejects:
            info.by_code[r.code] = info.by_code.get(r.code, 0) + 1
        if rejects:
            info.key = f"{self.prefix}/rejects.jsonl"
            body = "".join(r.model_dump_json() + "\n" for r in rejects).encode()
            self.store.put_bytes(info.key, body, "application/x-ndjson")
        manifest = DatasetManifest(
            name=self.name,
            version=self.version,
            created_at=datetime.now(UTC),
            producer=PRODUCER,
            inputs=[i for _, i in self.inputs],
            options=dict(self.options.identity()),
            sources=stats_by_source(shards),
            shards=shards,
            rejects=info,
        )
        self.store.put_json(manifest_key(self.name, self.version), manifest)  # last: the commit
        for key in staged:
            self.store.delete(key)
        return IngestResult(self.uri, manifest, created=True)

    def load_manifest(self) -> DatasetManifest:
        return DatasetManifest.model_validate(self.store.get_json(manifest_key(self.name, self.version)))


def _first(rejects: list[Reject]) -> str:
    if not rejects:
        return "-"
    r = rejects[0]
    return f"{r.file} {r.record}: {r.reason}"
