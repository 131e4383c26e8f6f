"""The data-stage interface: a split of samples, each an RGB image with optional mask and labels."""
from __future__ import annotations

import dataclasses
from typing import Protocol

import numpy as np

from wsss.utils.io import read_label_png

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")  # what the folder readers list


@dataclasses.dataclass
class Box:
    """A box in image pixels (x1, y1 exclusive) for one class."""

    cls: int
    x0: int
    y0: int
    x1: int
    y1: int
    score: float = 1.0

    def as_list(self) -> list[float]:
        return [self.x0, self.y0, self.x1, self.y1]

    def with_margin(self, margin: float, h: int, w: int) -> tuple[int, int, int, int]:
        """The box grown by ``margin`` of its size (+2 px) on each side, clipped to an HxW image: a crop
        with context, for the refiners that work on a box's surroundings (GrabCut, rCAM_Box)."""
        mx, my = int(margin * (self.x1 - self.x0)) + 2, int(margin * (self.y1 - self.y0)) + 2
        return max(self.x0 - mx, 0), max(self.y0 - my, 0), min(self.x1 + mx, w), min(self.y1 + my, h)


@dataclasses.dataclass
class Sample:
    """One image. Class index 0 is background; foreground classes are 1..K; 255 = ignore."""

    id: str
    image: np.ndarray  # HxWx3 uint8 RGB
    mask: np.ndarray | None = None  # HxW uint8 ground truth (evaluation only)
    labels: list[int] | None = None  # image-level foreground classes
    boxes: list[Box] | None = None  # boxes given by the data set (Kvasir bboxes, VOC XML); the "given" box source


class SegDataset(Protocol):
    """What every data reader provides. ``load`` may raise ``ValueError`` naming a bad file."""

    class_names: list[str]  # index 0 = "background"
    ids: list[str]

    def load(self, image_id: str) -> Sample: ...

    def labels(self, image_id: str) -> list[int] | None:
        """Image-level labels without decoding the image (cheap; used by classifier training)."""
        ...

    def mask_path(self, image_id: str) -> str | None: ...

    # Optional: ``gt(image_id) -> HxW uint8 | None`` for readers whose ground truth is not a class-index
    # PNG (COCO json, Kvasir JPEG masks); evaluation prefers it over ``mask_path`` (see read_gt).
    # Optional: ``image_path(image_id) -> str``, the image file (the COCO export names it).


def read_gt(dataset: SegDataset, image_id: str) -> np.ndarray | None:
    """An image's checked ground-truth class-index map: ``dataset.gt`` when the reader has one, else its mask PNG.

    Scoring reads masks here, not through ``load``: so the values get the readers' check here too (only
    class indices or 255), and a bad mask is a ValueError naming its file rather than a confusion-matrix
    error naming nothing.
    """
    reader_gt = getattr(dataset, "gt", None)
    path = None
    if callable(reader_gt):
        gt = reader_gt(image_id)
    else:
        path = dataset.mask_path(image_id)
        if path is None:
            return None
        gt = read_label_png(path)
    if gt is None:
        return None
    k = len(dataset.class_names)
    bad = np.setdiff1d(np.unique(gt), np.r_[np.arange(k), 255])
    if bad.size:
        where = path or dataset.mask_path(image_id) or f"ground truth of image '{image_id}'"
        raise ValueError(f"{where}: values {bad.tolist()[:10]} are not class indices (0..{k - 1}) or 255")
    return gt


def labels_from_mask(mask: np.ndarray, num_classes: int) -> list[int]:
    """The usual WSSS convention: an image's labels are the foreground classes in its mask."""
    present = np.unique(mask)
    return [int(c) for c in present if 0 < c < num_classes]
