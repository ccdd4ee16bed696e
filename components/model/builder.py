"""Build the SAM 3 image model from Meta's module classes at a size chosen by config.

``build_model("full")`` gives the released architecture (same state-dict keys
and shapes as ``sam3.model_builder.build_sam3_image_model``); ``tiny`` and
``small`` are the same graph, narrower and shallower. The result is the official
``Sam3Image``: a DETR-style detector with a presence token, a mask head and a
geometry (box exemplar) encoder; its Hungarian matcher is attached so that it
can train.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Literal

import torch
from torch import nn

from components.errors import ConfigError
from components.model.compat import ensure_compat, no_recompute
from components.model.config import ModelConfig
from components.model.decoder_init import grid_reference_boxes, local_box_attention

log = logging.getLogger(__name__)

BPE_FILE = "bpe_simple_vocab_16e6.txt.gz"
BPE_ENV = "SAM3_BPE_PATH"
# where installed packages keep the CLIP BPE vocabulary (the sam3 wheel lacks the file its builder names)
_BPE_LOCATIONS = (("open_clip", "."), ("clip", "."), ("sam3", "../assets"))


def bpe_vocab_path() -> Path:
    """The CLIP BPE vocabulary: ``$SAM3_BPE_PATH``, else the copy inside an installed package.

    Packages are located without importing them (open_clip's import is heavy).
    """
    if env := os.environ.get(BPE_ENV):
        path = Path(env)
        if not path.is_file():
            raise ConfigError(f"{BPE_ENV}={env}: no such file")
        return path
    for package, relative in _BPE_LOCATIONS:
        spec = importlib.util.find_spec(package)
        for folder in (spec.submodule_search_locations or []) if spec else []:
            candidate = (Path(folder) / relative / BPE_FILE).resolve()
            if candidate.is_file():
                return candidate
    raise ConfigError(
        f"the text tokenizer needs {BPE_FILE}, which the sam3 wheel lacks: install open-clip-torch "
        f"(it ships the identical file) or set {BPE_ENV}"
    )


class _NoTokenizer:
    """Stands in for the tokenizer of a meta-device model, which holds no weights and cannot run."""

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        raise RuntimeError("a model built on the meta device cannot tokenize: build it on a real device")


@contextlib.contextmanager
def _parameters_on_meta() -> Iterator[None]:
    """Every parameter and buffer is moved to the meta device as soon as it is registered.

    Unlike ``with torch.device("meta")``, the constructors' own arithmetic (e.g. the
    ViT's ``torch.linspace(...).item()``) still runs on real tensors, but no weight
    memory is kept and initialisers run on meta tensors, for free.
    """
    register_parameter, register_buffer = nn.Module.register_parameter, nn.Module.register_buffer

    def to_meta_parameter(self: nn.Module, name: str, param: nn.Parameter | None) -> None:
        if param is not None and param.device.type != "meta":
            param = nn.Parameter(param.to("meta"), requires_grad=param.requires_grad)
        register_parameter(self, name, param)

    def to_meta_buffer(
        self: nn.Module, name: str, tensor: torch.Tensor | None, persistent: bool = True
    ) -> None:
        register_buffer(self, name, None if tensor is None else tensor.to("meta"), persistent)

    nn.Module.register_parameter = to_meta_parameter  # type: ignore[method-assign]
    nn.Module.register_buffer = to_meta_buffer  # type: ignore[method-assign]
    try:
        yield
    finally:
        nn.Module.register_parameter = register_parameter  # type: ignore[method-assign]
        nn.Module.register_buffer = register_buffer  # type: ignore[method-assign]


def build_model(
    size_or_config: str | ModelConfig, device: Literal["cpu", "meta"] = "cpu", *, tracker_neck: bool = False
) -> nn.Module:
    """The official ``Sam3Image`` at the given size, freshly initialised, in training mode.

    ``device="meta"`` allocates no weights: for checking keys and shapes, and for
    counting parameters. Move a CPU-built model to a GPU with ``.to("cuda")``.
    ``tracker_neck``: the vision neck also feeds the video tracker (the released
    video model's ``sam2_convs``: a second set of FPN convolutions over the same trunk).
    """
    ensure_compat()
    cfg = ModelConfig.preset(size_or_config) if isinstance(size_or_config, str) else size_or_config
    if device not in ("cpu", "meta"):
        raise ConfigError(f"build_model device must be 'cpu' or 'meta', not {device!r}")
    if device == "meta":
        with _parameters_on_meta():
            model = _build(cfg, _NoTokenizer(), tracker_neck)
    else:
        from sam3.model.tokenizer_ve import SimpleTokenizer

        model = _build(cfg, SimpleTokenizer(bpe_path=str(bpe_vocab_path())), tracker_neck)
    log.info(
        "built SAM 3 image model: resolution %d, d_model %d, %.2fM parameters on %s",
        cfg.resolution,
        cfg.d_model,
        sum(p.numel() for p in model.parameters()) / 1e6,
        device,
    )
    return model


def build_backbone(cfg: ModelConfig) -> nn.Module:
    """The detector's backbone alone (vision trunk and neck, text encoder), as ``build_model`` builds it:
    the same modules under the same keys, for the alignment stage (components.model.align)."""
    ensure_compat()
    from sam3.model.tokenizer_ve import SimpleTokenizer

    return _backbone(cfg, SimpleTokenizer(bpe_path=str(bpe_vocab_path())))


def _backbone(
    cfg: ModelConfig, tokenizer: Callable[..., torch.Tensor], tracker_neck: bool = False
) -> nn.Module:
    from sam3.model.vl_combiner import SAM3VLBackbone

    return SAM3VLBackbone(visual=_vision(cfg, tracker_neck), text=_text(cfg, tokenizer), scalp=1)


def _attention(cfg: ModelConfig, *, dropout: float | None = None, batch_first: bool = False) -> nn.Module:
    from sam3.model.model_misc import MultiheadAttentionWrapper

    return MultiheadAttentionWrapper(
        embed_dim=cfg.d_model,
        num_heads=cfg.heads,
        dropout=cfg.dropout if dropout is None else dropout,
        batch_first=batch_first,
    )


def _build(cfg: ModelConfig, tokenizer: Callable[..., torch.Tensor], tracker_neck: bool = False) -> nn.Module:
    from sam3.model.model_misc import MLP, DotProductScoring, TransformerWrapper
    from sam3.model.sam3_image import Sam3Image
    from sam3.train.matcher import BinaryHungarianMatcherV2

    backbone = _backbone(cfg, tokenizer, tracker_neck)
    transformer = TransformerWrapper(encoder=_encoder(cfg), decoder=_decoder(cfg), d_model=cfg.d_model)
    # after the wrapper, whose constructor re-initialises every matrix but the query tables
    if cfg.query_grid:
        grid_reference_boxes(transformer.decoder)
    if cfg.decoder_locality > 0:
        local_box_attention(transformer.decoder, cfg.decoder_locality)
    if not cfg.activation_checkpointing:
        no_recompute(transformer)
    prompt_mlp = MLP(
        input_dim=cfg.d_model,
        hidden_dim=cfg.dim_feedforward,
        output_dim=cfg.d_model,
        num_layers=2,
        dropout=cfg.dropout,
        residual=True,
        out_norm=nn.LayerNorm(cfg.d_model),
    )
    return Sam3Image(
        backbone=backbone,
        transformer=transformer,
        input_geometry_encoder=_geometry_encoder(cfg),
        segmentation_head=_segmentation_head(cfg),
        num_feature_levels=1,
        o2m_mask_predict=True,
        dot_prod_scoring=DotProductScoring(d_model=cfg.d_model, d_proj=cfg.d_model, prompt_mlp=prompt_mlp),
        use_instance_query=False,
        multimask_output=True,
        inst_interactive_predictor=None,
        use_act_checkpoint_seg_head=cfg.activation_checkpointing,
        # the released training recipe's matcher; Sam3Image matches inside forward() in training
        matcher=BinaryHungarianMatcherV2(
            focal=True, cost_class=2.0, cost_bbox=5.0, cost_giou=2.0, alpha=0.25, gamma=2, stable=False
        ),
    )


def _vision(cfg: ModelConfig, tracker_neck: bool = False) -> nn.Module:
    from sam3.model.necks import Sam3DualViTDetNeck
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.model.vitdet import ViT

    v = cfg.vision
    trunk = ViT(
        img_size=cfg.resolution,
        pretrain_img_size=v.pretrain_size,
        patch_size=v.patch_size,
        embed_dim=v.width,
        depth=v.depth,
        num_heads=v.heads,
        mlp_ratio=v.mlp_ratio,
        norm_layer="LayerNorm",
        drop_path_rate=v.drop_path,
        qkv_bias=True,
        use_abs_pos=True,
        tile_abs_pos=True,
        global_att_blocks=v.global_blocks,
        rel_pos_blocks=(),
        use_rope=True,
        use_interp_rope=True,
        window_size=v.window_size,
        pretrain_use_cls_token=True,
        retain_cls_token=False,
        ln_pre=True,
        ln_post=False,
        return_interm_layers=False,
        bias_patch_embed=False,
        use_act_checkpoint=cfg.activation_checkpointing,
    )
    position_encoding = PositionEmbeddingSine(
        num_pos_feats=cfg.d_model, normalize=True, temperature=10000, precompute_resolution=cfg.resolution
    )
    return Sam3DualViTDetNeck(
        trunk=trunk,
        position_encoding=position_encoding,
        d_model=cfg.d_model,
        scale_factors=[4.0, 2.0, 1.0, 0.5],
        add_sam2_neck=tracker_neck,
    )


def _text(cfg: ModelConfig, tokenizer: Callable[..., torch.Tensor]) -> nn.Module:
    from sam3.model.text_encoder_ve import VETextEncoder

    return VETextEncoder(
        tokenizer=tokenizer,
        d_model=cfg.d_model,
        width=cfg.text.width,
        heads=cfg.text.heads,
        layers=cfg.text.depth,
        context_length=cfg.text.context_length,
        use_act_checkpoint=cfg.activation_checkpointing,
    )


def _encoder(cfg: ModelConfig) -> nn.Module:
    from sam3.model.encoder import TransformerEncoderFusion, TransformerEncoderLayer

    layer = TransformerEncoderLayer(
        activation="relu",
        d_model=cfg.d_model,
        dim_feedforward=cfg.dim_feedforward,
        dropout=cfg.dropout,
        pos_enc_at_attn=True,
        pos_enc_at_cross_attn_keys=False,
        pos_enc_at_cross_attn_queries=False,
        pre_norm=True,
        self_attention=_attention(cfg, batch_first=True),
        cross_attention=_attention(cfg, batch_first=True),
    )
    return TransformerEncoderFusion(
        layer=layer,
        num_layers=cfg.encoder_layers,
        d_model=cfg.d_model,
        num_feature_levels=1,
        frozen=False,
        use_act_checkpoint=True,  # asserted in training; off per module in _build where the preset says
        add_pooled_text_to_img_feat=False,
        pool_text_with_mask=True,
    )


def _decoder(cfg: ModelConfig) -> nn.Module:
    from sam3.model.decoder import TransformerDecoder, TransformerDecoderLayer

    layer = TransformerDecoderLayer(
        activation="relu",
        d_model=cfg.d_model,
        dim_feedforward=cfg.dim_feedforward,
        dropout=cfg.dropout,
        cross_attention=_attention(cfg),
        n_heads=cfg.heads,
        use_text_cross_attention=True,
    )
    return TransformerDecoder(
        layer=layer,
        num_layers=cfg.decoder_layers,
        num_queries=cfg.num_queries,
        return_intermediate=True,
        box_refine=True,
        num_o2m_queries=0,
        dac=True,
        boxRPB="log",
        d_model=cfg.d_model,
        frozen=False,
        interaction_layer=None,
        dac_use_selfatt_ln=True,
        resolution=cfg.resolution,
        stride=cfg.vision.patch_size,
        use_act_checkpoint=True,  # asserted in training; off per module in _build where the preset says
        presence_token=True,
    )


def _segmentation_head(cfg: ModelConfig) -> nn.Module:
    from sam3.model.maskformer_segmentation import PixelDecoder

    pixel_decoder = PixelDecoder(
        num_upsampling_stages=3, interpolation_mode="nearest", hidden_dim=cfg.d_model
    )
    return _mask_head_class()(
        levels=cfg.mask_levels,
        hidden_dim=cfg.d_model,
        upsampling_stages=3,
        aux_masks=False,
        presence_head=False,
        dot_product_scorer=None,
        act_ckpt=cfg.activation_checkpointing,
        cross_attend_prompt=_attention(cfg, dropout=0.0),
        pixel_decoder=pixel_decoder,
    )


def _geometry_encoder(cfg: ModelConfig) -> nn.Module:
    from sam3.model.encoder import TransformerEncoderLayer
    from sam3.model.geometry_encoders import SequenceGeometryEncoder
    from sam3.model.position_encoding import PositionEmbeddingSine

    layer = TransformerEncoderLayer(
        activation="relu",
        d_model=cfg.d_model,
        dim_feedforward=cfg.dim_feedforward,
        dropout=cfg.dropout,
        pos_enc_at_attn=False,
        pre_norm=True,
        self_attention=_attention(cfg),
        pos_enc_at_cross_attn_queries=False,
        pos_enc_at_cross_attn_keys=True,
        cross_attention=_attention(cfg),
    )
    return SequenceGeometryEncoder(
        pos_enc=PositionEmbeddingSine(num_pos_feats=cfg.d_model, normalize=True, temperature=10000),
        encode_boxes_as_points=False,
        points_direct_project=True,
        points_pool=True,
        points_pos_enc=True,
        boxes_direct_project=True,
        boxes_pool=True,
        boxes_pos_enc=True,
        d_model=cfg.d_model,
        num_layers=cfg.geometry_layers,
        layer=layer,
        use_act_ckpt=cfg.activation_checkpointing,
        add_cls=True,
        add_post_encode_proj=True,
    )


@functools.cache
def _mask_head_class() -> type[nn.Module]:
    """``MaskHead``: Meta's ``UniversalSegmentationHead`` reading only the coarsest ``levels`` of the neck's
    feature maps (all of them when ``levels`` is None: the released head, unchanged).

    Its pixel decoder runs once per (image, phrase) pair, at the finest level it reads: at 112 px with 7-px
    patches the released head's finest map is 64x64, and its convolutions were half of a detector step's
    time on a CPU; at 32x32 they are a fifth of that (docs/results.md). Same modules, same state-dict keys:
    the pixel decoder's convolutions for the levels left out stay in the state dict, unused (as the
    released head already leaves its third unused).
    """
    from sam3.model.maskformer_segmentation import UniversalSegmentationHead

    class MaskHead(UniversalSegmentationHead):
        def __init__(self, *args: Any, levels: int | None, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.levels = levels

        # the parent's parameters by name: Meta's activation-checkpoint wrapper maps keyword arguments
        # onto this signature
        def forward(
            self,
            backbone_feats: list[torch.Tensor],
            obj_queries: torch.Tensor,
            image_ids: torch.Tensor,
            encoder_hidden_states: torch.Tensor | None = None,
            prompt: torch.Tensor | None = None,
            prompt_mask: torch.Tensor | None = None,
            **kwargs: Any,
        ) -> Any:
            if self.levels is not None:
                backbone_feats = backbone_feats[-self.levels :]
            return super().forward(
                backbone_feats,
                obj_queries,
                image_ids,
                encoder_hidden_states=encoder_hidden_states,
                prompt=prompt,
                prompt_mask=prompt_mask,
                **kwargs,
            )

    return MaskHead
