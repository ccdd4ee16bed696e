"""Importing released weights (`models import`): the released layout in, the project's layout and a card
out; unreadable and ill-fitting files refused with nothing registered; sources on disk, in S3, on the Hub;
and Meta's own full architecture, 3.45 GB, end to end through the command line."""

from __future__ import annotations

import gc
import os
import shutil
import subprocess
import sys
import tempfile
import time
import types
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from components.errors import ConfigError, DataError, WeightsRefused
from components.model.builder import build_model
from components.model.video import build_video_model, load_model_weights
from components.promote.importer import SAM_LICENCE, hub_file, import_weights, model_state
from components.promote.registry import ImportedFrom, Registry
from components.storage import ObjectStore, sha256_file
from components.train.checkpoint import read_weights

TINY = "tiny112"


def save_released(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """``state`` as Meta releases weights: a zip-format torch save of ``{"model": state}``."""
    torch.save({"model": state}, path)
    return path


@pytest.fixture(scope="module")
def tiny_release(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny video model's weights in the released layout (``detector.*``, ``tracker.*``)."""
    torch.manual_seed(0)
    state = build_video_model(TINY).state_dict()
    return save_released(tmp_path_factory.mktemp("release") / "sam3.pt", dict(state))


def source_state(path: Path) -> dict[str, torch.Tensor]:
    return dict(torch.load(path, mmap=True, weights_only=True)["model"])


def version_weights(store: ObjectStore, model: str, version: int) -> dict[str, torch.Tensor]:
    return read_weights(store.uri(f"registry/{model}/versions/{version}"), store)


def nothing_registered(store: ObjectStore) -> bool:
    return not list(store.list_objects("registry/"))


def test_a_released_checkpoint_becomes_a_version_with_its_card(
    store: ObjectStore, tiny_release: Path
) -> None:
    source = source_state(tiny_release)
    card, created = import_weights(store, str(tiny_release), "sam3-tiny", size=TINY)
    assert created and card.version == 1
    assert (card.size, card.stage, card.checkpoint) == (TINY, "imported", str(tiny_release))
    assert card.imported == ImportedFrom(
        source=str(tiny_release),
        source_sha256=sha256_file(tiny_release),
        architecture="video",  # the file holds the tracker
        licence=SAM_LICENCE,
    )
    assert "Meta" in SAM_LICENCE and "SAM License" in SAM_LICENCE
    stored, _ = store.sha256_object("registry/sam3-tiny/versions/1/model.safetensors")
    assert card.weights_sha256 == stored.sha256

    weights = version_weights(store, "sam3-tiny", 1)
    assert weights.keys() == source.keys()  # the video layout is the released one
    assert all(torch.equal(weights[k], source[k]) for k in source)
    load_model_weights(build_video_model(TINY), weights, "version 1")  # the loaders take it

    again, created = import_weights(store, str(tiny_release), "sam3-tiny", size=TINY)
    assert not created and again == card  # the same file for the same model: the same version

    card, created = import_weights(store, str(tiny_release), "sam3-tiny", architecture="image", size=TINY)
    assert created and card.version == 2 and card.imported and card.imported.architecture == "image"
    weights = version_weights(store, "sam3-tiny", 2)
    detector = {
        k.removeprefix("detector."): v
        for k, v in source.items()
        if k.startswith("detector.") and ".sam2_convs." not in k
    }
    assert weights.keys() == detector.keys()  # the image layout: the detector, as the image stages write it
    assert all(torch.equal(weights[k], detector[k]) for k in detector)
    model = build_model(TINY)
    load_model_weights(model, weights, "version 2")
    assert all(torch.equal(v, detector[k]) for k, v in model.state_dict().items() if k in detector)
    assert Registry(store, "sam3-tiny").versions() == [1, 2]


def test_an_s3_source_is_streamed_and_no_temporary_file_is_left(
    store: ObjectStore, tiny_release: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))
    uri = store.uri("uploads/sam3.pt")
    store.put_file("uploads/sam3.pt", tiny_release)
    card, created = import_weights(store, uri, "sam3-tiny", size=TINY)
    assert created and card.imported and card.imported.source == uri == card.checkpoint
    assert card.imported.source_sha256 == sha256_file(tiny_release)
    assert not list(scratch.iterdir())

    store.put_bytes("uploads/broken.pt", tiny_release.read_bytes()[:4096])
    with pytest.raises(WeightsRefused, match="truncated or corrupted"):
        import_weights(store, store.uri("uploads/broken.pt"), "sam3-tiny", size=TINY)
    assert not list(scratch.iterdir()) and Registry(store, "sam3-tiny").versions() == [1]
    with pytest.raises(ConfigError, match="no such object"):
        import_weights(store, store.uri("uploads/absent.pt"), "sam3-tiny", size=TINY)


class Hook:
    """What a pickle can smuggle in: an object of any importable class, built when the file is loaded."""


def _truncated(path: Path, release: Path) -> None:
    path.write_bytes(release.read_bytes()[: release.stat().st_size // 2])


def _random_bytes(path: Path, release: Path) -> None:
    path.write_bytes(os.urandom(1 << 16))


def _random_after_zip_magic(path: Path, release: Path) -> None:
    path.write_bytes(b"PK\x03\x04" + os.urandom(1 << 16))


def _code(path: Path, release: Path) -> None:
    torch.save({"model": {"detector.x": torch.zeros(1)}, "hook": Hook()}, path)


def _no_state_dict(path: Path, release: Path) -> None:
    torch.save([1, 2, 3], path)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (_truncated, "not a readable torch checkpoint (truncated or corrupted?)"),
        (_random_bytes, "not a zip-format torch save"),
        (_random_after_zip_magic, "not a readable torch checkpoint (truncated or corrupted?)"),
        (_code, "never unpickled (torch.load weights_only=True)"),
        (_no_state_dict, "holds no state dict"),
    ],
)
def test_an_unreadable_file_is_refused_and_nothing_is_registered(
    make: Callable[[Path, Path], None], message: str, store: ObjectStore, tiny_release: Path, tmp_path: Path
) -> None:
    bad = tmp_path / "sam3.pt"
    make(bad, tiny_release)
    with pytest.raises(WeightsRefused) as refused:
        import_weights(store, str(bad), "sam3-full")
    assert str(refused.value).startswith(f"{bad}: refused: ") and message in str(refused.value)
    assert refused.value.exit_code == 2 and nothing_registered(store)


def test_a_file_of_another_architecture_is_refused_listing_its_keys(
    store: ObjectStore, tiny_release: Path, tmp_path: Path
) -> None:
    with pytest.raises(WeightsRefused) as refused:  # the tiny model where the full one is expected
        import_weights(store, str(tiny_release), "sam3-full")
    message = str(refused.value)
    assert message.startswith(f"{tiny_release} does not fit the full video model: ")
    assert "missing keys (" in message and "shape mismatches (" in message
    assert message.endswith("; refused, nothing was registered") and nothing_registered(store)

    # the full detector's keys and shapes (stride-0 tensors: a few bytes on disk), one key dropped,
    # one reshaped and one added
    expected = model_state("image", "full")
    state = {f"detector.{k}": torch.zeros((), dtype=v.dtype).expand(v.shape) for k, v in expected.items()}
    del state["detector.transformer.decoder.presence_token.weight"]
    state["detector.dot_prod_scoring.hs_proj.bias"] = torch.zeros(3)
    state["detector.extra.weight"] = torch.zeros(1)
    near = save_released(tmp_path / "near.pt", state)
    with pytest.raises(WeightsRefused) as refused:
        import_weights(store, str(near), "sam3-full")
    assert str(refused.value) == (
        f"{near} does not fit the full image model (keys as it names them: the file's without 'detector.'): "
        "1 missing keys (transformer.decoder.presence_token.weight); "
        "1 unexpected keys (extra.weight); "
        "1 shape mismatches (dot_prod_scoring.hs_proj.bias: checkpoint (3,) vs model (256,)); "
        "refused, nothing was registered"
    )
    with pytest.raises(
        WeightsRefused, match=r"video model: \d+ missing keys \(detector.backbone.vision_backbone.sam2_convs"
    ):
        import_weights(store, str(near), "sam3-full", architecture="video")  # a detector has no tracker
    assert nothing_registered(store)


def test_hub_sources(store: ObjectStore, tiny_release: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Only the arguments and the errors: the Hub itself is not reached from the tests."""
    assert hub_file("hf://facebook/sam3") == ("facebook/sam3", "sam3.pt")
    assert hub_file("hf://facebook/sam3/") == ("facebook/sam3", "sam3.pt")
    assert hub_file("hf://someone/fork/weights/sam3.pt") == ("someone/fork", "weights/sam3.pt")
    for bad in ("hf://facebook", "hf://", "hf:///sam3"):
        with pytest.raises(ConfigError, match=r"hf://OWNER/REPO\[/FILE\]"):
            import_weights(store, bad, "sam3-full")

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # not installed
    with pytest.raises(
        ConfigError, match=r"needs the huggingface_hub package \(pip install huggingface_hub\)"
    ):
        import_weights(store, "hf://facebook/sam3", "sam3-full")

    calls = []

    def download(repo_id: str, filename: str) -> str:
        calls.append((repo_id, filename))
        return str(tiny_release)

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=download))
    card, created = import_weights(store, "hf://facebook/sam3", "sam3-tiny", size=TINY)
    assert created and calls == [("facebook/sam3", "sam3.pt")]
    assert card.imported and card.imported.source == "hf://facebook/sam3"

    def offline(repo_id: str, filename: str) -> str:
        raise OSError("network is unreachable")

    monkeypatch.setitem(sys.modules, "huggingface_hub", types.SimpleNamespace(hf_hub_download=offline))
    with pytest.raises(DataError, match=r"network is unreachable .*HF_TOKEN"):
        import_weights(store, "hf://facebook/sam3", "sam3-tiny", size=TINY)
    assert Registry(store, "sam3-tiny").versions() == [1]


def test_the_command_refuses_with_exit_code_2(
    store: ObjectStore, s3_env: dict[str, str], tmp_path: Path, repo_root: Path
) -> None:
    from pipeline.commands.models import app

    bad = tmp_path / "sam3.pt"
    bad.write_bytes(os.urandom(4096))
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "models", "import", str(bad), "--model", "sam3-full"],
        env=s3_env,
        cwd=repo_root,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 2, done.stderr[-2000:]
    assert f"error: {bad}: refused: not a zip-format torch save" in done.stderr and nothing_registered(store)

    result = CliRunner().invoke(app, ["import", str(bad), "--model", "sam3-full", "--architecture", "both"])
    assert isinstance(result.exception, ConfigError) and "image or video" in str(result.exception)
    result = CliRunner().invoke(app, ["import", "--help"])
    shown = " ".join(result.stdout.replace("│", " ").split())  # the help as words, without rich's frame
    assert result.exit_code == 0 and "hf://facebook/sam3" in shown and "Meta's SAM License" in shown


# -- Meta's released architecture, end to end ------------------------------------------------------------
RESOLUTION = 1008
PHRASE = ["a yellow school bus"]
DISK_NEEDED = 12 << 30  # the released file, its converted copy and the S3 server's copy, with room to spare


@contextmanager
def first_block_only(trunk: nn.Module) -> Iterator[None]:
    """The ViT trunk cut to its first block (windowed attention), whose output feeds the neck: the same cut
    in any SAM 3 model, so the vision backbone's forward costs one block of 32."""
    blocks, last = trunk.blocks, trunk.full_attn_ids
    trunk.blocks, trunk.full_attn_ids = blocks[:1], [0]
    try:
        yield
    finally:
        trunk.blocks, trunk.full_attn_ids = blocks, last


def probe(detector: nn.Module) -> dict[str, torch.Tensor]:
    """A SAM 3 detector's outputs on a fixed input, where no full forward is needed: the vision backbone
    (patch embedding, position embedding, the trunk's first block, the neck's four FPN levels) on a 1008-px
    image, and the text encoder (all its layers and the projection to the model width) on a phrase. A whole
    1008-px forward takes minutes per model on a few CPU cores; these reach every kind of module the
    mapping places, and the test compares every other tensor for equality."""
    image = torch.randn(1, 3, RESOLUTION, RESOLUTION, generator=torch.Generator().manual_seed(1))
    backbone = detector.backbone
    with torch.no_grad(), first_block_only(backbone.vision_backbone.trunk):
        levels = backbone.vision_backbone(image)[0]
        text = backbone.forward_text(PHRASE, device="cpu")
    return {
        **{f"vision level {i}": x for i, x in enumerate(levels)},
        **{f"text {k}": v for k, v in text.items() if isinstance(v, torch.Tensor)},
    }


@dataclass
class Release:
    path: Path
    probed: dict[str, torch.Tensor]  # Meta's model's outputs (``probe``)


@pytest.fixture(scope="module")
def meta_release(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Release]:
    """Meta's video model as ``sam3.model_builder`` builds it (random weights), saved as Meta releases it:
    ``{"model": state_dict()}``, 1,465 tensors, 861M values, 3.45 GB. Built once (only this module uses
    it) and removed as soon as the module is done, so the rest of the suite runs without the 3.45 GB."""
    import sam3.model_builder as official

    from components.model.builder import bpe_vocab_path
    from components.model.compat import ensure_compat

    folder = tmp_path_factory.mktemp("meta-release")
    for where in (folder, Path(tempfile.gettempdir())):
        free = shutil.disk_usage(where).free
        if free < DISK_NEEDED:
            pytest.fail(
                f"the released-architecture test needs {DISK_NEEDED >> 30} GiB free in {where}: {free >> 30}"
            )
    ensure_compat()  # the package's device="cuda" buffers (position encodings, box coordinates) on the CPU
    torch.manual_seed(0)
    model = official.build_sam3_video_model(
        checkpoint_path=None, load_from_HF=False, bpe_path=str(bpe_vocab_path()), device="cpu"
    ).eval()
    probed = probe(model.detector)
    path = folder / "sam3.pt"
    torch.save({"model": model.state_dict()}, path)
    del model
    gc.collect()
    try:
        yield Release(path, probed)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_measured(command: list[str], env: dict[str, str], cwd: Path, out: Path) -> tuple[int, str, str, int]:
    """Run a command; its exit code, stdout, stderr and the peak of its own (anonymous) resident memory in
    bytes, sampled every 20 ms. Pages of a memory-mapped file are left out: the kernel reclaims them
    under pressure, and how many stay resident depends on the machine, not on the command."""
    peak = 0
    with open(out / "stdout", "w+") as stdout, open(out / "stderr", "w+") as stderr:
        child = subprocess.Popen(command, env=env, cwd=cwd, stdout=stdout, stderr=stderr)
        status = Path(f"/proc/{child.pid}/status")
        while child.poll() is None:
            with suppress(OSError):  # the child exited between poll and read
                for line in status.read_text().splitlines():
                    if line.startswith("RssAnon:"):
                        peak = max(peak, int(line.split()[1]) << 10)
            time.sleep(0.02)
        stdout.seek(0)
        stderr.seek(0)
        return child.returncode, stdout.read(), stderr.read(), peak


@pytest.mark.slow
def test_meta_released_weights_import_and_run_as_meta_built_them(
    meta_release: Release, store: ObjectStore, s3_env: dict[str, str], tmp_path: Path, repo_root: Path
) -> None:
    """`models import` on the released architecture's file: the version's weights are the file's, tensor
    for tensor, under the same keys; loaded from the registry into the project's full image model, they
    compute what Meta's model computes; the card says where they come from. The command never holds the
    weights in memory twice."""
    path, size = meta_release.path, meta_release.path.stat().st_size
    code, stdout, stderr, peak = run_measured(
        [sys.executable, "-m", "pipeline", "models", "import", str(path), "--model", "sam3-released"],
        {**s3_env, "SAM3_LOG_LEVEL": "INFO"},
        repo_root,
        tmp_path,
    )
    assert code == 0, stderr[-3000:]
    # one copy of the weights in the process's own memory would already be the file's size
    assert 0 < peak < 0.5 * size, f"peak anonymous RSS {peak / 1e9:.2f} GB for a {size / 1e9:.2f} GB file"
    card = Registry(store, "sam3-released").card(1)
    assert card.model_dump_json() == stdout.strip().splitlines()[-1]
    assert card.imported == ImportedFrom(
        source=str(path), source_sha256=sha256_file(path), architecture="video", licence=SAM_LICENCE
    )
    assert (card.size, card.stage, card.version) == ("full", "imported", 1)

    uri = store.uri("registry/sam3-released/versions/1")
    weights = read_weights(uri, store)
    source = source_state(path)
    assert weights.keys() == source.keys() and len(source) == 1465
    assert all(torch.equal(weights[k], source[k]) for k in source)
    del source

    model = build_model("full")
    load_model_weights(model, weights, uri)
    del weights
    ours = probe(model.eval())
    assert ours.keys() == meta_release.probed.keys()
    for name, value in meta_release.probed.items():
        torch.testing.assert_close(ours[name], value, msg=name)
