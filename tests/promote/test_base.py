"""The base a run starts from: config forms, resolution against a real registry, pinning, records."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from safetensors.torch import save_file

from components.errors import ConfigError, DataError
from components.promote.base import Base, base_key, pin, read_base, resolve, resolve_and_record
from components.promote.registry import Registry
from components.storage import ObjectStore


def register(store: ObjectStore, tmp_path: Path, value: float, size: str = "tiny112") -> int:
    path = tmp_path / f"w{value}.safetensors"
    save_file({"w": torch.full((2,), value)}, path)
    card, _ = Registry(store, "m").register_file(
        path, source=str(path), stage="presence", size=size, code_version="t"
    )
    return card.version


def test_the_config_forms_of_a_base() -> None:
    assert Base.model_validate("sam3-tiny@production").model == "sam3-tiny@production"
    assert (
        Base.model_validate("s3://b/runs/r/presence/checkpoints").checkpoint
        == "s3://b/runs/r/presence/checkpoints"
    )
    assert Base.model_validate({"model": "sam3-tiny@3"}).registry_ref() == ("sam3-tiny", "3")
    for bad, message in (
        ("sam3-tiny", "MODEL@ALIAS or MODEL@VERSION"),
        ("sam3-tiny@0", "MODEL@ALIAS or MODEL@VERSION"),
        ({"model": "m@1", "checkpoint": "s3://b/k"}, "exactly one"),
        ({"checkpoint": "/local/file.pt"}, "s3://"),
        ({"model": "m@3", "pinned": 2}, "only a MODEL@ALIAS"),
    ):
        with pytest.raises(ValidationError, match=message):
            Base.model_validate(bad)


def test_an_alias_resolves_to_its_version_and_is_recorded(store: ObjectStore, tmp_path: Path) -> None:
    registry = Registry(store, "m")
    registry.set_alias("production", register(store, tmp_path, 1.0))
    v2 = register(store, tmp_path, 2.0)
    found = resolve_and_record(store, Base(model="m@production"), "tiny", "r", "e")
    assert (found.version, found.size, found.stage) == (1, "tiny112", "presence")
    assert found.weights == store.uri("registry/m/versions/1/model.safetensors")
    assert store.get_json(base_key("r", "e"))["version"] == 1
    assert resolve(store, Base(model=f"m@{v2}"), "tiny112").version == v2
    # run pins the alias: the reference, and so the run id, names the version
    pinned = pin(store, Base(model="m@production"))
    assert pinned.pinned == 1 and pinned.reference == "m@production (version 1)"
    registry.set_alias("production", v2)
    assert (
        resolve(store, pinned, "tiny112").version == 1
        and resolve(store, Base(model="m@production"), "tiny112").version == v2
    )
    # the outcome and the card read the record with the base's gold headline, when it scored these weights
    assert read_base(store, "r", "e").metrics == {}  # type: ignore[union-attr]
    store.put_json(
        "runs/r/base/eval/metrics.json",
        {
            "checkpoint": found.weights,
            "result": {"cgF1": 9.0, "IL_MCC": 0.4, "pmF1": 22.0, "cgF1@0.5": 1, "cgF1@0.75": 1},
        },
    )
    assert read_base(store, "r", "e").metrics["cgF1"] == 9.0  # type: ignore[union-attr]
    assert read_base(store, "r", "other") is None


def test_a_base_that_does_not_fit_or_exist_is_refused(store: ObjectStore, tmp_path: Path) -> None:
    Registry(store, "m").set_alias("production", register(store, tmp_path, 1.0, size="small"))
    with pytest.raises(
        ConfigError, match="base m@production is a small model; the first stage trains tiny112"
    ):
        resolve(store, Base(model="m@production"), "tiny112")
    with pytest.raises(ConfigError, match="base m@candidate: model 'm' has no alias 'candidate'"):
        resolve(store, Base(model="m@candidate"), "small")
    with pytest.raises(ConfigError, match="base m@9: model 'm' has no version 9"):
        resolve(store, Base(model="m@9"), "small")
    with pytest.raises(DataError, match="no committed checkpoint"):
        resolve(store, Base(checkpoint=store.uri("runs/r/detector/checkpoints")), "small")
    store.put_bytes("runs/r/detector/checkpoints/step-0000002/model.safetensors", b"w")
    found = resolve(store, Base(checkpoint=store.uri("runs/r/detector/checkpoints/step-0000002")), "small")
    assert found.weights == store.uri("runs/r/detector/checkpoints/step-0000002/model.safetensors")
    assert found.version is None
