"""Segmentation models for stage two, chosen by ``model.name``."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Protocol

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from wsss.models.backbones import BUNDLED_LITE0, create_backbone
from wsss.registry import Registry

TRAIN_MODELS = Registry("model")


class SegmentationModel(Protocol):
    """What the trainer and inference read from a stage-two model, declared rather than probed.

    A builder registered in ``TRAIN_MODELS`` (``builder(params, num_classes)``) returns an ``nn.Module``
    with these attributes; :func:`checked_model` refuses one that lacks them.
    """

    computes_loss: bool  # True: the trainer calls model(x, labels) for the loss (set prediction)
    outputs_probabilities: bool  # True: forward gives scores in [0, 1] (no softmax before averaging)
    encoder: nn.Module  # the pretrained part, trained at train.backbone_lr_mult

    def __call__(self, x: torch.Tensor) -> torch.Tensor: ...  # (B, C, H, W) class scores


CAPABILITIES = ("computes_loss", "outputs_probabilities", "encoder")


def checked_model(model: nn.Module, name: str) -> SegmentationModel:
    """``model`` after checking it declares every :class:`SegmentationModel` attribute."""
    missing = [a for a in CAPABILITIES if not hasattr(model, a)]
    if missing:
        raise TypeError(f"model '{name}' does not declare {missing}: set them on the module "
                        "(see wsss.train.models.SegmentationModel)")
    return model  # type: ignore[return-value]


@dataclasses.dataclass
class DeepLabV3PlusParams:
    encoder: str = "tu-tf_efficientnet_lite0"  # any smp encoder, 'tu-<name>' for timm ones
    # null, 'bundled:efficientnet-lite0', a local .pth of encoder (or timm backbone) weights,
    # or an smp weights name such as 'imagenet' (downloads; online users only)
    encoder_weights: str | None = BUNDLED_LITE0
    encoder_output_stride: int = 16
    decoder_channels: int = 256

    @property
    def pretrained_weights(self) -> str | None:
        """What the encoder starts from (it decides the input normalisation)."""
        return self.encoder_weights


def _load_encoder_weights(model: smp.DeepLabV3Plus, p: DeepLabV3PlusParams) -> None:
    """Copy a timm backbone's tensors into smp's encoder by name (``model.`` prefix for tu- encoders)."""
    if p.encoder_weights == BUNDLED_LITE0:
        if p.encoder != "tu-tf_efficientnet_lite0":
            raise ValueError(f"model.deeplabv3plus.encoder_weights '{BUNDLED_LITE0}' needs encoder "
                             "'tu-tf_efficientnet_lite0'")
        source = create_backbone("tf_efficientnet_lite0", 1000, BUNDLED_LITE0).state_dict()
    else:
        path = Path(p.encoder_weights)
        source = torch.load(path, map_location="cpu", weights_only=True)
        source = source.get("state_dict", source)
    target = model.encoder.state_dict()
    prefix = "model." if p.encoder.startswith("tu-") else ""
    matched = {k: source[k[len(prefix):]] for k in target
               if k[len(prefix):] in source and source[k[len(prefix):]].shape == target[k].shape}
    if len(matched) < 0.9 * len(target):
        raise ValueError(f"encoder weights {p.encoder_weights}: only {len(matched)}/{len(target)} tensors match "
                         f"encoder '{p.encoder}'")
    model.encoder.load_state_dict(matched, strict=False)


@TRAIN_MODELS.register("deeplabv3plus", params=DeepLabV3PlusParams)
def deeplabv3plus(p: DeepLabV3PlusParams, num_classes: int) -> nn.Module:
    local = p.encoder_weights is not None and (p.encoder_weights == BUNDLED_LITE0
                                               or Path(p.encoder_weights).suffix == ".pth")
    if local and p.encoder_weights != BUNDLED_LITE0 and not Path(p.encoder_weights).is_file():
        raise FileNotFoundError(f"model.deeplabv3plus.encoder_weights: {p.encoder_weights} not found")
    model = smp.DeepLabV3Plus(encoder_name=p.encoder, encoder_weights=None if local else p.encoder_weights,
                              classes=num_classes, encoder_output_stride=p.encoder_output_stride,
                              decoder_channels=p.decoder_channels)
    if local:
        _load_encoder_weights(model, p)
    model.computes_loss = False  # a pixel loss on its logits (smp models have .encoder already)
    model.outputs_probabilities = False
    return model


# ----------------------------------------------------------------------------- Mask2Former
# Backbone presets (transformers configs); ``backbone_overrides`` changes any key, e.g. tiny test models.
BACKBONE_PRESETS: dict[str, tuple[str, dict]] = {
    "swin-tiny": ("swin", {"embed_dim": 96, "depths": [2, 2, 6, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}),
    "swin-small": ("swin", {"embed_dim": 96, "depths": [2, 2, 18, 2], "num_heads": [3, 6, 12, 24], "window_size": 7}),
    "swin-base": ("swin", {"embed_dim": 128, "depths": [2, 2, 18, 2], "num_heads": [4, 8, 16, 32], "window_size": 12}),
    "swin-large": ("swin", {"embed_dim": 192, "depths": [2, 2, 18, 2], "num_heads": [6, 12, 24, 48],
                            "window_size": 12}),
    "resnet-50": ("resnet", {"embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 6, 3],
                             "layer_type": "bottleneck"}),
    "resnet-101": ("resnet", {"embedding_size": 64, "hidden_sizes": [256, 512, 1024, 2048], "depths": [3, 4, 23, 3],
                              "layer_type": "bottleneck"}),
}


@dataclasses.dataclass
class Mask2FormerParams:
    backbone: str = "swin-large"  # a key of BACKBONE_PRESETS
    backbone_overrides: dict[str, Any] = dataclasses.field(default_factory=dict)
    # null or a local .pth of backbone weights (transformers Swin/ResNet backbone names; timm-style
    # 'backbone.'/'model.' prefixes are stripped); loaded by name where shapes match
    backbone_weights: str | None = None
    num_queries: int = 100
    hidden_dim: int = 256
    encoder_layers: int = 6  # pixel decoder (deformable attention) layers
    decoder_layers: int = 10  # transformer decoder layers (9 + the query init, as in the paper)
    num_attention_heads: int = 8
    dim_feedforward: int = 2048
    train_num_points: int = 12544  # points sampled per mask for the mask/dice losses
    class_weight: float = 2.0
    mask_weight: float = 5.0
    dice_weight: float = 5.0
    no_object_weight: float = 0.1

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONE_PRESETS:
            raise ValueError(f"model.mask2former.backbone: unknown '{self.backbone}'; "
                             f"choose one of {', '.join(BACKBONE_PRESETS)}")

    @property
    def pretrained_weights(self) -> str | None:
        """What the backbone starts from (it decides the input normalisation)."""
        return self.backbone_weights


def semantic_scores(class_logits: torch.Tensor, mask_logits: torch.Tensor) -> torch.Tensor:
    """Per-class scores (B, C, h, w) from query class probabilities x query mask probabilities."""
    probs = class_logits.softmax(-1)[..., :-1]  # drop the no-object class
    return torch.einsum("bqc,bqhw->bchw", probs, mask_logits.sigmoid())


def semantic_targets(labels: torch.Tensor, num_classes: int) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """A label map batch (B, H, W; 255 = ignore) as per-image binary masks + class ids for the matcher."""
    masks, classes = [], []
    for y in labels:
        present = [c for c in torch.unique(y).tolist() if c < num_classes]
        classes.append(torch.tensor(present, dtype=torch.long, device=y.device))
        masks.append(torch.stack([(y == c) for c in present]).float() if present
                     else torch.zeros((0, *y.shape), device=y.device))
    return masks, classes


class Mask2FormerSegmenter(nn.Module):
    """transformers' Mask2Former as a semantic segmenter.

    ``forward(x)`` gives per-class scores at the input size (argmax = semantic label map);
    ``forward(x, labels)`` gives the set-prediction loss (Hungarian matching, class + mask + dice),
    so DDP wraps one ``forward`` for both. Pixels labelled 255 form no mask and are ignored.
    """

    computes_loss = True  # the trainer calls model(x, y) instead of a pixel loss on model(x)
    outputs_probabilities = True  # scores are already in [0, 1]: no softmax before averaging

    def __init__(self, p: Mask2FormerParams, num_classes: int) -> None:
        super().__init__()
        from transformers import Mask2FormerConfig, Mask2FormerForUniversalSegmentation, ResNetConfig, SwinConfig

        kind, preset = BACKBONE_PRESETS[p.backbone]
        stages = ["stage1", "stage2", "stage3", "stage4"]
        backbone_cfg = (SwinConfig if kind == "swin" else ResNetConfig)(
            **(preset | {"out_features": stages} | dict(p.backbone_overrides)))
        cfg = Mask2FormerConfig(
            backbone_config=backbone_cfg, num_labels=num_classes, num_queries=p.num_queries, hidden_dim=p.hidden_dim,
            mask_feature_size=p.hidden_dim, feature_size=p.hidden_dim, encoder_layers=p.encoder_layers,
            decoder_layers=p.decoder_layers, num_attention_heads=p.num_attention_heads,
            dim_feedforward=p.dim_feedforward, encoder_feedforward_dim=p.dim_feedforward,
            train_num_points=p.train_num_points, class_weight=p.class_weight, mask_weight=p.mask_weight,
            dice_weight=p.dice_weight, no_object_weight=p.no_object_weight)
        self.num_classes = num_classes
        self.net = Mask2FormerForUniversalSegmentation(cfg)

    @property
    def encoder(self) -> nn.Module:
        """The backbone (gets ``train.backbone_lr_mult``)."""
        return self.net.model.pixel_level_module.encoder

    def forward(self, x: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        if labels is not None:
            masks, classes = semantic_targets(labels, self.num_classes)
            return self.net(pixel_values=x, mask_labels=masks, class_labels=classes).loss
        out = self.net(pixel_values=x)
        scores = semantic_scores(out.class_queries_logits.float(), out.masks_queries_logits.float())
        return F.interpolate(scores, size=x.shape[-2:], mode="bilinear", align_corners=False)


def _load_backbone_weights(module: nn.Module, path: str, key: str) -> None:
    """Copy tensors by name (common prefixes stripped) where shapes match; fail if most do not."""
    if not Path(path).is_file():
        raise FileNotFoundError(f"{key}: {path} not found (a local .pth state dict of the backbone)")
    source = torch.load(path, map_location="cpu", weights_only=True)
    source = source.get("state_dict", source.get("model", source))
    stripped = {}
    for k, v in source.items():
        for prefix in ("module.", "backbone.", "model.", "encoder."):
            k = k[len(prefix):] if k.startswith(prefix) else k
        stripped[k] = v
    target = module.state_dict()
    matched = {k: stripped[k] for k in target if k in stripped and stripped[k].shape == target[k].shape}
    if len(matched) < 0.9 * len(target):
        raise ValueError(f"{key}: only {len(matched)}/{len(target)} backbone tensors of {path} match by name and shape")
    module.load_state_dict(matched, strict=False)


@TRAIN_MODELS.register("mask2former", params=Mask2FormerParams)
def mask2former(p: Mask2FormerParams, num_classes: int) -> nn.Module:
    model = Mask2FormerSegmenter(p, num_classes)
    if p.backbone_weights:
        _load_backbone_weights(model.encoder, p.backbone_weights, "model.mask2former.backbone_weights")
    return model
