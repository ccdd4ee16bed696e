"""The SAM 3 video model: the image detector and a SAM 2-style tracker on one vision encoder.

Layout as released (``sam3.model_builder.build_sam3_video_model``): ``detector.*``
is the image model (``Sam3Image``, its vision neck with the second set of FPN
convolutions that feed the tracker) and ``tracker.*`` the official
``Sam3TrackerBase`` modules (memory encoder, memory attention, SAM prompt encoder
and mask decoder with IoU and object-score heads), sized by ``ModelConfig.tracker``.
The tracker reads the detector's backbone features; it has no backbone of its own.

The release has no way to train the tracker (its ``forward`` raises and
``forward_tracking`` reads attributes that are never set), so this module owns
the per-frame loop: ``track`` runs one group of objects from their prompt frame
to the end of a clip, frame by frame, through the official building blocks
(``_prepare_memory_conditioned_features``, ``_forward_sam_heads``,
``_use_mask_as_output``, ``_encode_new_memory``), keeping what the loss needs
(every candidate mask, the IoU predictions and the object-score logits).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch import nn

from components.model.compat import ensure_compat
from components.model.config import ModelConfig
from components.model.tracker_io import ClipBatch, FrameOutput, Prompt

log = logging.getLogger(__name__)

TRACKER = "tracker."


@dataclass
class Features:
    """A clip's backbone features for the tracker: per level (HW, T, C), positions alike, level sizes."""

    feats: list[torch.Tensor]
    pos: list[torch.Tensor]
    sizes: list[tuple[int, int]]

    def frame(self, t: int, batch: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return (
            [x[:, t : t + 1].expand(-1, batch, -1) for x in self.feats],
            [x[:, t : t + 1].expand(-1, batch, -1) for x in self.pos],
        )


def _tracker_class() -> type:
    ensure_compat()
    from sam3.model.sam3_tracker_base import Sam3TrackerBase
    from sam3.sam.mask_decoder import MLP, MaskDecoder
    from sam3.sam.prompt_encoder import PromptEncoder
    from sam3.sam.transformer import TwoWayTransformer

    class Tracker(Sam3TrackerBase):
        """``Sam3TrackerBase`` with its SAM heads sized by config (the release hard-codes the full size)."""

        def __init__(self, *, decoder_mlp: int, decoder_heads: int, iou_head: int, **kwargs: Any) -> None:
            object.__setattr__(self, "_head_sizes", (decoder_mlp, decoder_heads, iou_head))
            super().__init__(**kwargs)
            # read by the official code in training mode, never set by it
            self.teacher_force_obj_scores_for_mem = False
            self.prob_to_dropout_spatial_mem = 0.0
            self.rng = np.random.default_rng(0)

        def _build_sam_heads(self) -> None:
            mlp, heads, iou = self._head_sizes
            dim = self.hidden_dim
            self.sam_prompt_embed_dim = dim
            self.sam_image_embedding_size = self.image_size // self.backbone_stride
            side = self.sam_image_embedding_size
            self.sam_prompt_encoder = PromptEncoder(
                embed_dim=dim,
                image_embedding_size=(side, side),
                input_image_size=(self.image_size, self.image_size),
                mask_in_chans=16,
            )
            self.sam_mask_decoder = MaskDecoder(
                num_multimask_outputs=3,
                transformer=TwoWayTransformer(depth=2, embedding_dim=dim, mlp_dim=mlp, num_heads=heads),
                transformer_dim=dim,
                iou_head_depth=3,
                iou_head_hidden_dim=iou,
                use_high_res_features=True,
                iou_prediction_use_sigmoid=True,
                pred_obj_scores=True,
                pred_obj_scores_mlp=True,
                use_multimask_token_for_obj_ptr=True,
                **(self.sam_mask_decoder_extra_args or {}),
            )
            self.obj_ptr_proj = MLP(dim, dim, dim, 3)
            self.obj_ptr_tpos_proj = nn.Linear(dim, self.mem_dim)

    return Tracker


def build_tracker(cfg: ModelConfig) -> nn.Module:
    """The official tracker modules at ``cfg``'s size (``full``: as ``sam3.model_builder.build_tracker``)."""
    ensure_compat()
    from sam3.model.decoder import TransformerDecoderLayerv2, TransformerEncoderCrossAttention
    from sam3.model.memory import CXBlock, SimpleFuser, SimpleMaskDownSampler, SimpleMaskEncoder
    from sam3.model.model_misc import TransformerWrapper
    from sam3.model.position_encoding import PositionEmbeddingSine
    from sam3.sam.transformer import RoPEAttention

    t, d = cfg.tracker, cfg.d_model
    side = cfg.feature_size
    dropout = 0.1 if cfg.dropout > 0 else 0.0
    memory_encoder = SimpleMaskEncoder(
        out_dim=t.memory_dim,
        in_dim=d,
        position_encoding=PositionEmbeddingSine(
            num_pos_feats=t.memory_dim,
            normalize=True,
            temperature=10000,
            precompute_resolution=cfg.resolution,
        ),
        mask_downsampler=SimpleMaskDownSampler(
            embed_dim=d, kernel_size=3, stride=2, padding=1, interpol_size=[side * 16, side * 16]
        ),
        fuser=SimpleFuser(
            layer=CXBlock(dim=d, kernel_size=7, padding=3, layer_scale_init_value=1e-6, use_dwconv=True),
            num_layers=2,
        ),
    )

    def rope(**extra: Any) -> nn.Module:
        return RoPEAttention(
            embedding_dim=d,
            num_heads=1,
            downsample_rate=1,
            dropout=dropout,
            rope_theta=10000.0,
            feat_sizes=[side, side],
            use_fa3=False,
            use_rope_real=False,
            **extra,
        )

    layer = TransformerDecoderLayerv2(
        cross_attention_first=False,
        activation="relu",
        dim_feedforward=t.memory_feedforward,
        dropout=dropout,
        pos_enc_at_attn=False,
        pre_norm=True,
        self_attention=rope(),
        d_model=d,
        pos_enc_at_cross_attn_keys=True,
        pos_enc_at_cross_attn_queries=False,
        cross_attention=rope(kv_in_dim=t.memory_dim, rope_k_repeat=True),
    )
    memory_attention = TransformerWrapper(
        encoder=TransformerEncoderCrossAttention(
            remove_cross_attention_layers=[],
            batch_first=True,
            d_model=d,
            frozen=False,
            pos_enc_at_input=True,
            layer=layer,
            num_layers=t.memory_layers,
            use_act_checkpoint=False,
        ),
        decoder=None,
        d_model=d,
    )
    tracker = _tracker_class()(
        decoder_mlp=t.decoder_mlp,
        decoder_heads=t.decoder_heads,
        iou_head=t.iou_head,
        backbone=None,
        transformer=memory_attention,
        maskmem_backbone=memory_encoder,
        num_maskmem=t.memory_frames,
        image_size=cfg.resolution,
        backbone_stride=cfg.vision.patch_size,
        max_cond_frames_in_attn=4,
        multimask_output_in_sam=True,
        multimask_min_pt_num=0,
        multimask_max_pt_num=1,
        multimask_output_for_tracking=t.multimask_tracking,
        forward_backbone_per_frame_for_eval=True,
        max_obj_ptrs_in_encoder=t.max_object_pointers,
        # at inference an unstable single mask is swapped for the best multimask candidate: only where
        # the candidates are trained (multimask_tracking), else it would pick untrained outputs
        sam_mask_decoder_extra_args={
            "dynamic_multimask_via_stability": t.multimask_tracking,
            "dynamic_multimask_stability_delta": 0.05,
            "dynamic_multimask_stability_thresh": 0.98,
        },
    )
    if t.memory_locality > 0:
        local_memory_attention(tracker, t.memory_locality)
    return tracker


def local_memory_attention(tracker: Any, score: float, pairs: int = 4) -> None:
    """Start the memory cross-attention local: each pixel reads the memories at and around its position.

    Rotary encoding turns query and key by their positions, so when both carry the same constant vector
    (here: their projection biases) the score of a memory token depends only on its offset from the
    pixel, as the sum of cos(frequency x offset) over the rotary pairs the vector uses. On the ``pairs``
    highest frequencies of each axis, that peaks at offset 0 (at ``score``) and falls off within a few
    cells. Default-initialised, the attention averages all memories, which hides where the prompted
    object was; a tracker trained from there tends to ignore its memory and segment every object it
    sees. Starting local, a pixel reads whether its object was the prompted one a frame before, and
    training sharpens or widens that. Released weights overwrite it (only the initial values change).
    """
    for layer in tracker.transformer.encoder.layers:
        attention = layer.cross_attn_image
        head = attention.internal_dim // attention.num_heads
        per_axis = head // 4  # complex (rotary) pairs per axis: x first, then y
        used = min(pairs, per_axis)
        # q.k / sqrt(head) at offset 0: 2 * used * value^2 / sqrt(head)
        value = (score * head**0.5 / (2 * used)) ** 0.5
        bias = torch.zeros(attention.num_heads, head // 2, 2)
        bias[:, :used, 0] = value
        bias[:, per_axis : per_axis + used, 0] = value
        with torch.no_grad():
            attention.q_proj.bias.copy_(bias.flatten())
            attention.k_proj.bias.copy_(bias.flatten())


class Sam3VideoModel(nn.Module):
    """``detector`` (Sam3Image) + ``tracker`` on the detector's vision encoder.

    ``forward`` dispatches on its input so that one DDP wrapper serves both kinds
    of batch: an image batch (``BatchedDatapoint``) goes to the detector, a
    ``ClipBatch`` (components.model.clips) to the tracker.
    """

    detector: Any  # sam3's Sam3Image (untyped)
    tracker: Any  # the Sam3TrackerBase subclass above

    def __init__(self, detector: nn.Module, tracker: nn.Module) -> None:
        super().__init__()
        self.detector = detector
        self.tracker = tracker

    def forward(self, batch: Any) -> Any:
        if isinstance(batch, ClipBatch):
            return [self.track_clip(clip) for clip in batch.clips]
        return self.detector(batch)

    def back_convert(self, target: Any) -> Any:
        return self.detector.back_convert(target)

    # -- tracking -------------------------------------------------------------------
    def features(self, frames: torch.Tensor) -> Features:
        """Backbone features of (T, 3, R, R) frames, as the tracker reads them (its own FPN convolutions)."""
        out = self.detector.backbone.forward_image(frames)["sam2_backbone_out"]
        if out is None:
            raise RuntimeError("the detector was built without the tracker's neck (tracker_neck=False)")
        fpn = list(out["backbone_fpn"])
        decoder = self.tracker.sam_mask_decoder
        fpn[0], fpn[1] = decoder.conv_s0(fpn[0]), decoder.conv_s1(fpn[1])
        _, feats, pos, sizes = self.tracker._prepare_backbone_features(
            {**out, "backbone_fpn": fpn, "vision_pos_enc": list(out["vision_pos_enc"])}
        )
        return Features(feats, pos, sizes)

    def track(self, features: Features, start: int, prompt: Prompt) -> list[FrameOutput]:
        """Track B objects prompted on frame ``start`` through the following frames."""
        tracker = self.tracker
        batch = (prompt.masks if prompt.masks is not None else prompt.points).shape[0]  # type: ignore[union-attr]
        total = features.feats[-1].shape[1]
        memory: dict[str, dict[int, Any]] = {"cond_frame_outputs": {}, "non_cond_frame_outputs": {}}
        outputs = []
        for t in range(start, total):
            feats, pos = features.frame(t, batch)
            first = t == start
            point_inputs = prompt.point_inputs() if first else None
            high_res = [
                x.permute(1, 2, 0).reshape(batch, x.size(2), *size)
                for x, size in zip(feats[:-1], features.sizes[:-1], strict=True)
            ]
            if first and prompt.masks is not None:
                pix = feats[-1].permute(1, 2, 0).reshape(batch, tracker.hidden_dim, *features.sizes[-1])
                heads = tracker._use_mask_as_output(pix, high_res, prompt.masks)
            else:
                pix = tracker._prepare_memory_conditioned_features(
                    frame_idx=t,
                    is_init_cond_frame=first,
                    current_vision_feats=feats[-1:],
                    current_vision_pos_embeds=pos[-1:],
                    feat_sizes=features.sizes[-1:],
                    output_dict=memory,
                    num_frames=total,
                )
                heads = tracker._forward_sam_heads(
                    backbone_features=pix,
                    point_inputs=point_inputs,
                    high_res_features=high_res,
                    multimask_output=tracker._use_multimask(first, point_inputs),
                )
            _, multimasks, ious, low_res, masks, pointer, object_logits = heads
            memory_features, memory_pos = tracker._encode_new_memory(
                image=None,
                current_vision_feats=feats,
                feat_sizes=features.sizes,
                pred_masks_high_res=masks,
                object_score_logits=object_logits,
                is_mask_from_pts=point_inputs is not None,
            )
            memory["cond_frame_outputs" if first else "non_cond_frame_outputs"][t] = {
                "pred_masks": low_res,
                "obj_ptr": pointer,
                "maskmem_features": memory_features,
                "maskmem_pos_enc": memory_pos,
            }
            outputs.append(
                FrameOutput(
                    frame=t,
                    masks=masks,
                    multimasks=multimasks,
                    ious=ious,
                    object_logits=object_logits,
                    from_prompt=first and prompt.masks is not None,
                )
            )
        return outputs

    def track_clip(self, clip: Any) -> list[list[FrameOutput]]:
        """Every prompt group of a training clip (components.model.clips.Clip), tracked to the clip's end."""
        features = self.features(clip.frames)
        return [self.track(features, group.start, group.prompt) for group in clip.groups]


def build_video_model(
    size_or_config: str | ModelConfig, device: Literal["cpu", "meta"] = "cpu"
) -> Sam3VideoModel:
    """The video model at a size: the image model (with the tracker's neck) and the tracker.

    ``device="meta"`` allocates no weights, as ``build_model``'s: for checking keys and shapes.
    """
    from components.model.builder import _parameters_on_meta, build_model

    cfg = ModelConfig.preset(size_or_config) if isinstance(size_or_config, str) else size_or_config
    detector = build_model(cfg, device, tracker_neck=True)
    if device == "meta":
        with _parameters_on_meta():
            tracker = build_tracker(cfg)
    else:
        tracker = build_tracker(cfg)
    log.info("built the tracker: %.2fM parameters", sum(p.numel() for p in tracker.parameters()) / 1e6)
    return Sam3VideoModel(detector, tracker)


def load_video_weights(model: Sam3VideoModel, state_dict: Mapping[str, object], source: str) -> None:
    """A video checkpoint (``detector.*`` and ``tracker.*``: every key must match), or an image checkpoint
    into the detector alone: the tracker keeps its fresh weights and the tracker's neck starts as a copy
    of the detector's neck, as the official constructor makes it."""
    from components.model.checkpoint import load_weights, normalize_state_dict

    weights = normalize_state_dict(state_dict, video=True)
    if any(key.startswith(TRACKER) for key in weights):
        load_weights(model, weights, source, video=True)
        return
    image = normalize_state_dict(weights)
    neck, copy = "backbone.vision_backbone.convs.", "backbone.vision_backbone.sam2_convs."
    if not any(key.startswith(copy) for key in image):
        image.update({copy + key[len(neck) :]: value for key, value in image.items() if key.startswith(neck)})
    load_weights(model.detector, image, source)
    log.info("%s is an image checkpoint: the tracker starts fresh", source)


def load_model_weights(model: nn.Module, state_dict: Mapping[str, object], source: str) -> None:
    """Weights into the image model (``load_weights``; from a stage-0 checkpoint only the backbone,
    ``load_backbone``), the video model (``load_video_weights``) or the stage-0 model itself."""
    from components.model.align import AlignmentModel
    from components.model.checkpoint import is_alignment_checkpoint, load_backbone, load_weights

    if isinstance(model, Sam3VideoModel):
        load_video_weights(model, state_dict, source)
    elif is_alignment_checkpoint(state_dict) and not isinstance(model, AlignmentModel):
        load_backbone(model, state_dict, source)
    else:
        load_weights(model, state_dict, source)
