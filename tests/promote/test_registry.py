"""The model registry on a real S3 server: conditional writes, versions, aliases, races, the CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

from components.errors import ConditionFailed, ConfigError, DataError
from components.promote.promote import promote
from components.promote.registry import AliasConflict, Registry, list_models
from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore


def make_checkpoint(store: ObjectStore, value: float, run: str = "r", size: str = "tiny") -> str:
    """A committed checkpoint step folder with distinct weights; returns its URI."""
    ckpt = CheckpointStore(store, f"runs/{run}/detector")
    weights = {"a.weight": torch.full((2, 3), value), "b.bias": torch.arange(4.0) + value}
    ckpt.save(2, weights, {"step": 2}, {"size": size, "stage": "detector"})
    return store.uri(ckpt.step_key(2))


def register(reg: Registry, checkpoint: str, **extra: Any) -> tuple[Any, bool]:
    return reg.register(
        checkpoint,
        run_id="r",
        stage="detector",
        metrics={"detector": {"cgF1": 41.5, "IL_MCC": 0.8, "pmF1": 0.52}},
        datasets={"train": "s3://b/datasets/t/v1", "gold": "s3://b/datasets/g/v1"},
        config={"lr": 0.1, "s3": {"secret_key": "hunter2", "endpoint": "x:1"}},
        code_version="abc123",
        **extra,
    )


def registry_with_versions(store: ObjectStore, n: int, model: str = "sam3-tiny") -> Registry:
    reg = Registry(store, model)
    for i in range(1, n + 1):
        card, created = register(reg, make_checkpoint(store, float(i), run=f"r{i}"))
        assert created and card.version == i
    return reg


# -- conditional writes -------------------------------------------------------
def test_conditional_put_semantics(store: ObjectStore) -> None:
    key = "registry/x/aliases/a.json"
    assert store.get_json_etag(key) is None
    e1 = store.put_json_if(key, {"a": 1}, etag=None)
    with pytest.raises(ConditionFailed):
        store.put_json_if(key, {"a": 9}, etag=None)  # create-only refused when present
    assert store.get_json_etag(key) == ({"a": 1}, e1)
    e2 = store.put_json_if(key, {"a": 2}, etag=e1)  # the right etag is accepted
    assert e2 != e1
    with pytest.raises(ConditionFailed):
        store.put_json_if(key, {"a": 3}, etag=e1)  # a stale etag is refused
    assert store.get_json_etag(key) == ({"a": 2}, e2)


def test_same_stale_etag_twice_exactly_one_wins(store: ObjectStore) -> None:
    key = "registry/x/aliases/b.json"
    etag = store.put_json_if(key, {"v": 0}, etag=None)
    store.put_json_if(key, {"v": 1}, etag=etag)
    with pytest.raises(ConditionFailed):
        store.put_json_if(key, {"v": 2}, etag=etag)
    assert store.get_json("registry/x/aliases/b.json") == {"v": 1}


# -- versions -----------------------------------------------------------------
def test_register_writes_the_card_last_and_is_idempotent(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = make_checkpoint(store, 1.0)
    reg = Registry(store, "sam3-tiny")
    written: list[str] = []
    for method in ("put_bytes", "put_json_if", "copy"):
        real = getattr(store, method)
        monkeypatch.setattr(
            store, method, lambda k, *a, real=real, **kw: (written.append(k), real(k, *a, **kw))[1]
        )
    card, created = register(reg, uri)
    base = "registry/sam3-tiny/versions/1"
    assert created and card.version == 1 and card.size == "tiny" and card.checkpoint == uri
    names = ["claim.json", "model.safetensors", "config.json", "model_card.json"]
    assert written == [f"{base}/{name}" for name in names]
    assert card.config == {"lr": 0.1, "s3": {"endpoint": "x:1"}}  # no secrets in a card
    assert store.get_bytes(f"{base}/model.safetensors") == store.get_bytes(
        uri.removeprefix(f"s3://{store.bucket}/") + "/model.safetensors"
    )
    assert reg.card(1) == card and reg.versions() == [1]

    before = [k for k, _ in store.list_objects("registry/")]
    written.clear()
    # the same weights, named three ways: a no-op each time
    for ref in (uri, uri + "/model.safetensors", uri.rsplit("/", 1)[0]):
        again, created = register(reg, ref)
        assert not created and again == card
    assert written == [] and [k for k, _ in store.list_objects("registry/")] == before


def test_different_weights_get_new_versions_and_incomplete_ones_are_invisible(store: ObjectStore) -> None:
    reg = registry_with_versions(store, 2)
    assert reg.versions() == [1, 2]
    # a claimed version without a card (a crashed register) is invisible, and its number is not reused
    store.put_bytes("registry/sam3-tiny/versions/3/claim.json", b"{}")
    store.put_bytes("registry/sam3-tiny/versions/3/model.safetensors", b"half")
    card, created = register(reg, make_checkpoint(store, 7.0, run="r7"))
    assert created and card.version == 4 and reg.versions() == [1, 2, 4]
    with pytest.raises(ConfigError, match=r"sam3-tiny.*version 3"):
        reg.card(3)
    assert list_models(store) == ["sam3-tiny"]


def test_register_needs_a_checkpoint_and_a_size(store: ObjectStore) -> None:
    reg = Registry(store, "m")
    with pytest.raises(DataError, match="no checkpoint"):
        register(reg, store.uri("runs/none/detector/checkpoints/step-0000001"))
    ckpt = CheckpointStore(store, "runs/nosize/detector")
    ckpt.save(1, {"w": torch.ones(2)}, {"step": 1})  # no config.json
    with pytest.raises(ConfigError, match="size"):
        register(reg, store.uri(ckpt.step_key(1)))
    card, created = register(reg, store.uri(ckpt.step_key(1)), size="small")
    assert created and card.size == "small"


def test_the_promoted_card_carries_the_pretrain_stage(store: ObjectStore) -> None:
    """Every evaluated stage is a row of the card's metrics: the pretrain stage's is its recognition AUC."""
    image = {"cgF1": 41.5, "IL_MCC": 0.8, "pmF1": 51.875, "cgF1@0.5": 50.0, "cgF1@0.75": 40.0}
    recognition = {"recognition_AUC": 0.91, "by_length": {"1": 0.9}, "pairs": 8, "positive_pairs": 3}
    store.put_json(
        "runs/r/pretrain/eval/metrics.json", {"checkpoint": "c", "gold": "g", "recognition": recognition}
    )
    store.put_json("runs/r/detector/eval/metrics.json", {"checkpoint": "c", "gold": "g", "result": image})
    promotion = promote(
        store,
        model="sam3-tiny",
        alias="candidate",
        checkpoint=make_checkpoint(store, 1.0),
        run_id="r",
        stages=["pretrain", "detector", "presence"],  # presence: not evaluated, no row
        datasets={"train": "s3://b/datasets/t/v1", "gold": "s3://b/datasets/g/v1"},
        config={},
        execution="e",
    )
    card = Registry(store, "sam3-tiny").card(promotion.version)
    assert card.metrics == {"pretrain": {"recognition_AUC": 0.91}, "detector": image}
    assert card.stage == "presence"


# -- aliases ------------------------------------------------------------------
def test_set_alias_resolve_and_rollback(store: ObjectStore) -> None:
    reg = registry_with_versions(store, 3)
    assert reg.alias("production") is None and reg.aliases() == {}
    reg.set_alias("production", 1, updated_by="ci")
    reg.set_alias("production", 2)
    record = reg.set_alias("production", 3)
    assert (record.version, record.history) == (3, [1, 2])
    assert reg.set_alias("production", 3) == record  # already there: a no-op
    assert reg.resolve("production").version == 3 and reg.resolve("2").version == 2
    reg.set_alias("staging", 1)
    assert set(reg.aliases()) == {"production", "staging"}

    back = reg.rollback("production")
    assert (back.version, back.history) == (2, [1])
    assert reg.rollback("production").version == 1
    with pytest.raises(ConfigError, match="no earlier version"):
        reg.rollback("production")
    with pytest.raises(ConfigError, match="no alias 'canary'"):
        reg.rollback("canary")
    with pytest.raises(ConfigError, match="no complete version 9"):
        reg.set_alias("production", 9)
    with pytest.raises(ConfigError, match="no alias 'nope'"):
        reg.resolve("nope")


def test_bad_model_and_alias_names(store: ObjectStore) -> None:
    for bad in ("", "Sam3", "a/b", "-x", "x" * 64, "../x"):
        with pytest.raises(ConfigError, match="bad model name"):
            Registry(store, bad)
    reg = registry_with_versions(store, 1, model="ok.model_1")
    for bad in ("Production", "1st", "a_b", "x" * 33, "a/b"):
        with pytest.raises(ConfigError, match=f"bad alias name '{bad}'"):
            reg.set_alias(bad, 1)


def test_two_promotions_from_the_same_read_exactly_one_wins(
    store: ObjectStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    reg = registry_with_versions(store, 3)
    reg.set_alias("production", 1)
    stale = reg._read_alias("production")  # both promoters read this before either writes
    monkeypatch.setattr(reg, "_read_alias", lambda alias: stale)
    assert reg.set_alias("production", 2).version == 2
    lost = r"changed concurrently and now points at version 2; nothing was changed"
    with pytest.raises(AliasConflict, match=lost):
        reg.set_alias("production", 3)
    monkeypatch.undo()
    record = reg.alias("production")
    assert record is not None and (record.version, record.history) == (2, [1])


def test_concurrent_promotions_from_threads(store: ObjectStore) -> None:
    reg = registry_with_versions(store, 9)
    reg.set_alias("production", 1)
    barrier = threading.Barrier(8)
    won: list[int] = []
    lost: list[int] = []
    errors: list[BaseException] = []

    def promote(version: int) -> None:
        mine = Registry(store, "sam3-tiny")
        barrier.wait()
        try:
            mine.set_alias("production", version)
            won.append(version)
        except AliasConflict:
            lost.append(version)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=promote, args=(v,)) for v in range(2, 10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert len(won) + len(lost) == 8 and won, (won, lost)
    final = reg.alias("production")
    assert final is not None
    chain = [*final.history, final.version]
    # every successful write read its predecessor: the chain is the start plus the winners, once each
    assert chain[0] == 1 and sorted(chain[1:]) == sorted(won) and len(set(chain)) == len(chain)


# -- a checkpoint larger than the process may hold --------------------------------
BIG_MB = 320  # the full model's weights are about 3.4 GB: the same path, ten times smaller
HEADROOM_MB = 128  # what registering may add to the process's address space

REGISTER_UNDER_A_CAP = """
import json, resource, sys
from components.promote.registry import Registry
from components.storage import ObjectStore

