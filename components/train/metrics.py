"""Training metrics: a Prometheus ``/metrics`` endpoint per rank, and a log line sink.

GPU series come from NVML at scrape time, for the GPU this rank uses; where
there is no GPU or no driver the series are absent (never zero) and nothing
fails. Names start with ``sam3_``; every series carries run, stage and rank.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterator, Mapping

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

log = logging.getLogger(__name__)


class GpuCollector(Collector):
    """``sam3_gpu_utilization_ratio`` and ``sam3_gpu_memory_used_bytes`` for one GPU, read at scrape time."""

    def __init__(self, device_index: int | None, labels: Mapping[str, str]) -> None:
        self.labels = dict(labels)
        self.handle = None
        if device_index is None:
            return
        try:
            import pynvml

            pynvml.nvmlInit()
            visible = os.environ.get("CUDA_VISIBLE_DEVICES")
            nvml_index = device_index
            if visible and visible.split(",")[device_index].strip().isdigit():
                nvml_index = int(visible.split(",")[device_index])
            self.handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
            self.gpu = str(nvml_index)
        except Exception as exc:  # no driver, no library, no device: the series stay absent
            log.info("no NVML GPU metrics: %s", exc)
            self.handle = None

    def collect(self) -> Iterator[GaugeMetricFamily]:
        if self.handle is None:
            return
        import pynvml

        names = [*self.labels, "gpu"]
        values = [*self.labels.values(), self.gpu]
        try:
            util = pynvml.nvmlDeviceGetUtilizationRates(self.handle).gpu / 100.0
            used = pynvml.nvmlDeviceGetMemoryInfo(self.handle).used
        except Exception as exc:
            log.warning("NVML read failed: %s", exc)
            return
        g = GaugeMetricFamily(
            "sam3_gpu_utilization_ratio", "GPU utilisation (0-1) over the last sample period", labels=names
        )
        g.add_metric(values, util)
        yield g
        m = GaugeMetricFamily("sam3_gpu_memory_used_bytes", "GPU memory in use", labels=names)
        m.add_metric(values, float(used))
        yield m


class TrainingMetrics:
    """Everything a rank reports; `serve()` exposes it on ``base_port + local_rank``."""

    def __init__(self, run_id: str, stage: str, rank: int, device_index: int | None) -> None:
        self.registry = CollectorRegistry()
        self.labels = {"run_id": run_id, "stage": stage, "rank": str(rank)}
        names = list(self.labels)
        r = self.registry
        self.steps = Counter("sam3_train_steps", "Optimizer steps taken", names, registry=r)
        self.samples = Counter("sam3_train_samples", "Images and video clips consumed", names, registry=r)
        self.samples_per_second = Gauge(
            "sam3_train_samples_per_second", "Images and clips per second, last step", names, registry=r
        )
        self.step_seconds = Gauge("sam3_train_step_seconds", "Wall time of the last step", names, registry=r)
        self.data_wait = Gauge(
            "sam3_train_step_data_wait_seconds", "Time the last step waited for data", names, registry=r
        )
        self.data_wait_total = Counter(
            "sam3_train_data_wait_seconds", "Total time waiting for data", names, registry=r
        )
        self.loss = Gauge("sam3_train_loss", "Loss of the last step, per term", [*names, "term"], registry=r)
        self.lr = Gauge(
            "sam3_train_learning_rate", "Learning rate per parameter group", [*names, "group"], registry=r
        )
        self.step = Gauge("sam3_train_step", "Current step", names, registry=r)
        self.last_step_time = Gauge(
            "sam3_train_last_step_timestamp_seconds", "When the last step finished", names, registry=r
        )
        self.last_checkpoint_time = Gauge(
            "sam3_train_last_checkpoint_timestamp_seconds",
            "When the last checkpoint was committed",
            names,
            registry=r,
        )
        self.checkpoint_age = Gauge(
            "sam3_train_checkpoint_age_seconds", "Seconds since the last checkpoint", names, registry=r
        )
        self._checkpoint_at = time.time()
        self.checkpoint_age.labels(**self.labels).set_function(lambda: time.time() - self._checkpoint_at)
        self.registry.register(GpuCollector(device_index, self.labels))
        self._server: object | None = None

    def serve(self, port: int, addr: str = "0.0.0.0") -> int:  # pods are scraped by their IP
        server, _thread = start_http_server(port, addr=addr, registry=self.registry)
        self._server = server
        bound = int(server.server_address[1])
        log.info("serving metrics on %s:%d/metrics", addr, bound)
        return bound

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()  # type: ignore[attr-defined]
            self._server.server_close()  # type: ignore[attr-defined]
            self._server = None

    def observe_step(
        self,
        step: int,
        samples: int,
        step_seconds: float,
        data_wait_seconds: float,
        losses: Mapping[str, float],
        lrs: Mapping[str, float],
    ) -> None:
        lab = self.labels
        self.steps.labels(**lab).inc()
        self.samples.labels(**lab).inc(samples)
        self.samples_per_second.labels(**lab).set(samples / step_seconds if step_seconds > 0 else 0.0)
        self.step_seconds.labels(**lab).set(step_seconds)
        self.data_wait.labels(**lab).set(data_wait_seconds)
        self.data_wait_total.labels(**lab).inc(data_wait_seconds)
        for term, value in losses.items():
            self.loss.labels(**lab, term=term).set(value)
        for group, value in lrs.items():
            self.lr.labels(**lab, group=group).set(value)
        self.step.labels(**lab).set(step)
        self.last_step_time.labels(**lab).set_to_current_time()

    def observe_checkpoint(self) -> None:
        self._checkpoint_at = time.time()
        self.last_checkpoint_time.labels(**self.labels).set(self._checkpoint_at)
