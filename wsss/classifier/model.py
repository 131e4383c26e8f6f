"""The classifier used for image labels and CAMs: a model plus what to feed it and what it means."""
from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import torch
from torch import nn


class Classifier:
    """A loaded classification network in eval mode.

    ``class_groups[c]`` lists the network outputs that stand for data-set class ``c`` (a trained
    multi-label head has one output per class; an ImageNet model maps a class to several
    ImageNet categories). A class's probability is the sum of its outputs' softmax probabilities
    (P(cat) = P(tabby) + P(Persian) + ...), or the largest sigmoid for a multi-label head.

    ``object_classes`` stand for *any* object: their evidence is the image's ``object_top_k`` most
    probable outputs, whatever they are (for objects with no name among the outputs: a polyp, a part).
    """

    def __init__(self, model: nn.Module, input_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 class_groups: dict[int, list[int]], target_layer: str, multilabel: bool, device: torch.device,
                 object_classes: tuple[int, ...] = (), object_top_k: int = 3) -> None:
        self.model = model.to(device).eval()
        self.input_size = input_size
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.class_groups = class_groups
        self.target_layer = target_layer
        self.multilabel = multilabel
        self.device = device
        self.object_classes = tuple(object_classes)
        self.object_top_k = object_top_k

    def preprocess(self, images: list[np.ndarray], size: int | None = None) -> torch.Tensor:
        """RGB uint8 images -> normalised NCHW tensor at ``size`` (default: the training size)."""
        size = size or self.input_size
        batch = np.stack([cv2.resize(im, (size, size), interpolation=cv2.INTER_AREA if im.shape[0] > size else cv2.INTER_LINEAR)
                          for im in images])
        x = torch.from_numpy(batch).to(self.device).permute(0, 3, 1, 2).float() / 255.0
        return (x - self.mean) / self.std

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(logits) if self.multilabel else torch.softmax(logits, dim=1)

    @torch.no_grad()
    def output_probabilities(self, images: list[np.ndarray], size: int | None = None) -> torch.Tensor:
        """``(N, outputs)`` probabilities of the network's own outputs (input ``size``: default the training size)."""
        return self.probabilities(self.model(self.preprocess(images, size))).cpu()

    def class_probability(self, probs: torch.Tensor | np.ndarray, cls: int) -> float:
        """Data-set class ``cls``'s probability from one image's output probabilities."""
        probs = torch.as_tensor(probs)
        if cls in self.object_classes:  # the mass of the top-k outputs, whatever they are
            return float(probs.topk(min(self.object_top_k, probs.numel())).values.sum())
        idx = self.class_groups[cls]
        return float(probs[idx].max() if self.multilabel else probs[idx].sum().clamp(max=1.0))

    @torch.no_grad()
    def predict(self, images: list[np.ndarray]) -> list[dict[int, float]]:
        """Per image, each data-set class's probability."""
        probs = self.output_probabilities(images)
        return [{c: self.class_probability(p, c) for c in self.class_groups} for p in probs]

    def target(self, cls: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The scalar Grad-CAM back-propagates for class ``cls`` (its largest logit)."""
        return output_target(self.class_groups[cls])

    def cam_targets(self, cls: int, probs: torch.Tensor | None = None) -> list[Callable[[torch.Tensor], torch.Tensor]]:
        """What Grad-CAM back-propagates for ``cls``; several targets are fused by the CAM stage (max).

        An object class gets one target per top-k output of this image (``probs``: its output
        probabilities): the objects of a scene are often of several categories, and each CAM marks
        its own.
        """
        if cls in self.object_classes and probs is not None:
            top = torch.as_tensor(probs).topk(min(self.object_top_k, len(probs))).indices.tolist()
            return [output_target([i]) for i in top]
        return [self.target(cls)]


def output_target(idx: list[int]) -> Callable[[torch.Tensor], torch.Tensor]:
    """The largest logit among outputs ``idx``: a scalar target for Grad-CAM."""

    def score(output: torch.Tensor) -> torch.Tensor:
        return output[..., idx].max(dim=-1).values

    return score


def cached_output_probabilities(classifier: Classifier, image: np.ndarray, cache: dict, size: int | None = None) -> torch.Tensor:
    """``classifier``'s output probabilities for ``image`` at ``size``, kept in ``cache`` (a record's): the
    labels stage and the CAM stage of an object class need the same forward pass."""
    key = ("output_probs", size or classifier.input_size)
    if key not in cache:
        cache[key] = classifier.output_probabilities([image], size)[0]
    return cache[key]
