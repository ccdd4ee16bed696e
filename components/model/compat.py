"""Make Meta's ``sam3`` package run on machines without CUDA (and without Triton).

The package assumes a GPU in a few places. ``ensure_compat()`` applies one small
patch for each, once, and must run before anything from ``sam3`` is constructed
(the builder calls it). Each patch leaves the official code path untouched
where CUDA (and Triton) work:

- ``PositionEmbeddingSine`` precomputes its cache with ``device="cuda"``, and the
  decoder's box-RPB coordinate cache is built with ``device="cuda"``: without
  CUDA they go to the default device instead (normally the CPU).
- ``SequenceGeometryEncoder._encode_boxes`` calls ``pin_memory()``, which needs
  CUDA: without CUDA pinning is skipped.
- The tracker's memory read (``Sam3TrackerBase._prepare_memory_conditioned_features``)
  moves past memories with ``.cuda()`` and pins its temporal positions: without
  CUDA both are no-ops there.
- The focal loss calls a Triton kernel: for tensors not on CUDA it takes the
  package's own plain-PyTorch branch (``triton=False``).
- The tracker's point sampler calls a Triton distance transform: for tensors
  not on CUDA an exact CPU transform (SciPy) stands in.
- Where Triton is not installed at all, the two Triton modules are replaced by
  stand-ins so the package imports; their CPU paths are the ones above.
- The text encoder's ``positional_embedding`` and ``text_projection`` are
  allocated with ``torch.empty`` and never initialised, so an untrained model
  outputs NaN: they get open_clip's initialisation. (Every device; a loaded
  checkpoint overwrites them.)
- ``Sam3LossWrapper``'s default ``"global"`` normalisation all-reduces, which
  needs a process group: without one it normalises locally, which is the same
  number for a single process.
- The transformer encoder and decoder assert that activation checkpointing is
  on in training and always recompute their layers in backward. Modules marked
  by ``no_recompute()`` (the builder marks them where the preset turns
  checkpointing off) run without it: the same values and gradients, one forward
  pass less. Unmarked modules, as every ``full`` model's, are untouched.
"""

from __future__ import annotations

import functools
import importlib.util
import inspect
import logging
import sys
import types
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.overrides import TorchFunctionMode

log = logging.getLogger(__name__)

_MARK = "__sam3_pipeline_compat__"
_NO_RECOMPUTE = "_sam3_pipeline_no_recompute"
_applied = False


def ensure_compat() -> None:
    """Apply every patch (idempotent; safe to call from any entry point)."""
    global _applied
    if _applied:
        return
    _install_triton_standins()
    _patch_position_encoding()
    _patch_decoder_coords()
    _patch_pin_memory()
    _patch_tracker_memory()
    _patch_focal_loss()
    _patch_edt()
    _patch_text_init()
    _patch_loss_normalisation()
    _patch_recompute()
    _applied = True
    log.debug("sam3 compatibility patches applied (cuda=%s)", torch.cuda.is_available())


def _patch(owner: Any, name: str, make: Callable[[Any], Any]) -> None:
    """Replace ``owner.name`` by ``make(original)`` unless already patched."""
    original = inspect.getattr_static(owner, name)
    is_static = isinstance(original, staticmethod)
    function = original.__func__ if is_static else original
    if getattr(function, _MARK, False):
        return
    wrapper = make(function)
    setattr(wrapper, _MARK, True)
    setattr(owner, name, staticmethod(wrapper) if is_static else wrapper)


class _CudaFactoriesToDefaultDevice(TorchFunctionMode):
    """Drops ``device="cuda"`` from tensor factory calls, so they allocate on the default device."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = dict(kwargs or {})
        device = kwargs.get("device")
        if device is not None and torch.device(device).type == "cuda":
            del kwargs["device"]
        return func(*args, **kwargs)


class _NoPinMemory(TorchFunctionMode):
    """Makes ``Tensor.pin_memory()`` return the tensor itself."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.Tensor.pin_memory:
            return args[0]
        return func(*args, **(kwargs or {}))


