"""Segmentation models for stage two, chosen by ``model.name``."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import segmentation_models_pytorch as smp
import torch
from torch import nn

from wsss.classifier.backbones import BUNDLED_LITE0, create_backbone
from wsss.registry import Registry

TRAIN_MODELS = Registry("model")


@dataclasses.dataclass
class DeepLabV3PlusParams:
    encoder: str = "tu-tf_efficientnet_lite0"  # any smp encoder, 'tu-<name>' for timm ones
    # null, 'bundled:efficientnet-lite0', a local .pth of encoder (or timm backbone) weights,
    # or an smp weights name such as 'imagenet' (downloads; online users only)
    encoder_weights: str | None = BUNDLED_LITE0
    encoder_output_stride: int = 16
    decoder_channels: int = 256


def _load_encoder_weights(model: smp.DeepLabV3Plus, p: DeepLabV3PlusParams) -> None:
    """Copy a timm backbone's tensors into smp's encoder by name (``model.`` prefix for tu- encoders)."""
    if p.encoder_weights == BUNDLED_LITE0:
        if p.encoder != "tu-tf_efficientnet_lite0":
            raise ValueError(f"model.deeplabv3plus.encoder_weights '{BUNDLED_LITE0}' needs encoder 'tu-tf_efficientnet_lite0'")
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
    local = p.encoder_weights is not None and (p.encoder_weights == BUNDLED_LITE0 or Path(p.encoder_weights).suffix == ".pth")
    if local and p.encoder_weights != BUNDLED_LITE0 and not Path(p.encoder_weights).is_file():
        raise FileNotFoundError(f"model.deeplabv3plus.encoder_weights: {p.encoder_weights} not found")
    model = smp.DeepLabV3Plus(encoder_name=p.encoder, encoder_weights=None if local else p.encoder_weights,
                              classes=num_classes, encoder_output_stride=p.encoder_output_stride,
                              decoder_channels=p.decoder_channels)
    if local:
        _load_encoder_weights(model, p)
    return model
