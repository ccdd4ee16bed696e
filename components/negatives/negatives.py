"""`data negatives`: a new dataset version with up to K hard negatives per image.

Reads the parent version shard by shard and writes the same shards with the
added queries (``positive=False, hard_negative=True, exhaustive=True``, no
instances). Videos pass through unchanged. The new version is a content hash
of the parent version, K and the ontology, so a re-run is a no-op; its
manifest names the parent. Data first, manifest last.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from components.dataset import Dataset, Unit
from components.errors import ConfigError
from components.ingest.config import DataConfig
from components.ingest.datasets import synthetic_prefix
from components.ingest.shards import encode_shard
from components.negatives.mining import NegativeMiner
from components.ontology import Ontology
from components.progress import Progress
from components.schemas import (
    SCHEMA_VERSION,
    DatasetManifest,
    MediaRecord,
    Query,
    ShardInfo,
    SourceStats,
    manifest_key,
    ontology_key,
    stats_by_source,
)
from components.storage import ObjectStore, sha256_bytes
from components.telemetry import IngestMetrics

log = logging.getLogger(__name__)

PRODUCER = "sam3-pipeline data negatives"
MAX_PER_IMAGE = 100


def add_negatives(record: MediaRecord, miner: NegativeMiner, k: int) -> MediaRecord:
    if record.kind != "image" or k == 0:
        return record
    positives = {q.noun_phrase for q in record.queries if q.positive}
    existing = {q.noun_phrase for q in record.queries}
    chosen = miner.choose(record.media_id, positives, existing, k)
    added = [
        Query(
            query_id=f"{record.media_id}#neg:{phrase}",
            origin_id="",
            noun_phrase=phrase,
            positive=False,
            exhaustive=True,
            hard_negative=True,
        )
        for phrase in chosen
    ]
    return replace(record, queries=record.queries + added)


def mine_negatives(
    dataset_uri: str,
    per_image: int,
    ontology_path: Path,
    store: ObjectStore,
    progress: Progress | None = None,
) -> tuple[str, DatasetManifest, bool]:
    """Write (or find) the derived version; return (uri, manifest, created)."""
    if not 0 <= per_image <= MAX_PER_IMAGE:
        raise ConfigError(f"--per-image {per_image}: must be between 0 and {MAX_PER_IMAGE}")
    progress = progress or (lambda stage, done, total: None)
    parent = Dataset.open(dataset_uri, store)
    ontology = Ontology.load(ontology_path)
    ontology_bytes = Path(ontology_path).read_bytes()
    name = parent.manifest.name
    digest = hashlib.sha256(
        f"{SCHEMA_VERSION}\0{PRODUCER}\0{parent.manifest.version}\0{per_image}\0".encode()
        + hashlib.sha256(ontology_bytes).digest()
    ).hexdigest()[:16]
    uri = store.uri(f"datasets/{name}/{digest}")
    mkey = manifest_key(name, digest)
    okey = ontology_key(name, digest)
    if store.exists(mkey):
        if not store.exists(okey):  # a version mined before versions carried their ontology
            store.put_bytes(okey, ontology_bytes)
        log.info("dataset %s already exists: nothing to do", uri)
        return uri, DatasetManifest.model_validate(store.get_json(mkey)), False
    miner = NegativeMiner(ontology)
    metrics = IngestMetrics(name)
    opts = parent.manifest.options
    row_group_rows = int(opts.get("row_group_rows", 64))  # type: ignore[call-overload]
    shards: list[ShardInfo] = []
    total = parent.manifest.media
    done = 0
    units_of: dict[str, list[Unit]] = {}
    for unit in parent.units():
        units_of.setdefault(unit.shard.key, []).append(unit)
    for shard in parent.manifest.shards:
        records = []
        for unit in units_of.get(shard.key, []):
            for record in parent.read_unit(unit):
                records.append(add_negatives(record, miner, per_image))
                done += 1
                progress("negatives", done, total)
        data = encode_shard(records, row_group_rows)
        key = f"datasets/{name}/{digest}/shards/{shard.key.rsplit('/', 1)[-1]}"
        store.put_bytes(key, data)
        stats = SourceStats.of(records)
        shards.append(
            ShardInfo(
                key=key,
                source=shard.source,
                rows=len(records),
                bytes=len(data),
                sha256=sha256_bytes(data),
                stats=stats,
            )
        )
        metrics.count_records(shard.source, stats.media, stats.queries)
    store.put_bytes(okey, ontology_bytes)  # beside the shards, before the manifest commits the version
    manifest = DatasetManifest(
        name=name,
        version=digest,
        created_at=datetime.now(UTC),
        producer=PRODUCER,
        parents=[parent.uri],
        inputs=parent.manifest.inputs,
        options={**opts, "negatives_per_image": per_image, "ontology_sha256": sha256_bytes(ontology_bytes)},
        sources=stats_by_source(shards),
        shards=shards,
        rejects=parent.manifest.rejects,
    )
    store.put_json(mkey, manifest)
    metrics.push("sam3-negatives", {"dataset": name})
    return uri, manifest, True


# -- the pipeline's step ----------------------------------------------------------------
def fetch_ontology(cfg: DataConfig, store: ObjectStore, dest: Path) -> Path:
    """The ontology the data config names (or the synthetic data's), as a local file."""
    if cfg.ontology is None and cfg.synthetic is None:
        raise ConfigError("data.ontology is needed to mine hard negatives")
    where = cfg.ontology or store.uri(f"{synthetic_prefix(cfg.synthetic)}/ontology.json")  # type: ignore[arg-type]
    if not where.startswith("s3://"):
        return Path(where)
    dest.write_bytes(store.get_bytes(store.key_of(where)))
    return dest


def hard_negatives(
    cfg: DataConfig, store: ObjectStore, dataset: str, progress: Progress | None = None
) -> str:
    """The pipeline's negatives step: mine ``dataset`` with the configured ontology; the new version's URI."""
    with tempfile.TemporaryDirectory(prefix="sam3-ontology-") as tmp:
        ontology = fetch_ontology(cfg, store, Path(tmp) / "ontology.json")
        uri, _, _ = mine_negatives(dataset, cfg.negatives_per_image, ontology, store, progress)
    return uri
