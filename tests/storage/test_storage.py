"""Object store access: settings, key checks, retries, commit ordering, against a real SeaweedFS."""

from __future__ import annotations

import hashlib
import os
import socket
from pathlib import Path

import pytest
from pydantic import SecretStr

from components import storage
from components.errors import ConditionFailed, ConfigError, StorageError
from components.storage import ObjectStore, S3Settings, parse_uri, validate_key


@pytest.mark.parametrize("key", ["/abs/key", "a/../b", "..", "a//b", "a/./b", "a\\b", "a\x00b", ""])
def test_bad_keys_are_refused(key: str) -> None:
    with pytest.raises(ConfigError):
        validate_key(key)


def test_good_keys_and_uris() -> None:
    assert validate_key("datasets/x/v1/manifest.json") == "datasets/x/v1/manifest.json"
    assert parse_uri("s3://b/datasets/x") == ("b", "datasets/x")
    with pytest.raises(ConfigError):
        parse_uri("http://b/x")


def test_settings_from_env_name_what_is_missing_and_hide_secrets() -> None:
    with pytest.raises(ConfigError, match="SAM3_S3_ACCESS_KEY, SAM3_S3_SECRET_KEY"):
        S3Settings.from_env({"SAM3_S3_ENDPOINT": "127.0.0.1:9000"})
    with pytest.raises(ConfigError, match="without a scheme"):
        S3Settings.from_env(
            {"SAM3_S3_ENDPOINT": "http://h:1", "SAM3_S3_ACCESS_KEY": "a", "SAM3_S3_SECRET_KEY": "b"}
        )
    with pytest.raises(ConfigError, match="SAM3_S3_SECURE"):
        S3Settings.from_env(
            {
                "SAM3_S3_ENDPOINT": "h:1",
                "SAM3_S3_ACCESS_KEY": "a",
                "SAM3_S3_SECRET_KEY": "b",
                "SAM3_S3_SECURE": "maybe",
            }
        )
    s = S3Settings.from_env(
        {
            "SAM3_S3_ENDPOINT": "h:1",
            "SAM3_S3_ACCESS_KEY": "AKIDSECRET",
            "SAM3_S3_SECRET_KEY": "supersecret",
            "SAM3_S3_BUCKET": "b2",
            "SAM3_S3_SECURE": "true",
        }
    )
    assert s.bucket == "b2" and s.secure
    assert "supersecret" not in repr(s) and "supersecret" not in s.model_dump_json()


def test_put_get_list_delete_round_trip(store: ObjectStore) -> None:
    obj = store.put_bytes("a/b.bin", b"hello")
    assert obj.size == 5 and len(obj.sha256) == 64
    assert store.get_bytes("a/b.bin") == b"hello"
    store.put_json("a/c.json", {"x": 1})
    assert store.get_json("a/c.json") == {"x": 1}
    assert [k for k, _ in store.list_objects("a/")] == ["a/b.bin", "a/c.json"]
    assert store.exists("a/b.bin") and not store.exists("a/zzz")
    assert store.delete_prefix("a/") == 2 and not list(store.list_objects("a/"))


def test_commit_writes_data_before_pointer(store: ObjectStore) -> None:
    store.commit({"d/1": b"one", "d/2": b"two"}, "d/latest.json", {"n": 2})
    assert store.get_json("d/latest.json") == {"n": 2} and store.get_bytes("d/2") == b"two"


def test_wrong_credentials_are_not_retried(s3_settings: S3Settings) -> None:
    bad = ObjectStore(s3_settings.model_copy(update={"secret_key": SecretStr("wrong")}), backoff_s=0.01)
    with pytest.raises(StorageError, match=r"SignatureDoesNotMatch|AccessDenied|InvalidAccessKeyId"):
        bad.get_bytes("x")


def test_unreachable_store_fails_after_bounded_retries(s3_settings: S3Settings) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    dead = ObjectStore(
        s3_settings.model_copy(update={"endpoint": f"127.0.0.1:{port}", "retries": 2}), backoff_s=0.01
    )
    with pytest.raises(StorageError, match=r"unreachable after 3 attempts"):
        dead.put_bytes("k", b"v")


def test_hash_in_chunks_and_copy_on_the_server(store: ObjectStore) -> None:
    data = bytes(range(256)) * 41  # 10,496 bytes: many chunks of 1 KiB and a short last one
    put = store.put_bytes("src/w.bin", data, "text/plain")
    hashed, etag = store.sha256_object("src/w.bin", chunk=1024)
    assert (hashed.size, hashed.sha256) == (len(data), put.sha256) and etag

    copied = store.copy("dst/w.bin", "src/w.bin", etag=etag, sha256=hashed.sha256)
    assert (copied.key, copied.size, copied.sha256) == ("dst/w.bin", len(data), put.sha256)
    assert store.get_bytes("dst/w.bin") == data
    stat = store.client.stat_object(store.bucket, "dst/w.bin")
    assert stat.metadata["X-Amz-Meta-Sha256"] == put.sha256  # as put_bytes records it

    store.put_bytes("src/w.bin", b"changed since it was hashed")
    with pytest.raises(ConditionFailed, match="no longer etag"):
        store.copy("dst/w2.bin", "src/w.bin", etag=etag)
    assert not store.exists("dst/w2.bin")
    with pytest.raises(StorageError, match="src/absent"):
        store.copy("dst/w3.bin", "src/absent")


def test_files_are_streamed_in_parts_both_ways(
    store: ObjectStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A file larger than a part goes up in parts (S3's smallest, 5 MiB) and comes back hashed on the way."""
    monkeypatch.setattr(storage, "PART_SIZE", 5 << 20)
    data = os.urandom((11 << 20) + 3)  # two whole parts and a short one
    path = tmp_path / "w.bin"
    path.write_bytes(data)
    digest = hashlib.sha256(data).hexdigest()
    put = store.put_file("big/w.bin", path)
    assert (put.size, put.sha256) == (len(data), digest)
    stat = store.client.stat_object(store.bucket, "big/w.bin")
    assert stat.etag is not None and stat.etag.endswith("-3")  # a multipart upload of three parts
    assert stat.metadata["X-Amz-Meta-Sha256"] == digest

    back = tmp_path / "back.bin"
    got = store.get_file("big/w.bin", back, chunk=1 << 20)
    assert (got.size, got.sha256) == (len(data), digest) and back.read_bytes() == data

    empty = tmp_path / "empty"
    empty.write_bytes(b"")
    assert store.put_file("big/empty", empty).size == 0 and store.get_bytes("big/empty") == b""
    assert store.put_file("big/named", empty, sha256="0" * 64).sha256 == "0" * 64  # the caller's hash
