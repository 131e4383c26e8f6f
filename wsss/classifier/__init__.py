"""Classifiers that give image labels and CAMs, chosen by ``classifier.name``.

- ``timm``: a timm backbone trained here on image-level labels (``tools/train_classifier.py``).
- ``imagenet_lite0``: the bundled ImageNet EfficientNet-Lite0 for real photos; data-set classes
  map to ImageNet categories through ``class_map``.
"""
from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

import torch

from wsss.classifier.backbones import BUNDLED_LITE0, LITE0_MEAN_STD, create_backbone, find_target_layer, normalisation
from wsss.classifier.model import Classifier
from wsss.classifier.train import default_checkpoint, train_classifier
from wsss.registry import Registry

CLASSIFIERS = Registry("classifier")


@dataclasses.dataclass
class TimmClassifierParams:
    backbone: str = "tf_efficientnet_lite0"
    pretrained: str | None = BUNDLED_LITE0  # null, 'bundled:efficientnet-lite0' or a local .pth
    checkpoint: str | None = None  # default: <work_dir>/classifier/classifier.pth
    input_size: int = 128
    output_stride: int = 16  # 16 doubles CAM resolution over 32 at little cost
    multilabel: bool = True
    split: str = "train"
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclasses.dataclass
class ImagenetLite0Params:
    # data-set class name -> ImageNet category names (torchvision's names) that stand for it
    class_map: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    input_size: int = 224


@CLASSIFIERS.register("timm", params=TimmClassifierParams)
def _timm(p: TimmClassifierParams, class_names: list[str], work_dir: str | Path, device: torch.device) -> Classifier:
    path = Path(p.checkpoint) if p.checkpoint else default_checkpoint(work_dir)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint {path} not found: train it first with "
                                f"`python tools/train_classifier.py CONFIG` or set classifier.timm.checkpoint")
    state = torch.load(path, map_location="cpu", weights_only=True)
    if state["class_names"] != class_names:
        raise ValueError(f"{path} was trained for classes {state['class_names']}, the data set has {class_names}")
    model = create_backbone(state["backbone"], state["num_outputs"], None, state["output_stride"], state["input_size"])
    model.load_state_dict(state["state_dict"])
    mean, std = normalisation(p.pretrained)
    groups = {c: [c - 1] for c in range(1, len(class_names))}
    layer = find_target_layer(model, state["input_size"])
    return Classifier(model, state["input_size"], mean, std, groups, layer, state["multilabel"], device)


def imagenet_categories() -> list[str]:
    """The 1000 ImageNet class names, offline (torchvision's weight metadata)."""
    from torchvision.models import ResNet18_Weights

    return list(ResNet18_Weights.IMAGENET1K_V1.meta["categories"])


@CLASSIFIERS.register("imagenet_lite0", params=ImagenetLite0Params)
def _imagenet_lite0(p: ImagenetLite0Params, class_names: list[str], work_dir: str | Path, device: torch.device) -> Classifier:
    categories = imagenet_categories()
    index = {n: i for i, n in enumerate(categories)}
    groups = {}
    for c, name in enumerate(class_names[1:], start=1):
        wanted = p.class_map.get(name, [name])
        unknown = [w for w in wanted if w not in index]
        if unknown:
            close = difflib.get_close_matches(unknown[0], categories, n=3)
            raise ValueError(f"classifier.imagenet_lite0.class_map['{name}']: '{unknown[0]}' is not an ImageNet "
                             f"category (close: {close}); map each class to ImageNet names")
        groups[c] = [index[w] for w in wanted]
    model = create_backbone("tf_efficientnet_lite0", 1000, None)
    from wsss.classifier.backbones import load_lite0_imagenet

    load_lite0_imagenet(model, skip_head=False)
    return Classifier(model, p.input_size, *LITE0_MEAN_STD, groups, "bn2", multilabel=False, device=device)


def build_classifier(cfg: Any, class_names: list[str], work_dir: str | Path, device: torch.device) -> Classifier:
    return CLASSIFIERS.build(cfg.classifier, class_names=class_names, work_dir=work_dir, device=device)


__all__ = ["CLASSIFIERS", "Classifier", "build_classifier", "imagenet_categories", "train_classifier"]
