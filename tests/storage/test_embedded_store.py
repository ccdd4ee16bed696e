"""`sam3-pipeline store up|down|env` on a private SAM3_HOME: loopback, idempotent, private credentials."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import psutil
import pytest


def cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SAM3_S3_")}
    env["SAM3_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "pipeline", *args], env=env, capture_output=True, text=True, timeout=120
    )


def test_store_up_env_down(tmp_path: Path) -> None:
    home = tmp_path / "home"
    up = cli(home, "store", "up")
    assert up.returncode == 0, up.stderr
    exports = dict(line.removeprefix("export ").split("=", 1) for line in up.stdout.splitlines())
    assert set(exports) == {
        "SAM3_S3_ENDPOINT",
        "SAM3_S3_ACCESS_KEY",
        "SAM3_S3_SECRET_KEY",
        "SAM3_S3_BUCKET",
        "SAM3_S3_SECURE",
    }
    assert exports["SAM3_S3_ENDPOINT"].startswith("127.0.0.1:")
    try:
        again = cli(home, "store", "up")  # idempotent: same server, same settings
        assert again.returncode == 0 and again.stdout == up.stdout
        assert cli(home, "store", "env").stdout == up.stdout
        for private in (home / "store.json", home / "s3-identities.json"):
            assert stat.S_IMODE(private.stat().st_mode) == 0o600
        pid = int(__import__("json").loads((home / "store.json").read_text())["pid"])
        listening = [
            c.laddr for c in psutil.Process(pid).net_connections(kind="inet") if c.status == "LISTEN"
        ]
        assert listening and all(addr.ip == "127.0.0.1" for addr in listening)
        assert exports["SAM3_S3_SECRET_KEY"] not in up.stderr
    finally:
        down = cli(home, "store", "down")
    assert down.returncode == 0
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    gone = cli(home, "store", "env")
    assert gone.returncode == 1 and "not running" in gone.stderr


def test_with_block_stops_the_server_even_on_error(tmp_path: Path) -> None:
    from components.embedded_store import EmbeddedStore
    from components.storage import ObjectStore

    server = EmbeddedStore(tmp_path / "home")
    with pytest.raises(KeyError), server as settings:
        ObjectStore(settings).ensure_bucket()
        state = server.running()
        assert state is not None
        raise KeyError("boom")
    assert server.running() is None and server.state() is None
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE


def test_with_block_stops_the_server_when_the_process_gets_sigterm(tmp_path: Path) -> None:
    """A script killed with SIGTERM inside ``with EmbeddedStore(...)`` stops its server on the way out."""
    from components.embedded_store import EmbeddedStore

    script = (
        "import time\n"
        "from pathlib import Path\n"
        "from components.embedded_store import EmbeddedStore\n"
        f"with EmbeddedStore(Path({str(tmp_path / 'home')!r})):\n"
        "    print('up', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "up"
    state = EmbeddedStore(tmp_path / "home").running()
    assert state is not None
    proc.terminate()
    assert proc.wait(timeout=60) == 128 + 15
    assert not psutil.pid_exists(state.pid) or psutil.Process(state.pid).status() == psutil.STATUS_ZOMBIE
    assert EmbeddedStore(tmp_path / "home").state() is None
