"""Checkpoints in a real S3 server: data first, latest.json last, keep K, resume, weights from a URI."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from components.errors import DataError
from components.storage import ObjectStore
from components.train.checkpoint import CheckpointStore, read_weights


def weights(v: float) -> dict[str, torch.Tensor]:
    return {"a.weight": torch.full((2, 3), v), "b.bias": torch.arange(4.0) + v}


def test_save_restore_keep_last_k(store: ObjectStore) -> None:
    ckpt = CheckpointStore(store, "runs/r1/detector", keep=2)
    assert ckpt.latest() is None and ckpt.restore() is None
    for step in (10, 20, 30):
        pointer = ckpt.save(step, weights(step), {"step": step, "optimizer": {"lr": 0.1}})
        assert pointer.step == step
    keys = [k for k, _ in store.list_objects("runs/r1/detector/checkpoints/")]
    assert not [k for k in keys if "step-0000010" in k]  # dropped beyond keep=2
    assert [k for k in keys if "step-0000020" in k] and [k for k in keys if "step-0000030" in k]
    restored = ckpt.restore()
    assert restored is not None and restored.step == 30 and restored.state["optimizer"] == {"lr": 0.1}
    assert torch.equal(restored.weights["a.weight"], weights(30)["a.weight"])


def test_an_uncommitted_step_folder_is_ignored(store: ObjectStore) -> None:
    ckpt = CheckpointStore(store, "runs/r2/presence")
    ckpt.save(5, weights(5), {"step": 5})
    store.put_bytes("runs/r2/presence/checkpoints/step-0000006/model.safetensors", b"half-written")
    restored = ckpt.restore()
    assert restored is not None and restored.step == 5


def test_read_weights_from_uris_and_paths(store: ObjectStore, tmp_path: Path) -> None:
    ckpt = CheckpointStore(store, "runs/r3/detector")
    pointer = ckpt.save(7, weights(7), {})
    for uri in (pointer.weights, store.uri(pointer.key), store.uri("runs/r3/detector/checkpoints")):
        assert torch.equal(read_weights(uri, store)["b.bias"], weights(7)["b.bias"])
    local = tmp_path / "w.safetensors"
    save_file(weights(1), str(local))
    assert torch.equal(read_weights(str(local), None)["a.weight"], weights(1)["a.weight"])
    torch.save({"model": weights(2)}, tmp_path / "w.pt")
    assert torch.equal(read_weights(str(tmp_path / "w.pt"), None)["a.weight"], weights(2)["a.weight"])
    with pytest.raises(DataError, match="no such checkpoint"):
        read_weights(store.uri("runs/none/step-0000001"), store)
