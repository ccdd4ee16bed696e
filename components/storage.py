"""Object store access on the minio SDK.

Settings come from the ``SAM3_S3_*`` environment variables (on a cluster, a
Kubernetes Secret mapped into the pod's environment). Every call is retried
with exponential backoff on transient failures, a bounded number of times,
then raised as a :class:`StorageError` naming the key. Keys are validated
before they reach the wire. Writers follow one rule: data first, the manifest
or pointer that makes it visible last.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import random
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

from components.errors import ConditionFailed, ConfigError, StorageError

if TYPE_CHECKING:
    import minio
    import pyarrow.fs

log = logging.getLogger(__name__)

T = TypeVar("T")

ENV_PREFIX = "SAM3_S3_"
_TRANSIENT_S3_CODES = frozenset(
    {"SlowDown", "InternalError", "ServiceUnavailable", "RequestTimeout", "RequestTimeTooSkewed"}
)
_MISSING_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"})
_CONDITION_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
_KEY_BAD_CHARS = re.compile(r"[\x00-\x1f\x7f\\]")
HASH_CHUNK = 8 << 20  # bytes read at a time when an object is hashed in the store
PART_SIZE = 16 << 20  # bytes per part of a streamed upload (S3's minimum is 5 MiB)


class S3Settings(BaseModel):
    """Where the object store is and how to reach it. Secrets never print."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    endpoint: str = Field(description="host:port of the S3 API, no scheme")
    access_key: SecretStr
    secret_key: SecretStr
    bucket: str = "sam3"
    secure: bool = False
    region: str = "us-east-1"
    retries: int = Field(default=5, ge=0, le=20)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> S3Settings:
        """Read ``SAM3_S3_ENDPOINT``, ``_ACCESS_KEY``, ``_SECRET_KEY``, ``_BUCKET``, ``_SECURE``..."""
        env = os.environ if env is None else env
        missing = [
            f"{ENV_PREFIX}{k}"
            for k in ("ENDPOINT", "ACCESS_KEY", "SECRET_KEY")
            if not env.get(f"{ENV_PREFIX}{k}")
        ]
        if missing:
            raise ConfigError(
                f"object store not configured: set {', '.join(missing)} "
                "(or run `eval $(sam3-pipeline store up)` for the embedded store)"
            )
        values: dict[str, Any] = {
            "endpoint": env[f"{ENV_PREFIX}ENDPOINT"],
            "access_key": env[f"{ENV_PREFIX}ACCESS_KEY"],
            "secret_key": env[f"{ENV_PREFIX}SECRET_KEY"],
        }
        for field in ("bucket", "secure", "region", "retries"):
            raw = env.get(f"{ENV_PREFIX}{field.upper()}")
            if raw:
                values[field] = raw
        try:
            settings = cls(**values)
        except ValidationError as exc:
            first = exc.errors()[0]
            raise ConfigError(f"{ENV_PREFIX}{str(first['loc'][0]).upper()}: {first['msg']}") from None
        if "://" in settings.endpoint or "/" in settings.endpoint:
            raise ConfigError(
                f"{ENV_PREFIX}ENDPOINT must be host:port without a scheme, got {settings.endpoint!r}"
            )
        return settings

    def env(self) -> dict[str, str]:
        """The ``SAM3_S3_*`` variables of these settings, secrets included (for child processes)."""
        return {
            f"{ENV_PREFIX}ENDPOINT": self.endpoint,
            f"{ENV_PREFIX}ACCESS_KEY": self.access_key.get_secret_value(),
            f"{ENV_PREFIX}SECRET_KEY": self.secret_key.get_secret_value(),
            f"{ENV_PREFIX}BUCKET": self.bucket,
            f"{ENV_PREFIX}SECURE": "true" if self.secure else "false",
        }

    def env_lines(self) -> list[str]:
        """``export`` lines that recreate these settings in a shell (prints the secret: for `store up`)."""
        return [f"export {name}={value}" for name, value in self.env().items()]


def validate_key(key: str) -> str:
    """Return ``key`` if it is a safe relative object key, else raise ConfigError saying why."""
    if not key or len(key.encode()) > 1024:
        raise ConfigError(f"object key must be 1..1024 bytes: {key!r}")
    if key.startswith("/"):
        raise ConfigError(f"object key must be relative, not absolute: {key!r}")
    if _KEY_BAD_CHARS.search(key):
        raise ConfigError(f"object key holds a control character or backslash: {key!r}")
    parts = key.rstrip("/").split("/")
    if any(p in ("", ".", "..") for p in parts):
        raise ConfigError(f"object key has an empty, '.' or '..' segment: {key!r}")
    return key


