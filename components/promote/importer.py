"""Released weights into the registry (`sam3-pipeline models import`).

Meta's released checkpoint (``sam3.pt``, 3.4 GB) is a zip-format torch save of
``{"model": state_dict}``: the image model under ``detector.`` and the tracker under
``tracker.`` (components.model.checkpoint). An import

1. resolves the source to a local file: a path as it is; an ``s3://`` object of the
   configured store, streamed into a temporary file; ``hf://OWNER/REPO[/FILE]`` (the
   file ``sam3.pt`` unless one is named) through ``huggingface_hub``, into its cache;
2. hashes the file in chunks (the card's ``source_sha256``);
3. opens it with ``torch.load(mmap=True, weights_only=True)``: the tensors stay pages
   of the mapped file, and nothing but tensors and plain containers is unpickled, so a
   file that would build other objects (run code) is refused, never executed;
4. checks every key and shape against the architecture at the preset's size, built on
   the meta device (no weights allocated), as the loaders check (``fit_weights``): a
   file that does not fit is refused, its missing, unexpected and mismatched keys
   listed, before anything is written;
5. writes the project's layout, safetensors as the trainer writes them, from the mapped
   tensors into a temporary file, unmaps the source and registers the file
   (``Registry.register_file``: hashed in chunks and streamed into the store in parts;
   the card, written last, names the source, its sha256, the architecture and the
   weights' licence). Temporary files are removed whatever happens.

So the weights are never in memory twice: the writer reads each mapped tensor once.

Layouts: ``video`` keeps the released keys as they are (``detector.*``, ``tracker.*``:
what the video stages write); ``image`` is the detector as the image stages write it:
``detector.`` stripped, the tracker and the tracker's neck (``sam2_convs``) dropped.
The RoPE tables (``freqs_cis``) are kept where the file has them; loaders recompute them.
"""

from __future__ import annotations

import functools
import logging
import pickle
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import Literal, get_args

import torch

from components.errors import ConfigError, DataError, WeightsRefused
from components.model.checkpoint import DETECTOR, fit_weights, normalize_state_dict
from components.promote.registry import ImportedFrom, ModelCard, Registry
from components.storage import ObjectStore, sha256_file
from components.train.checkpoint import WEIGHTS

log = logging.getLogger(__name__)

Architecture = Literal["image", "video"]
HF = "hf://"
HF_FILE = "sam3.pt"
STAGE = "imported"
SAM_LICENCE = (
    "The weights are Meta's and come under the licence Meta publishes with them (the SAM License, "
    "LICENSE in the facebook/sam3 repository), not under this project's."
)
ZIP_MAGIC = b"PK\x03\x04"  # what torch.save has written since PyTorch 1.6 (the released file is one)
SPACE_MARGIN = 64 << 20  # bytes kept free beyond a temporary file's size
SHOWN = 5


def import_weights(
    store: ObjectStore,
    source: str,
    model: str,
    *,
    architecture: Architecture | None = None,
    size: str = "full",
    licence: str = SAM_LICENCE,
    code_version: str | None = None,
) -> tuple[ModelCard, bool]:
    """Import ``source`` (a path, ``s3://`` or ``hf://`` URI) as a new version of ``model``.

    ``architecture``: the model it is checked against and stored for (default: ``video`` when the file
    holds a tracker, else ``image``). Returns the card and whether a version was created: a file already
    imported for the same architecture (same sha256), or weights a version already holds, give that
    version's card. WeightsRefused (exit code 2) for a file that cannot be read or does not fit.
    """
    registry = Registry(store, model)  # the name is checked before any work
    if architecture is not None and architecture not in get_args(Architecture):
        raise ConfigError(f"architecture must be image or video, not {architecture!r}")
    if code_version is None:
        from components.images import package_version

        code_version = package_version()
    with tempfile.TemporaryDirectory(prefix="sam3-import-") as scratch:
        path, digest, label = _fetch(source, store, Path(scratch))
        weights = Path(scratch) / WEIGHTS
        chosen = _convert(path, label, weights, architecture, size, done=_imported(registry, digest))
        if isinstance(chosen, ModelCard):
            log.info("%s is %s version %d already", label, model, chosen.version)
            return chosen, False
        imported = ImportedFrom(source=label, source_sha256=digest, architecture=chosen, licence=licence)
        return registry.register_file(
            weights, source=label, stage=STAGE, size=size, code_version=code_version, imported=imported
        )


