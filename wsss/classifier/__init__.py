"""Classifiers that give image labels and CAMs, chosen by ``classifier.name``.

- ``timm``: a timm backbone trained here on image-level labels (``tools/train_classifier.py``).
- ``imagenet_lite0``: the bundled ImageNet EfficientNet-Lite0 for real photos; data-set classes
  map to ImageNet categories through ``class_map``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Literal

import torch

from wsss.classifier.model import Classifier
from wsss.classifier.train import default_checkpoint, load_checkpoint, train_classifier
from wsss.models.backbones import BUNDLED_LITE0, LITE0_MEAN_STD, create_backbone, find_target_layer, normalisation
from wsss.record import Resources
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
    split: str | None = None  # default: data.split (the images stage one labels)
    epochs: int = 6
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 1e-4


@dataclasses.dataclass
class ImagenetLite0Params:
    # data-set class name -> ImageNet category names (torchvision's names) that stand for it; classes
    # not listed map by name, synonyms and the WordNet hierarchy ("cat" -> every cat category)
    class_map: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    input_size: int = 224
    # a class of this name stands for any object: the image's `object_top_k` most probable ImageNet
    # categories, whatever they are (for objects ImageNet has no name for: a polyp, a part, a product)
    object_class: str = "object"
    object_top_k: int = 3
    # a class word that matches no ImageNet category: `error` (with suggestions) or `object` (it is
    # localised like the object class, e.g. COCO's giraffe, fork and toothbrush)
    unmapped: Literal["error", "object"] = "error"


@CLASSIFIERS.register("timm", params=TimmClassifierParams)
def _timm(p: TimmClassifierParams, class_names: list[str], work_dir: str | Path, device: torch.device) -> Classifier:
    path = Path(p.checkpoint) if p.checkpoint else default_checkpoint(work_dir)
    if not path.is_file():
        raise FileNotFoundError(f"classifier checkpoint {path} not found: train it first with "
                                f"`python tools/train_classifier.py CONFIG` or set classifier.timm.checkpoint")
    state = load_checkpoint(path, ("class_names", "backbone", "num_outputs", "state_dict"))  # names a corrupt file
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
    groups, objects = imagenet_class_groups(class_names, p.class_map, p.object_class, p.unmapped)
    model = create_backbone("tf_efficientnet_lite0", 1000, None)
    from wsss.models.backbones import load_lite0_imagenet

    load_lite0_imagenet(model, skip_head=False)
    # Grad-CAM on conv_head, before bn2's ReLU6: the clipped activations of bn2 flatten the map (coco_dev
    # dev half, GrabCut-CAM route: fg-IoU 0.392 on conv_head, 0.354 on bn2)
    return Classifier(model, p.input_size, *LITE0_MEAN_STD, groups, "conv_head", multilabel=False, device=device,
                      object_classes=objects, object_top_k=p.object_top_k)


def imagenet_class_groups(class_names: list[str], class_map: dict[str, list[str]], object_class: str = "object",
                          unmapped: str = "error") -> tuple[dict[int, list[int]], tuple[int, ...]]:
    """(data-set class index -> the ImageNet outputs standing for it, the object classes).

    An object class (``object_class``, or with ``unmapped='object'`` a word that maps to nothing) stands
    for all 1000 outputs; its CAM and probability come from the image's top-k (``Classifier.object_classes``).
    """
    from wsss.classifier.imagenet_names import map_class_words

    groups: dict[int, list[int]] = {}
    objects: list[int] = []
    for c, name in enumerate(class_names[1:], start=1):
        if name == object_class and name not in class_map:
            objects.append(c)
            continue
        try:
            groups[c] = map_class_words([name], overrides=class_map)[name]
        except ValueError as e:
            if unmapped != "object" or name in class_map:
                raise ValueError(f"classifier.imagenet_lite0: {e}") from None
            objects.append(c)
    groups |= {c: list(range(1000)) for c in objects}
    return dict(sorted(groups.items())), tuple(objects)


def build_classifier(cfg: Any, class_names: list[str], work_dir: str | Path, device: torch.device) -> Classifier:
    return CLASSIFIERS.build(cfg.classifier, class_names=class_names, work_dir=work_dir, device=device)


def get_classifier(resources: Resources) -> Classifier:
    """The process's one classifier (``cfg.classifier``), built on first use and shared by every stage."""
    return resources.get("classifier", lambda: build_classifier(resources.cfg, resources.class_names,
                                                                resources.work_dir, resources.device))


__all__ = ["CLASSIFIERS", "Classifier", "build_classifier", "get_classifier", "imagenet_categories", "train_classifier"]
