"""End to end: a real Prometheus scrapes a real 2-rank torchrun training and the stall alert fires.

Prometheus (the Debian binary) scrapes both ranks every second and evaluates a copy of
the production rules whose durations are cut to seconds. Once both ranks report steps
and no stall alert is pending, rank 1 is frozen with SIGSTOP: rank 0 then hangs in the
next all-reduce while still serving /metrics (the frozen-timestamp case) and rank 1 stops
answering scrapes (the unreachable case); Sam3TrainingStalled must fire for both.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
import yaml

from components.train.config import TrainConfig
from tests.conftest import free_port
from tests.monitoring.names import RULES
from tests.train.test_torchrun import torchrun

pytestmark = pytest.mark.slow

STALL_SECONDS = 6  # the production rule says 600
T = TypeVar("T")


def fast_rules(dest: Path) -> Path:
    """The production rules with every `for:` at 1s and the 10-minute stall threshold at a few seconds."""
    text = RULES.read_text()
    stall = 'time() - sam3_train_last_step_timestamp_seconds{job="sam3-training"} > 600'
    assert stall in text, "the stall rule changed: update this test"
    text = text.replace(stall, stall.replace("> 600", f"> {STALL_SECONDS}"))
    text, n = re.subn(r"\bfor: \d+[smh]\b", "for: 1s", text)
    assert n >= 4
    dest.write_text(text)
    return dest


def two_free_ports() -> int:
    """A base port whose successor is free too (rank r serves base + r)."""
    for _ in range(50):
        base = free_port()
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", base + 1))
            except OSError:
                continue
        return base
    raise RuntimeError("no two consecutive free ports")


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.loads(response.read())


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, alive: Callable[[], None]) -> T:
    deadline = time.monotonic() + timeout
    while True:
        alive()
        try:
            found = probe()
        except OSError:
            found = None
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")
        time.sleep(0.5)


@pytest.fixture
def prometheus(tmp_path: Path) -> Iterator[tuple[str, int, Path]]:
    """A Prometheus on loopback scraping 127.0.0.1:base and base+1 as job sam3-training."""
    binary = shutil.which("prometheus")
    if binary is None:
        pytest.fail("prometheus is not installed: .ci/run installs it with apt-get install prometheus")
    base = two_free_ports()
    config = {
        "global": {"scrape_interval": "1s", "scrape_timeout": "900ms", "evaluation_interval": "1s"},
        "rule_files": [str(fast_rules(tmp_path / "sam3.rules.yaml"))],
        "scrape_configs": [
            {
                "job_name": "sam3-training",
                "static_configs": [{"targets": [f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"]}],
            }
        ],
    }
    (tmp_path / "prometheus.yml").write_text(yaml.safe_dump(config))
    port = free_port()
    log = tmp_path / "prometheus.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={tmp_path / 'prometheus.yml'}",
                f"--storage.tsdb.path={tmp_path / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"

    def alive() -> None:
        assert proc.poll() is None, log.read_text()[-3000:]

    try:
        wait_for(
            "prometheus to be ready", lambda: urllib.request.urlopen(f"{url}/-/ready", timeout=1), 30, alive
        )
        yield url, base, log
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


def query(url: str, promql: str) -> list[dict[str, Any]]:
    result = get(f"{url}/api/v1/query?{urllib.parse.urlencode({'query': promql})}")
    assert result["status"] == "success", result
    return list(result["data"]["result"])


def alerts(url: str, name: str) -> list[dict[str, Any]]:
    return [a for a in get(f"{url}/api/v1/alerts")["data"]["alerts"] if a["labels"]["alertname"] == name]


def test_prometheus_scrapes_both_ranks_and_the_stall_alert_fires(
    prometheus: tuple[str, int, Path], dataset: str, s3_env: dict[str, str], tmp_path: Path
) -> None:
    url, base, prom_log = prometheus
    cfg = TrainConfig(
        stage="detector",
        dataset=dataset,
        run_id="monitored",
        steps=10_000,  # runs until the test stops it
        batch_size=1,
        checkpoint_every=10_000,
        log_every=1,
        data_workers=0,
        metrics_port=base,
        dist_timeout_s=600,  # rank 0 must hang (not fail) while rank 1 is stopped
    )
    log = tmp_path / "train.log"
    proc = torchrun(cfg, s3_env, log)

    def alive() -> None:
        assert proc.poll() is None, log.read_text()[-3000:]

    try:
        # both ranks' series reach Prometheus through its scrapes
        def stepping() -> list[dict[str, Any]] | None:
            found = query(url, 'sam3_train_step{job="sam3-training",run_id="monitored"} >= 2')
            return found if {s["metric"]["rank"] for s in found} == {"0", "1"} else None

        series = wait_for("both ranks' sam3_train_step >= 2", stepping, 120, alive)
        assert {s["metric"]["instance"] for s in series} == {f"127.0.0.1:{base}", f"127.0.0.1:{base + 1}"}
        assert query(url, 'sam3_train_loss{rank="1",term="total"}')
        # while both step, the stall alert is quiet
        assert alerts(url, "Sam3TrainingStalled") == []

        # freeze rank 1: it stops answering scrapes, and rank 0 hangs in the next all-reduce
        rank1 = next(
            p
            for p in psutil.Process(proc.pid).children(recursive=True)
            if "components.train.main" in " ".join(p.cmdline()) and p.environ().get("RANK") == "1"
        )
        os.kill(rank1.pid, signal.SIGSTOP)

        def firing() -> dict[str, dict[str, str]] | None:
            active = {
                a["labels"]["reason"]: a["labels"]
                for a in alerts(url, "Sam3TrainingStalled")
                if a["state"] == "firing"
            }
            return active if set(active) == {"frozen", "unreachable"} else None

        fired = wait_for("Sam3TrainingStalled firing for both ranks", firing, 60, alive)
        assert fired["frozen"]["rank"] == "0" and fired["frozen"]["run_id"] == "monitored"
        assert fired["unreachable"]["instance"] == f"127.0.0.1:{base + 1}"
        assert query(url, f'up{{instance="127.0.0.1:{base}"}} == 1'), "the hung rank 0 still serves /metrics"
    except AssertionError:
        print(prom_log.read_text()[-2000:])
        raise
    finally:
        if proc.poll() is None:
            for p in psutil.Process(proc.pid).children(recursive=True):
                p.kill()  # SIGKILL ends a stopped process too
            proc.kill()
        proc.wait(30)
