"""The data-stage interface: a split of samples, each an RGB image with optional mask and labels."""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np


@dataclasses.dataclass
class Sample:
    """One image. Class index 0 is background; foreground classes are 1..K; 255 = ignore."""

    id: str
    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray | None = None  # HxW uint8 ground truth (evaluation only)
    labels: list[int] | None = None  # image-level foreground classes


class SegDataset(Protocol):
    """What every data reader provides. ``load`` may raise ``ValueError`` naming a bad file."""

    class_names: list[str]  # index 0 = "background"
    ids: list[str]

    def load(self, image_id: str) -> Sample: ...

    def labels(self, image_id: str) -> list[int] | None:
        """Image-level labels without decoding the image (cheap; used by classifier training)."""
        ...

    def mask_path(self, image_id: str) -> str | None: ...


def labels_from_mask(mask: np.ndarray, num_classes: int) -> list[int]:
    """The usual WSSS convention: an image's labels are the foreground classes in its mask."""
    present = np.unique(mask)
    return [int(c) for c in present if 0 < c < num_classes]
