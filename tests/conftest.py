"""Shared fixtures: a real SeaweedFS server (the same code as `store up`), one bucket per test."""

from __future__ import annotations

import os
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from components.embedded_store import EmbeddedStore
from components.storage import ObjectStore, S3Settings


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedStore]:
    server = EmbeddedStore(tmp_path_factory.mktemp("sam3home"))
    with server:
        yield server


@pytest.fixture
def s3_settings(s3_server: EmbeddedStore) -> S3Settings:
    state = s3_server.state()
    assert state is not None
    bucket = "t" + uuid.uuid4().hex[:12]
    return state.settings().model_copy(update={"bucket": bucket})


@pytest.fixture
def store(s3_settings: S3Settings) -> Iterator[ObjectStore]:
    s = ObjectStore(s3_settings)
    s.ensure_bucket()
    yield s
    # SeaweedFS gives every bucket its own volumes and stops creating them at a count derived from the
    # free disk: a suite that left its buckets behind would exhaust them. Empty and drop the bucket.
    drop_bucket(s)


def drop_bucket(store: ObjectStore) -> None:
    try:
        store.delete_prefix("")
        store.client.remove_bucket(store.bucket)
    except Exception as exc:  # a leaked bucket only costs volumes; the test's own result stands
        warnings.warn(f"could not drop test bucket {store.bucket}: {exc}", stacklevel=1)


@pytest.fixture
def s3_env(s3_settings: S3Settings, store: ObjectStore, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The SAM3_S3_* variables for subprocesses (CLI tests), also set in this process."""
    env = s3_settings.env()
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return {**os.environ, **env}


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return Path(__file__).resolve().parents[1]


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def pushgateway() -> Iterator[str]:
    """A real Prometheus Pushgateway on loopback (Debian package prometheus-pushgateway)."""
    import shutil
    import subprocess
    import time
    import urllib.request

    binary = shutil.which("prometheus-pushgateway") or shutil.which("pushgateway")
    if binary is None:
        pytest.fail("prometheus-pushgateway is not installed: .ci/run installs it with apt-get")
    port = free_port()
    proc = subprocess.Popen(
        [binary, f"--web.listen-address=127.0.0.1:{port}"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(f"{url}/-/ready", timeout=1)
            break
        except OSError:
            if time.monotonic() > deadline or proc.poll() is not None:
                proc.kill()
                pytest.fail("the pushgateway did not start")
            time.sleep(0.1)
    yield url
    proc.terminate()
    proc.wait(10)
