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
    ImageNet categories). The class score is the largest of its outputs.
    """

    def __init__(self, model: nn.Module, input_size: int, mean: tuple[float, ...], std: tuple[float, ...],
                 class_groups: dict[int, list[int]], target_layer: str, multilabel: bool, device: torch.device) -> None:
        self.model = model.to(device).eval()
        self.input_size = input_size
        self.mean = torch.tensor(mean, device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=device).view(1, 3, 1, 1)
        self.class_groups = class_groups
        self.target_layer = target_layer
        self.multilabel = multilabel
        self.device = device

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
    def predict(self, images: list[np.ndarray]) -> list[dict[int, float]]:
        """Per image, each data-set class's probability."""
        probs = self.probabilities(self.model(self.preprocess(images))).cpu()
        return [{c: float(p[idx].max()) for c, idx in self.class_groups.items()} for p in probs]

    def target(self, cls: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """The scalar Grad-CAM back-propagates for class ``cls`` (its largest logit)."""
        idx = self.class_groups[cls]

        def score(output: torch.Tensor) -> torch.Tensor:
            return output[..., idx].max(dim=-1).values

        return score