def read_checkpoint(path: Path, name: str) -> dict[str, torch.Tensor]:
    """The state dict of a zip-format torch save, its tensors mapped from the file; ``torch.load`` with
    ``weights_only=True``, so nothing but tensors and plain containers is unpickled. WeightsRefused,
    naming ``name``, for anything else."""
    with open(path, "rb") as fh:
        magic = fh.read(len(ZIP_MAGIC))
    if magic != ZIP_MAGIC:
        raise WeightsRefused(
            f"{name}: refused: not a zip-format torch save (it starts with {magic!r}, not {ZIP_MAGIC!r}); "
            "the released sam3.pt is one"
        )
    try:
        obj = torch.load(path, map_location="cpu", mmap=True, weights_only=True)
    except pickle.UnpicklingError as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsRefused(
            f"{name}: refused: it holds objects other than tensors and plain containers, which are never "
            f"unpickled (torch.load weights_only=True): {reason}"
        ) from None
    except Exception as exc:  # torch reports a damaged archive with several exception types
        raise WeightsRefused(
            f"{name}: refused: not a readable torch checkpoint (truncated or corrupted?): "
            f"{type(exc).__name__}: {exc}"
        ) from None
    model = obj.get("model") if isinstance(obj, Mapping) else None
    state = model if isinstance(model, Mapping) else obj
    if not isinstance(state, Mapping) or not state:
        raise WeightsRefused(
            f"{name}: refused: it holds no state dict (names to tensors, at the top or under 'model')"
        )
    odd = [str(k) for k, v in state.items() if not (isinstance(k, str) and isinstance(v, torch.Tensor))]
    if odd:
        raise WeightsRefused(f"{name}: refused: {len(odd)} entries are not named tensors ({_first(odd)})")
    return dict(state)


def architecture_of(state: Mapping[str, torch.Tensor]) -> Architecture:
    """``video`` when the weights hold a tracker (``tracker.*``), else ``image``."""
    from components.model.video import TRACKER

    return "video" if any(k.startswith(TRACKER) for k in normalize_state_dict(state, video=True)) else "image"


def model_state(architecture: Architecture, size: str) -> dict[str, torch.Tensor]:
    """The state dict of the model at ``size``, on the meta device: keys and shapes, no weights."""
    return dict(_meta_state(architecture, size))


@functools.cache
def _meta_state(architecture: Architecture, size: str) -> Mapping[str, torch.Tensor]:
    from components.model.builder import build_model
    from components.model.video import build_video_model

    model = build_video_model(size, "meta") if architecture == "video" else build_model(size, "meta")
    return MappingProxyType(dict(model.state_dict()))  # shared by every caller: read-only


def to_layout(
    state: Mapping[str, torch.Tensor], architecture: Architecture, size: str, name: str
) -> dict[str, torch.Tensor]:
    """The weights in the project's layout for ``architecture`` (module docstring); WeightsRefused, with
    the missing, unexpected and mismatched keys, unless every key and shape fits the model."""
    expected = model_state(architecture, size)
    video = architecture == "video"
    model = f"the {size} {architecture} model"
    if not video and any(k.startswith(DETECTOR) for k in normalize_state_dict(state, video=True)):
        model += f" (keys as it names them: the file's without {DETECTOR!r})"
    try:
        fit_weights(state, expected, name, video=video, model_name=model)
    except DataError as exc:
        raise WeightsRefused(f"{exc}; refused, nothing was registered") from None
    return {k: v for k, v in normalize_state_dict(state, video).items() if k in expected}


def _imported(registry: Registry, digest: str) -> dict[Architecture, ModelCard]:
    """Versions imported from a file with this sha256, by architecture."""
    found: dict[Architecture, ModelCard] = {}
    for card in registry.cards():
        if card.imported is not None and card.imported.source_sha256 == digest:
            found.setdefault(card.imported.architecture, card)
    return found


