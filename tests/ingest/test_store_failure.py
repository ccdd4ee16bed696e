"""The object store killed in the middle of an ingest: the ingest fails clearly, nothing half-written is
visible, and after a restart the same command completes."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from components.dataset import Dataset
from components.embedded_store import EmbeddedStore
from components.errors import DataError
from components.storage import ObjectStore
from tests.ingest.factory import write_saco

pytestmark = pytest.mark.slow


def test_kill_store_mid_ingest_then_rerun(tmp_path: Path) -> None:
    src = tmp_path / "hq"
    write_saco(src, n_images=240, size=96)
    server = EmbeddedStore(tmp_path / "home")
    settings = server.up()
    store = ObjectStore(settings)
    env = {**os.environ, "SAM3_S3_RETRIES": "2"}
    for line in settings.env_lines():
        k, _, v = line.removeprefix("export ").partition("=")
        env[k] = v
    cmd = [
        sys.executable,
        "-m",
        "pipeline",
        "data",
        "ingest",
        "--dataset",
        "crash",
        "--source",
        f"hq={src}",
        "--shard-rows",
        "4",
    ]
    try:
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 60
        while not [k for k, _ in store.list_objects("datasets/crash/") if k.endswith(".parquet")]:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        server.kill()
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 1, err
        last = err.strip().splitlines()[-1]
        assert (
            last.startswith("error: put s3://sam3/datasets/crash/") and "unreachable after 3 attempts" in last
        )

        server.restart()
        keys = [k for k, _ in store.list_objects("datasets/crash/")]
        assert keys and not [k for k in keys if k.endswith("manifest.json")]
        for key in keys:  # whatever exists is whole: every shard parses completely
            assert key.endswith(".parquet"), key
            pq.read_table(io.BytesIO(store.get_bytes(key)))
        version_prefix = "/".join(keys[0].split("/")[:3])
        with pytest.raises(DataError, match="not committed"):
            Dataset.open(store.uri(version_prefix), store)

        rerun = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        assert rerun.returncode == 0, rerun.stderr
        uri = rerun.stdout.strip().splitlines()[-1]
        ds = Dataset.open(uri, store)
        assert ds.manifest.media == 240 and ds.manifest.queries == 480
        for shard in ds.manifest.shards:
            from components.storage import sha256_bytes

            assert sha256_bytes(store.get_bytes(shard.key)) == shard.sha256
        assert sum(1 for _ in ds.records()) == 240
    finally:
        server.down()
