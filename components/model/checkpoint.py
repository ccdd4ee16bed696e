"""State-dict keys: normalise the layouts checkpoints come in, and load weights loudly.

Storage is the trainer's business; this module only maps keys. Layouts seen:
the project's own (``Sam3Image.state_dict()``), a DDP- or ``torch.compile``-
wrapped model (``module.`` / ``_orig_mod.`` prefixes), a ``{"model": {...}}``
wrapper, and video-model checkpoints (Meta's released ones and the project's
tracker and joint stages): the image model under ``detector.`` and the tracker
under ``tracker.``. Loaded into the image model, the tracker and the vision
neck's tracker-only convolutions are dropped, as ``sam3.model_builder`` does;
the video model (components.model.video) keeps the layout (``video=True``).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

import torch
from torch import nn

from components.errors import ConfigError, DataError

log = logging.getLogger(__name__)

DETECTOR = "detector."
WRAPPERS = ("module.", "_orig_mod.")
RECOMPUTED = (".attn.freqs_cis",)
"""Buffers the model computes from its config (ViT RoPE tables): always the model's own, never loaded."""
SHOWN = 5
TRACKER_NECK = ".sam2_convs."
BACKBONE = "backbone."
ALIGN_HEAD = "align."
"""Keys of stage 0's checkpoints (components.model.align): the detector's backbone, and the head it drops."""
ADDED_LATER = {"align.instance_bias": "stage 0's per-instance term, newer than the first stage-0 checkpoints"}
"""Parameters a checkpoint from an earlier version may lack: such a checkpoint loads, and they keep the value
the model starts with."""


def normalize_state_dict(state_dict: Mapping[str, object], video: bool = False) -> dict[str, torch.Tensor]:
    """Keys as ``Sam3Image.state_dict()`` names them (see the module docstring for the layouts).

    ``video``: keys as the video model names them (``detector.*``, ``tracker.*``): wrappers only are removed.
    """
    model = state_dict.get("model")
    if isinstance(model, Mapping) and all(isinstance(k, str) for k in model):
        state_dict = model
    out: dict[str, torch.Tensor] = {}
    for key, value in state_dict.items():
        while key.startswith(WRAPPERS):
            key = key.split(".", 1)[1]
        out[key] = value  # type: ignore[assignment]
    if video:
        return out
    if any(key.startswith(DETECTOR) for key in out):
        dropped = sum(not key.startswith(DETECTOR) for key in out)
        if dropped:
            log.info(
                "released layout: keeping the %s* keys, dropping %d others (the tracker)", DETECTOR, dropped
            )
        out = {key[len(DETECTOR) :]: value for key, value in out.items() if key.startswith(DETECTOR)}
    return out


def load_weights(
    model: nn.Module, state_dict: Mapping[str, object], source: str, *, video: bool = False
) -> None:
    """Load ``state_dict`` (any layout above) into ``model``, or raise DataError naming ``source``.

    Every key must match, in name and shape. The model must hold real tensors
    (a meta-device model has no buffers to keep). An image model takes the detector
    of a video checkpoint: the vision neck's convolutions that feed only the tracker
    (``sam2_convs``) are left out when the model has none. ``video``: the model is
    the video model (components.model.video) and the keys keep its layout.
    """
    current = model.state_dict()
    if any(t.is_meta for t in current.values()):
        raise ConfigError("cannot load weights into a model on the meta device: build it on 'cpu'")
    weights = fit_weights(state_dict, current, source, video=video)
    model.load_state_dict(weights, strict=False)
    log.info("loaded %d tensors from %s", len(weights), source)


def fit_weights(
    state_dict: Mapping[str, object],
    expected: Mapping[str, torch.Tensor],
    source: str,
    *,
    video: bool = False,
    model_name: str = "this model",
) -> dict[str, torch.Tensor]:
    """The tensors of ``state_dict`` (any layout above) that ``load_weights`` would load into a model whose
    state dict is ``expected`` (meta tensors will do: only keys and shapes are read), keyed as the model
    names them; DataError ("``source`` does not fit ``model_name``: ...", the missing, unexpected and
    mismatched keys) unless every key fits. Recomputed buffers are left out; ``ADDED_LATER`` parameters
    a checkpoint lacks are the model's own."""
    weights = {k: v for k, v in normalize_state_dict(state_dict, video).items() if not k.endswith(RECOMPUTED)}
    if not any(TRACKER_NECK in k for k in expected):
        weights = {k: v for k, v in weights.items() if TRACKER_NECK not in k}
    expected = {k: v for k, v in expected.items() if not k.endswith(RECOMPUTED)}
    for key in ADDED_LATER.keys() & expected.keys() - weights.keys():
        log.info("%s has no %s (%s): it keeps its starting value", source, key, ADDED_LATER[key])
        weights[key] = expected[key]
    _check_fit(weights, expected, f"{source} does not fit {model_name}")
    return weights


def is_alignment_checkpoint(state_dict: Mapping[str, object]) -> bool:
    """Whether the weights are stage 0's: the detector's backbone beside an alignment head."""
    return any(key.startswith(ALIGN_HEAD) for key in normalize_state_dict(state_dict, video=True))


def load_backbone(model: nn.Module, state_dict: Mapping[str, object], source: str) -> None:
    """Stage 0's backbone (``backbone.*``) into an image model: every backbone key of the model must be
    there with its shape; the rest of the model keeps its fresh weights, and the log says how much that is.
    """
    weights = {
        k: v
        for k, v in normalize_state_dict(state_dict, video=True).items()
        if k.startswith(BACKBONE) and not k.endswith(RECOMPUTED)
    }
    current = {k: v for k, v in model.state_dict().items() if not k.endswith(RECOMPUTED)}
    wanted = {k: v for k, v in current.items() if k.startswith(BACKBONE) and TRACKER_NECK not in k}
    _check_fit(weights, wanted, f"{source} does not fit this model's backbone")
    model.load_state_dict(weights, strict=False)
    fresh = len(current) - len(wanted)
    log.info(
        "%s: the backbone (%d tensors, %.2fM values) from stage 0; %d tensors start fresh "
        "(encoder, decoder, heads, geometry encoder)",
        source,
        len(wanted),
        sum(v.numel() for v in wanted.values()) / 1e6,
        fresh,
    )


def _check_fit(weights: Mapping[str, object], expected: Mapping[str, torch.Tensor], what: str) -> None:
    """DataError(``what``: ...) unless ``weights`` has exactly the ``expected`` keys, with their shapes."""
    missing = sorted(set(expected) - set(weights))
    unexpected = sorted(set(weights) - set(expected))
    problems = []
    if missing:
        problems.append(f"{len(missing)} missing keys ({_first(missing)})")
    if unexpected:
        problems.append(f"{len(unexpected)} unexpected keys ({_first(unexpected)})")
    mismatched = []
    for key in sorted(set(expected) & set(weights)):
        value = weights[key]
        if not (isinstance(value, torch.Tensor) and value.shape == expected[key].shape):
            mismatched.append(f"{key}: checkpoint {_describe(value)} vs model {tuple(expected[key].shape)}")
    if mismatched:
        problems.append(f"{len(mismatched)} shape mismatches ({_first(mismatched)})")
    if problems:
        raise DataError(f"{what}: " + "; ".join(problems))


def _describe(value: object) -> str:
    return str(tuple(value.shape)) if isinstance(value, torch.Tensor) else f"a {type(value).__name__}"


def _first(keys: list[str]) -> str:
    shown = ", ".join(keys[:SHOWN])
    return shown + (f", ... {len(keys) - SHOWN} more" if len(keys) > SHOWN else "")