def _convert(
    path: Path,
    name: str,
    out: Path,
    architecture: Architecture | None,
    size: str,
    done: Mapping[Architecture, ModelCard],
) -> Architecture | ModelCard:
    """Write the checked weights to ``out`` (safetensors); the architecture, or the card of the version
    already imported from this file for it. The source is unmapped when this returns."""
    from safetensors.torch import save_file

    state = read_checkpoint(path, name)
    chosen = architecture or architecture_of(state)
    if chosen in done:
        return done[chosen]
    tensors = _writable(to_layout(state, chosen, size, name))
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    _need_space(out.parent, total, f"the converted weights of {name}")
    log.info(
        "%s: %d tensors (%.1fM values) fit the %s %s model; writing %s",
        name,
        len(tensors),
        sum(t.numel() for t in tensors.values()) / 1e6,
        size,
        chosen,
        out,
    )
    save_file(tensors, out)
    return chosen


def _writable(tensors: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Tensors safetensors can write as they are: a tensor that shares its storage with an earlier one
    (tied weights) or is not contiguous is copied, alone; every other stays a view of the mapped file."""
    out, seen = {}, set()
    for key, value in tensors.items():
        storage = value.untyped_storage().data_ptr()
        if storage in seen or not value.is_contiguous():
            value = value.clone(memory_format=torch.contiguous_format)
            storage = value.untyped_storage().data_ptr()
        seen.add(storage)
        out[key] = value
    return out


def _fetch(source: str, store: ObjectStore, scratch: Path) -> tuple[Path, str, str]:
    """(a local file holding the source, its sha256, the source as the card names it)."""
    if source.startswith("s3://"):
        key = store.key_of(source)
        size = next((s for k, s in store.list_objects(key) if k == key), None)
        if size is None:
            raise ConfigError(f"{source}: no such object in the store")
        _need_space(scratch, size, f"downloading {source}")
        path = scratch / Path(key).name
        log.info("%s: downloading %.2f GB into %s", source, size / 1e9, path)
        got = store.get_file(key, path)
        return path, got.sha256, source
    if source.startswith(HF):
        path = _from_hub(source)
        label = source
    else:
        path = Path(source).expanduser()
        if not path.is_file():
            raise ConfigError(f"{source}: no such file")
        path = path.resolve()
        label = str(path)
    log.info("%s: hashing %.2f GB", label, path.stat().st_size / 1e9)
    return path, sha256_file(path), label


def hub_file(uri: str) -> tuple[str, str]:
    """``hf://OWNER/REPO[/FILE]`` -> (repository id, file in it; ``sam3.pt`` unless named)."""
    parts = uri.removeprefix(HF).strip("/").split("/")
    if len(parts) < 2 or not all(parts):
        raise ConfigError(f"{uri}: a Hugging Face source is hf://OWNER/REPO[/FILE], e.g. hf://facebook/sam3")
    return "/".join(parts[:2]), "/".join(parts[2:]) or HF_FILE


def _from_hub(uri: str) -> Path:
    """The file a ``hf://`` URI names, downloaded into the Hugging Face cache (or found there)."""
    repo, filename = hub_file(uri)
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise ConfigError(
            f"{uri}: downloading from the Hugging Face Hub needs the huggingface_hub package "
            "(pip install huggingface_hub); or download the file where the Hub can be reached and import "
            "the file itself"
        ) from None
    log.info("downloading %s from %s on the Hugging Face Hub (or finding it in its cache)", filename, repo)
    try:
        return Path(hf_hub_download(repo_id=repo, filename=filename))
    except Exception as exc:  # the hub client's errors (network, access, missing file) share no base class
        raise DataError(
            f"{uri}: could not download {filename} from {repo}: {type(exc).__name__}: {exc} "
            "(facebook/sam3 is gated: accept its licence on the repository's page and set HF_TOKEN)"
        ) from None


def _need_space(folder: Path, size: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if free < size + SPACE_MARGIN:
        raise ConfigError(
            f"{what} needs {size / 1e9:.2f} GB in {folder}, which has {free / 1e9:.2f} GB free: "
            "point TMPDIR at a larger disk"
        )


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f", ... {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")