checkpoint, headroom = sys.argv[1], int(sys.argv[2])
registry = Registry(ObjectStore.from_env(), "sam3-full")
registry.versions()  # imports, the client and its connection: before the cap
vm = next(int(line.split()[1]) * 1024 for line in open("/proc/self/status") if line.startswith("VmSize:"))
resource.setrlimit(resource.RLIMIT_AS, (vm + headroom, resource.getrlimit(resource.RLIMIT_AS)[1]))
card, created = registry.register(
    checkpoint, run_id="big", stage="detector", metrics={}, datasets={}, config={}, code_version="t"
)
print(json.dumps({"card": card.model_dump(), "created": created}))
"""


def _sparse_safetensors(path: Path, megabytes: int) -> str:
    """A valid safetensors file of one zero F32 tensor, written sparsely (instant); returns its sha256."""
    count = (megabytes << 20) // 4
    header = json.dumps({"w": {"dtype": "F32", "shape": [count], "data_offsets": [0, 4 * count]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(path, "wb") as fh:
        fh.write(len(header).to_bytes(8, "little") + header)
        fh.truncate(8 + len(header) + 4 * count)
    with open(path, "rb") as fh:
        return hashlib.file_digest(fh, "sha256").hexdigest()


@pytest.mark.slow
def test_registering_does_not_hold_the_weights_in_memory(
    store: ObjectStore, s3_env: dict[str, str], tmp_path: Path, repo_root: Path
) -> None:
    """A checkpoint of BIG_MB registered by a process that may grow by HEADROOM_MB only (RLIMIT_AS): the
    weights are hashed in chunks and copied on the server, and the card and the copy are those weights."""
    folder = CheckpointStore(store, "runs/big/detector").step_key(4)
    weights = tmp_path / "model.safetensors"
    digest = _sparse_safetensors(weights, BIG_MB)
    store.client.fput_object(store.bucket, f"{folder}/model.safetensors", str(weights))
    store.put_json(f"{folder}/config.json", {"size": "full", "stage": "detector"})

    done = subprocess.run(
        [sys.executable, "-c", REGISTER_UNDER_A_CAP, store.uri(folder), str(HEADROOM_MB << 20)],
        env={**s3_env, "MALLOC_ARENA_MAX": "1"},
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["created"] and out["card"]["weights_sha256"] == digest and out["card"]["size"] == "full"
    copy = f"registry/sam3-full/versions/{out['card']['version']}/model.safetensors"
    copied, _ = store.sha256_object(copy)
    assert (copied.size, copied.sha256) == (weights.stat().st_size, digest)
    assert Registry(store, "sam3-full").versions() == [out["card"]["version"]]


# -- the CLI ------------------------------------------------------------------
def test_cli_list_show_promote_rollback(store: ObjectStore, s3_env: dict[str, str]) -> None:
    from pipeline.commands.models import app

    registry_with_versions(store, 2)
    runner = CliRunner()

    result = runner.invoke(app, ["show", "sam3-tiny"])  # no production alias: the newest version
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["version"] == 2

    result = runner.invoke(app, ["promote", "sam3-tiny", "1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["version"] == 1
    result = runner.invoke(app, ["promote", "sam3-tiny", "2", "--alias", "production"])
    assert json.loads(result.stdout.strip().splitlines()[-1])["history"] == [1]

    result = runner.invoke(app, ["list"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout.strip().splitlines()[-1])
    assert [(r["version"], r["aliases"]) for r in rows] == [(1, []), (2, ["production"])]
    assert "model registry" in result.stderr and "0.8000" in result.stderr  # the table
    assert runner.invoke(app, ["list", "--model", "sam3-tiny"]).exit_code == 0

    assert json.loads(runner.invoke(app, ["show", "sam3-tiny"]).stdout)["version"] == 2
    assert json.loads(runner.invoke(app, ["show", "sam3-tiny", "1"]).stdout)["version"] == 1

    result = runner.invoke(app, ["rollback", "sam3-tiny"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout.strip().splitlines()[-1])["version"] == 1
    assert json.loads(runner.invoke(app, ["show", "sam3-tiny", "production"]).stdout)["version"] == 1

    result = runner.invoke(app, ["rollback", "sam3-tiny"])
    assert isinstance(result.exception, ConfigError)
    result = runner.invoke(app, ["show", "sam3-tiny", "7"])
    assert isinstance(result.exception, ConfigError)