def parse_uri(uri: str) -> tuple[str, str]:
    """Split ``s3://bucket/key`` into (bucket, key); the key may be empty."""
    if not uri.startswith("s3://"):
        raise ConfigError(f"not an s3:// URI: {uri!r}")
    bucket, _, key = uri[len("s3://") :].partition("/")
    if not bucket:
        raise ConfigError(f"s3 URI has no bucket: {uri!r}")
    if key:
        validate_key(key)
    return bucket, key


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@dataclass(frozen=True)
class StoredObject:
    key: str
    size: int
    sha256: str


class ObjectStore:
    """One bucket of an S3 server, with retries, key checks and commit ordering."""

    def __init__(self, settings: S3Settings, *, backoff_s: float = 0.25) -> None:
        self.settings = settings
        self.bucket = settings.bucket
        self._backoff_s = backoff_s
        self._client: minio.Minio | None = None

    @classmethod
    def from_env(cls) -> ObjectStore:
        return cls(S3Settings.from_env())

    # -- plumbing ---------------------------------------------------------
    @property
    def client(self) -> minio.Minio:
        if self._client is None:
            import minio
            import urllib3

            http = urllib3.PoolManager(
                timeout=urllib3.Timeout(connect=5.0, read=120.0),
                maxsize=16,
                retries=False,  # we retry ourselves, with our own bound and log lines
            )
            self._client = minio.Minio(
                self.settings.endpoint,
                access_key=self.settings.access_key.get_secret_value(),
                secret_key=self.settings.secret_key.get_secret_value(),
                secure=self.settings.secure,
                region=self.settings.region,
                http_client=http,
            )
        return self._client

    def uri(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def key_of(self, uri: str) -> str:
        """The key of an ``s3://`` URI in this store's bucket."""
        bucket, key = parse_uri(uri)
        if bucket != self.bucket:
            raise ConfigError(f"{uri} is not in the configured bucket {self.bucket!r} (SAM3_S3_BUCKET)")
        return key

    def _call(self, what: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` with bounded exponential backoff on transient errors."""
        from minio.error import S3Error, ServerError
        from urllib3.exceptions import HTTPError

        attempts = self.settings.retries + 1
        for attempt in range(1, attempts + 1):
            try:
                return fn()
            except S3Error as exc:
                if exc.code not in _TRANSIENT_S3_CODES or attempt == attempts:
                    raise StorageError(f"{what}: {exc.code}: {exc.message}") from exc
                reason = exc.code
            except (ServerError, HTTPError, OSError) as exc:
                if attempt == attempts:
                    raise StorageError(
                        f"{what}: object store at {self.settings.endpoint} unreachable after "
                        f"{attempts} attempts: {type(exc).__name__}: {exc}"
                    ) from exc
                reason = type(exc).__name__
            delay = self._backoff_s * (2 ** (attempt - 1)) * (1 + random.random() / 2)
            log.warning("%s: %s, retry %d/%d in %.1fs", what, reason, attempt, attempts - 1, delay)
            time.sleep(delay)
        raise AssertionError("unreachable")

    # -- bucket -----------------------------------------------------------
    def ensure_bucket(self) -> None:
        def make() -> None:
            if not self.client.bucket_exists(self.bucket):
                self.client.make_bucket(self.bucket)

        self._call(f"create bucket {self.bucket}", make)

    # -- objects ----------------------------------------------------------
    def put_bytes(
        self, key: str, data: bytes, content_type: str = "application/octet-stream"
    ) -> StoredObject:
        validate_key(key)
        digest = sha256_bytes(data)

        def put() -> None:
            self.client.put_object(
                self.bucket,
                key,
                io.BytesIO(data),
                len(data),
                content_type=content_type,
                metadata={"x-amz-meta-sha256": digest},
            )

        self._call(f"put {self.uri(key)}", put)
        return StoredObject(key=key, size=len(data), sha256=digest)

    def put_file(
        self,
        key: str,
        path: Path,
        content_type: str = "application/octet-stream",
        *,
        sha256: str | None = None,
    ) -> StoredObject:
        """Stream a file into the store, in ``PART_SIZE`` parts past the first (S3 multipart): memory
        holds a few parts, never the file. ``sha256``: the file's, when the caller has hashed it already
        (else it is hashed here, in chunks); recorded on the object as ``put_bytes`` records it."""
        validate_key(key)
        path = Path(path)
        digest = sha256 or sha256_file(path)
        size = path.stat().st_size

        def put() -> None:
            with open(path, "rb") as fh:  # reopened by a retry: every attempt sends the file from its start
                self.client.put_object(
                    self.bucket,
                    key,
                    fh,
                    size,
                    content_type=content_type,
                    metadata={"x-amz-meta-sha256": digest},
                    part_size=PART_SIZE,
                )

        self._call(f"put {self.uri(key)} from {path}", put)
        return StoredObject(key=key, size=size, sha256=digest)

    def get_file(self, key: str, path: Path, *, chunk: int = HASH_CHUNK) -> StoredObject:
        """Stream an object into a local file, ``chunk`` bytes at a time, hashing it on the way; the
        object's size and sha256 as read."""
        return self._read_hashed(key, chunk, Path(path))[0]

    def put_json(self, key: str, obj: Any) -> StoredObject:
        if isinstance(obj, BaseModel):
            data = obj.model_dump_json(indent=2).encode()
        else:
            data = json.dumps(obj, indent=2, sort_keys=True).encode()
        return self.put_bytes(key, data, "application/json")

    def get_bytes(self, key: str) -> bytes:
        validate_key(key)

        def get() -> bytes:
            resp = self.client.get_object(self.bucket, key)
            try:
                return resp.read()
            finally:
                resp.close()
                resp.release_conn()

        return self._call(f"get {self.uri(key)}", get)

    def get_json(self, key: str) -> Any:
        raw = self.get_bytes(key)
        try:
            return json.loads(raw)
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def get_json_etag(self, key: str) -> tuple[Any, str] | None:
        """The JSON object at ``key`` and its ETag (unquoted), or None when absent."""
        from minio.error import S3Error

        validate_key(key)

        def get() -> tuple[bytes, str] | None:
            try:
                resp = self.client.get_object(self.bucket, key)
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    return None
                raise
            try:
                return resp.read(), str(resp.headers.get("ETag", "")).strip('"')
            finally:
                resp.close()
                resp.release_conn()

        got = self._call(f"get {self.uri(key)}", get)
        if got is None:
            return None
        raw, etag = got
        try:
            return json.loads(raw), etag
        except json.JSONDecodeError as exc:
            raise StorageError(f"{self.uri(key)} is not valid JSON: {exc}") from exc

    def put_json_if(self, key: str, obj: Any, *, etag: str | None) -> str:
        """Write JSON only if ``key`` is absent (``etag=None``) or still has ``etag``; return the new ETag.

        A refused condition (HTTP 412) raises :class:`ConditionFailed` and is not retried. A transient
        failure is retried; should the lost attempt have landed, the retry sees 412 too (safe side).
        """
        from minio.error import S3Error

        validate_key(key)
        if isinstance(obj, BaseModel):
            data = obj.model_dump_json(indent=2).encode()
        else:
            data = json.dumps(obj, indent=2, sort_keys=True).encode()
        headers: dict[str, str | list[str] | tuple[str]] = {
            "Content-Type": "application/json",
            "x-amz-meta-sha256": sha256_bytes(data),
            **({"If-None-Match": "*"} if etag is None else {"If-Match": f'"{etag}"'}),
        }
        condition = "absent" if etag is None else f"etag {etag}"

        def put() -> str:
            try:
                # minio-py's public put_object turns unknown headers into X-Amz-Meta-*, which would
                # drop the condition; _put_object sends them verbatim (SeaweedFS and S3 honour both).
                return str(self.client._put_object(self.bucket, key, data, headers=headers).etag)
            except S3Error as exc:
                if exc.code in _CONDITION_CODES:
                    raise ConditionFailed(
                        f"put {self.uri(key)}: refused, the object is no longer {condition}"
                    ) from exc
                raise

        return self._call(f"put {self.uri(key)} if {condition}", put)

    def sha256_object(self, key: str, *, chunk: int = HASH_CHUNK) -> tuple[StoredObject, str]:
        """The object's size and sha256, read in ``chunk``-byte pieces (memory does not grow with the
        object), and the ETag of the version that was read."""
        return self._read_hashed(key, chunk)

    def _read_hashed(self, key: str, chunk: int, path: Path | None = None) -> tuple[StoredObject, str]:
        """Read an object in ``chunk``-byte pieces, hashing them and, with ``path``, writing them there
        (truncated by a retry: every attempt writes the whole object); its size and sha256 as read, and
        the ETag of the version read."""
        validate_key(key)

        def read() -> tuple[StoredObject, str]:
            resp = self.client.get_object(self.bucket, key)
            try:
                sha, size = hashlib.sha256(), 0
                with open(path, "wb") if path is not None else nullcontext() as fh:
                    for block in resp.stream(chunk):
                        if fh is not None:
                            fh.write(block)
                        sha.update(block)
                        size += len(block)
                etag = str(resp.headers.get("ETag", "")).strip('"')
                return StoredObject(key=key, size=size, sha256=sha.hexdigest()), etag
            finally:
                resp.close()
                resp.release_conn()

        what = f"get {self.uri(key)} into {path}" if path is not None else f"hash {self.uri(key)}"
        return self._call(what, read)

    def copy(
        self, key: str, source: str, *, etag: str | None = None, sha256: str | None = None
    ) -> StoredObject:
        """Copy ``source`` to ``key`` in the bucket on the server (S3 CopyObject; UploadPartCopy parts past
        5 GiB): the bytes never pass through this process. ``etag``: only if the source still has it
        (else :class:`ConditionFailed`). ``sha256``: the source's, recorded on the copy as ``put_bytes``
        records it. Returns the copy's key, its size as the server reports it, and ``sha256``."""
        from minio.commonconfig import ComposeSource
        from minio.error import S3Error

        validate_key(key)
        validate_key(source)
        metadata: dict[str, str | list[str] | tuple[str]] = {"Content-Type": "application/octet-stream"}
        if sha256 is not None:
            metadata["x-amz-meta-sha256"] = sha256

        def copy() -> int:
            try:
                # compose_object: one CopyObject up to 5 GiB, server-side part copies beyond
                self.client.compose_object(
                    self.bucket, key, [ComposeSource(self.bucket, source, match_etag=etag)], metadata=metadata
                )
            except S3Error as exc:
                if exc.code in _CONDITION_CODES:
                    raise ConditionFailed(
                        f"copy {self.uri(source)} to {self.uri(key)}: refused, the source is no longer "
                        f"etag {etag}"
                    ) from exc
                raise
            return int(self.client.stat_object(self.bucket, key).size or 0)

        size = self._call(f"copy {self.uri(source)} to {self.uri(key)}", copy)
        return StoredObject(key=key, size=size, sha256=sha256 or "")

    def exists(self, key: str) -> bool:
        from minio.error import S3Error

        validate_key(key)

        def stat() -> bool:
            try:
                self.client.stat_object(self.bucket, key)
                return True
            except S3Error as exc:
                if exc.code in _MISSING_CODES:
                    return False
                raise

        return self._call(f"stat {self.uri(key)}", stat)

    def list_objects(self, prefix: str) -> Iterator[tuple[str, int]]:
        """(key, size) of every object under ``prefix``, recursively, in key order."""
        if prefix:
            validate_key(prefix)

        def listing() -> list[tuple[str, int]]:
            return [
                (o.object_name, int(o.size or 0))
                for o in self.client.list_objects(self.bucket, prefix=prefix, recursive=True)
                if o.object_name is not None
            ]

        yield from sorted(self._call(f"list {self.uri(prefix)}", listing))

    def delete(self, key: str) -> None:
        validate_key(key)
        self._call(f"delete {self.uri(key)}", lambda: self.client.remove_object(self.bucket, key))

    def delete_prefix(self, prefix: str) -> int:
        keys = [k for k, _ in self.list_objects(prefix)]
        for key in keys:
            self.delete(key)
        return len(keys)

    # -- commit ordering ----------------------------------------------------
    def commit(self, data: Mapping[str, bytes], pointer_key: str, pointer: Any) -> list[StoredObject]:
        """Write every data object, then the manifest/pointer that makes them visible."""
        written = [self.put_bytes(k, v) for k, v in data.items()]
        self.put_json(pointer_key, pointer)
        return written

    # -- pyarrow ------------------------------------------------------------
    def arrow_fs(self) -> pyarrow.fs.S3FileSystem:
        """A pyarrow filesystem on the same server, for pyarrow.dataset reads."""
        from pyarrow import fs

        return fs.S3FileSystem(
            access_key=self.settings.access_key.get_secret_value(),
            secret_key=self.settings.secret_key.get_secret_value(),
            endpoint_override=self.settings.endpoint,
            scheme="https" if self.settings.secure else "http",
            region=self.settings.region,
            connect_timeout=5,
            request_timeout=120,
        )

    def arrow_path(self, key: str) -> str:
        return f"{self.bucket}/{key}"
