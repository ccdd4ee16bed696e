"""Prometheus metrics shared by the steps (names start with ``sam3_``).

Short batch steps (ingest, negatives) count into their own registry and push
it to a Pushgateway when ``SAM3_PUSHGATEWAY_URL`` is set; long-running
training ranks serve ``/metrics`` instead.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from prometheus_client import CollectorRegistry, Counter, push_to_gateway

log = logging.getLogger(__name__)

PUSHGATEWAY_ENV = "SAM3_PUSHGATEWAY_URL"


class IngestMetrics:
    """Counters for one ingest (or negatives) run."""

    def __init__(self, dataset: str) -> None:
        self.dataset = dataset
        self.registry = CollectorRegistry()
        self.records = Counter(
            "sam3_ingest_records",
            "Records written into dataset shards",
            ["dataset", "source", "unit"],
            registry=self.registry,
        )
        self.rejects = Counter(
            "sam3_ingest_rejects",
            "Input records rejected, by source and reason code",
            ["dataset", "source", "reason"],
            registry=self.registry,
        )
        self.bytes = Counter(
            "sam3_ingest_shard_bytes",
            "Bytes of Parquet shards written",
            ["dataset", "source"],
            registry=self.registry,
        )

    def count_records(self, source: str, media: int, queries: int) -> None:
        self.records.labels(self.dataset, source, "media").inc(media)
        self.records.labels(self.dataset, source, "queries").inc(queries)

    def count_reject(self, source: str, reason: str) -> None:
        self.rejects.labels(self.dataset, source, reason).inc()

    def push(self, job: str, grouping: Mapping[str, str] | None = None) -> bool:
        """Push to the Pushgateway named by SAM3_PUSHGATEWAY_URL; False when none is configured."""
        url = os.environ.get(PUSHGATEWAY_ENV)
        if not url:
            return False
        try:
            push_to_gateway(
                url, job=job, registry=self.registry, grouping_key=dict(grouping or {}), timeout=10
            )
        except OSError as exc:  # metrics must never fail the data step
            log.warning("could not push metrics to %s: %s", url, exc)
            return False
        return True
