"""A rank's /metrics endpoint: training series present, GPU series absent (not zero) without a GPU."""

from __future__ import annotations

import urllib.request

from prometheus_client.parser import text_string_to_metric_families

from components.train.metrics import TrainingMetrics
from tests.conftest import free_port


def test_metrics_endpoint_serves_training_series_and_no_fake_gpu() -> None:
    metrics = TrainingMetrics("run1", "detector", rank=1, device_index=0)  # no NVML here: absent series
    port = metrics.serve(free_port(), addr="127.0.0.1")
    try:
        metrics.observe_step(
            3,
            samples=8,
            step_seconds=0.5,
            data_wait_seconds=0.01,
            losses={"total": 1.5, "mask_dice": 0.2},
            lrs={"rest": 1e-4},
        )
        metrics.observe_checkpoint()
        text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    finally:
        metrics.close()
    samples = {
        (s.name, s.labels.get("term", s.labels.get("group", ""))): s.value
        for f in text_string_to_metric_families(text)
        for s in f.samples
    }
    assert samples[("sam3_train_samples_per_second", "")] == 16
    assert samples[("sam3_train_loss", "mask_dice")] == 0.2
    assert samples[("sam3_train_learning_rate", "rest")] == 1e-4
    assert samples[("sam3_train_step", "")] == 3
    assert 0 <= samples[("sam3_train_checkpoint_age_seconds", "")] < 60
    assert not [name for name, _ in samples if name.startswith("sam3_gpu_")]
    assert 'rank="1"' in text and 'stage="detector"' in text
