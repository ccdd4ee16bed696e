"""Where ingest inputs live: a local folder or an ``s3://`` prefix, behind one small interface."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from components.errors import ConfigError, DataError
from components.schemas import SOURCE_TAGS, SourceTag
from components.storage import ObjectStore, parse_uri


@dataclass(frozen=True)
class SourceSpec:
    """One ``--source TAG=PATH`` argument."""

    tag: SourceTag
    path: str

    @classmethod
    def parse(cls, text: str) -> SourceSpec:
        tag, sep, path = text.partition("=")
        if not sep or not path:
            raise ConfigError(f"--source {text!r}: expected TAG=PATH with TAG one of {'|'.join(SOURCE_TAGS)}")
        if tag not in SOURCE_TAGS:
            raise ConfigError(
                f"--source {text!r}: unknown tag {tag!r}, expected one of {'|'.join(SOURCE_TAGS)}"
            )
        if not path.startswith("s3://"):
            path = str(Path(path).resolve())
        return cls(tag=tag, path=path.rstrip("/"))  # type: ignore[arg-type]

    @property
    def name(self) -> str:
        """Short stable name for ids: the folder's base name."""
        return self.path.rsplit("/", 1)[-1] or self.tag


class SourceFiles(Protocol):
    """Read-only view of the files under one source path (relative POSIX paths)."""

    def files(self) -> dict[str, int]:
        """relative path -> size in bytes"""
        ...

    def read(self, rel: str) -> bytes: ...

    def fingerprint(self, rel: str) -> str:
        """A content hash of one file (sha256 locally, the ETag in S3)."""
        ...

    def display(self, rel: str) -> str: ...


class LocalFiles:
    def __init__(self, root: str) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise ConfigError(f"source folder not found: {self.root}")
        self._files: dict[str, int] | None = None

    def files(self) -> dict[str, int]:
        if self._files is None:
            out: dict[str, int] = {}
            for dirpath, dirnames, filenames in os.walk(self.root):
                dirnames.sort()
                for fn in sorted(filenames):
                    full = Path(dirpath) / fn
                    out[full.relative_to(self.root).as_posix()] = full.stat().st_size
            self._files = out
        return self._files

    def read(self, rel: str) -> bytes:
        try:
            return (self.root / rel).read_bytes()
        except FileNotFoundError:
            raise DataError(f"file not found: {self.display(rel)}") from None

    def fingerprint(self, rel: str) -> str:
        with open(self.root / rel, "rb") as fh:
            return hashlib.file_digest(fh, "sha256").hexdigest()

    def display(self, rel: str) -> str:
        return str(self.root / rel)


class S3Files:
    def __init__(self, uri: str, store: ObjectStore) -> None:
        bucket, prefix = parse_uri(uri)
        if bucket != store.bucket:
            raise ConfigError(f"source {uri} is not in the configured bucket {store.bucket!r}")
        self.uri = uri
        self.prefix = prefix.rstrip("/") + "/" if prefix else ""
        self.store = store
        self._etags: dict[str, str] = {}
        self._files: dict[str, int] | None = None

    def files(self) -> dict[str, int]:
        if self._files is None:
            objs = list(
                self.store._call(
                    f"list {self.uri}",
                    lambda: list(
                        self.store.client.list_objects(self.store.bucket, prefix=self.prefix, recursive=True)
                    ),
                )
            )
            self._files = {}
            for o in objs:
                if o.object_name is None:
                    continue
                rel = o.object_name[len(self.prefix) :]
                self._files[rel] = int(o.size or 0)
                self._etags[rel] = (o.etag or "").strip('"')
            if not self._files:
                raise ConfigError(f"source prefix is empty: {self.uri}")
        return self._files

    def read(self, rel: str) -> bytes:
        if rel not in self.files():
            raise DataError(f"file not found: {self.display(rel)}")
        return self.store.get_bytes(self.prefix + rel)

    def fingerprint(self, rel: str) -> str:
        self.files()
        return "etag:" + self._etags.get(rel, "")

    def display(self, rel: str) -> str:
        return f"{self.uri}/{rel}"


def open_source(spec: SourceSpec, store: ObjectStore | None) -> SourceFiles:
    if spec.path.startswith("s3://"):
        if store is None:
            raise ConfigError(f"source {spec.path} needs the object store settings (SAM3_S3_*)")
        return S3Files(spec.path, store)
    return LocalFiles(spec.path)