def _patch_position_encoding() -> None:
    from sam3.model.position_encoding import PositionEmbeddingSine

    def make(init: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            if torch.cuda.is_available():
                return init(self, *args, **kwargs)
            with _CudaFactoriesToDefaultDevice():
                return init(self, *args, **kwargs)

        return __init__

    _patch(PositionEmbeddingSine, "__init__", make)


def _patch_decoder_coords() -> None:
    from sam3.model.decoder import TransformerDecoder

    def make(get_coords: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(get_coords)
        def _get_coords(H: int, W: int, device: Any) -> Any:
            if torch.device(device).type == "cuda" and not torch.cuda.is_available():
                device = torch.get_default_device()
            return get_coords(H, W, device)

        return _get_coords

    _patch(TransformerDecoder, "_get_coords", make)


def _patch_pin_memory() -> None:
    from sam3.model.geometry_encoders import SequenceGeometryEncoder

    def make(encode_boxes: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(encode_boxes)
        def _encode_boxes(self: Any, *args: Any, **kwargs: Any) -> Any:
            if torch.cuda.is_available():
                return encode_boxes(self, *args, **kwargs)
            with _NoPinMemory():
                return encode_boxes(self, *args, **kwargs)

        return _encode_boxes

    _patch(SequenceGeometryEncoder, "_encode_boxes", make)


class _TensorsStayPut(TorchFunctionMode):
    """Makes ``Tensor.cuda()`` and ``Tensor.pin_memory()`` return the tensor itself."""

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func in (torch.Tensor.cuda, torch.Tensor.pin_memory):
            return args[0]
        return func(*args, **(kwargs or {}))


def _patch_tracker_memory() -> None:
    from sam3.model.sam3_tracker_base import Sam3TrackerBase

    def make(prepare: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(prepare)
        def _prepare_memory_conditioned_features(self: Any, *args: Any, **kwargs: Any) -> Any:
            if torch.cuda.is_available():
                return prepare(self, *args, **kwargs)
            with _TensorsStayPut():
                return prepare(self, *args, **kwargs)

        return _prepare_memory_conditioned_features

    _patch(Sam3TrackerBase, "_prepare_memory_conditioned_features", make)


def _patch_focal_loss() -> None:
    from sam3.train.loss import loss_fns

    def make(focal: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        signature = inspect.signature(focal)

        @functools.wraps(focal)
        def sigmoid_focal_loss(*args: Any, **kwargs: Any) -> torch.Tensor:
            bound = signature.bind(*args, **kwargs)
            if not bound.arguments["inputs"].is_cuda:
                bound.arguments["triton"] = False
            return focal(*bound.args, **bound.kwargs)

        return sigmoid_focal_loss

    _patch(loss_fns, "sigmoid_focal_loss", make)


NO_ZERO_DISTANCE = 1e9
"""What the Triton kernel gives where an image has no zero pixel (the square root of its 1e18 "infinity")."""


def edt_cpu(data: torch.Tensor) -> torch.Tensor:
    """Exact Euclidean distance transform of a (B, H, W) boolean batch: distance to the nearest zero pixel."""
    from scipy.ndimage import distance_transform_edt

    masks = data.detach().to("cpu", torch.bool).numpy()
    out = np.stack(
        [distance_transform_edt(m) if not m.all() else np.full(m.shape, NO_ZERO_DISTANCE) for m in masks]
    )
    return torch.from_numpy(out.astype(np.float32)).to(data.device)


def _patch_edt() -> None:
    from sam3.model import edt, sam3_tracker_utils

    def make(edt_triton: Callable[[torch.Tensor], torch.Tensor]) -> Callable[[torch.Tensor], torch.Tensor]:
        @functools.wraps(edt_triton)
        def edt_any_device(data: torch.Tensor) -> torch.Tensor:
            return edt_triton(data) if data.is_cuda else edt_cpu(data)

        return edt_any_device

    _patch(edt, "edt_triton", make)
    _patch(sam3_tracker_utils, "edt_triton", make)


def _install_triton_standins() -> None:
    """Without Triton, register modules that stand in for sam3's two Triton kernel modules."""
    if importlib.util.find_spec("triton") is not None:
        return

    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("this sam3 kernel needs Triton, which is not installed")

    focal = types.ModuleType("sam3.train.loss.sigmoid_focal_loss")
    focal.triton_sigmoid_focal_loss = unavailable  # type: ignore[attr-defined]
    focal.triton_sigmoid_focal_loss_reduce = unavailable  # type: ignore[attr-defined]
    edt = types.ModuleType("sam3.model.edt")
    edt.edt_triton = edt_cpu  # type: ignore[attr-defined]
    for module in (focal, edt):
        sys.modules.setdefault(module.__name__, module)
    log.info("triton is not installed: sam3's Triton kernels are replaced by PyTorch/SciPy code")


def _patch_text_init() -> None:
    from sam3.model.text_encoder_ve import TextTransformer

    def make(init: Callable[..., None]) -> Callable[..., None]:
        @functools.wraps(init)
        def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
            init(self, *args, **kwargs)
            torch.nn.init.normal_(self.positional_embedding, std=0.01)
            if isinstance(self.text_projection, torch.nn.Parameter):
                torch.nn.init.normal_(self.text_projection, std=self.width**-0.5)

        return __init__

    _patch(TextTransformer, "__init__", make)


def _patch_loss_normalisation() -> None:
    from sam3.train.loss.sam3_loss import Sam3LossWrapper

    def make(get_num_boxes: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(get_num_boxes)
        def _get_num_boxes(self: Any, targets: Any) -> Any:
            distributed = torch.distributed.is_available() and torch.distributed.is_initialized()
            if self.normalization != "global" or distributed:
                return get_num_boxes(self, targets)
            self.normalization = "local"
            try:
                return get_num_boxes(self, targets)
            finally:
                self.normalization = "global"

        return _get_num_boxes

    _patch(Sam3LossWrapper, "_get_num_boxes", make)


def no_recompute(module: torch.nn.Module) -> None:
    """Run ``module`` and everything in it without activation checkpointing, where the official code would
    force it (the transformer encoder's and decoder's layers and box-RPB MLPs)."""
    for sub in module.modules():
        setattr(sub, _NO_RECOMPUTE, True)


def _patch_recompute() -> None:
    from sam3.model import decoder, encoder

    def make(wrapper_factory: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(wrapper_factory)
        def activation_ckpt_wrapper(module: Any) -> Callable[..., Any]:
            wrapped = wrapper_factory(module)
            if not getattr(module, _NO_RECOMPUTE, False):
                return wrapped

            def call(*args: Any, act_ckpt_enable: bool = True, **kwargs: Any) -> Any:
                return wrapped(*args, act_ckpt_enable=False, **kwargs)

            return call

        return activation_ckpt_wrapper

    for owner in (encoder, decoder):
        _patch(owner, "activation_ckpt_wrapper", make)
