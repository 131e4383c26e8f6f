"""Kvasir-SEG (polyps) and Kvasir-Instrument (GI tools): one foreground class, binary masks, given boxes.

Kvasir-SEG layout (``root``)::

    images/<id>.jpg
    masks/<id>.jpg            JPEG masks: gray level > 127 is the object (JPEG noise makes other values)
    kavsir_bboxes.json        {"<id>": {"height": H, "width": W, "bbox": [{"label": "polyp", "xmin": .., ...}]}}

Kvasir-Instrument layout::

    images/<id>.jpg
    masks/<id>.png
    bboxes.json               same form as kavsir_bboxes.json
    train.txt  test.txt       one id per line

Without split files, ``train`` / ``val`` is a seeded hold-out of ``val_fraction`` of the images and
``all`` is every image.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from wsss.data.base import IMAGE_SUFFIXES, Box, Sample
from wsss.data.layout import check_mask, holdout_split, read_binary_mask, read_split_file, require
from wsss.utils.io import read_image


@dataclasses.dataclass
class KvasirParams:
    root: str = "data/Kvasir-SEG"
    class_name: str = "polyp"
    images: str = "images"
    masks: str = "masks"
    bboxes: str | None = "kavsir_bboxes.json"  # null: no given boxes
    split_file: str | None = None  # e.g. "{split}.txt" under root; null: seeded hold-out
    val_fraction: float = 0.2
    seed: int = 0
    threshold: int = 127  # mask gray level above this is foreground


@dataclasses.dataclass
class KvasirInstrumentParams(KvasirParams):
    root: str = "data/kvasir-instrument"
    class_name: str = "instrument"
    bboxes: str | None = "bboxes.json"
    split_file: str | None = "{split}.txt"


class KvasirDataset:
    def __init__(self, params: KvasirParams, split: str, title: str = "Kvasir-SEG") -> None:
        self.p = params
        self.root = Path(params.root)
        self.name = f"{title} ({self.root})"
        self.image_dir = require(self.root / params.images, "the endoscopy images", self.name)
        self.mask_dir = self.root / params.masks
        self.class_names = ["background", params.class_name]
        self._images = {p.stem: p for p in sorted(self.image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        if not self._images:
            raise FileNotFoundError(f"{self.name}: no images in {self.image_dir}")
        self._masks = ({p.stem: p for p in sorted(self.mask_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
                       if self.mask_dir.is_dir() else {})
        if params.split_file:
            self.ids = read_split_file(self.root / params.split_file.format(split=split), self.name)
            missing = [i for i in self.ids if i not in self._images]
            if missing:
                raise FileNotFoundError(f"{self.name}: {len(missing)} ids of split '{split}' have no image in "
                                        f"{self.image_dir}, e.g. '{missing[0]}'")
        else:
            self.ids = holdout_split(list(self._images), split, params.val_fraction, params.seed, self.name)
        self._boxes = self._read_boxes()

    def _read_boxes(self) -> dict[str, list[list[int]]] | None:
        if not self.p.bboxes:
            return None
        path = require(self.root / self.p.bboxes, "the given boxes (or set bboxes: null)", self.name, kind="file")
        try:
            raw = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        out = {}
        for image_id, entry in raw.items():
            items = entry.get("bbox", []) if isinstance(entry, dict) else entry
            try:
                out[image_id] = [[int(b["xmin"]), int(b["ymin"]), int(b["xmax"]), int(b["ymax"])] for b in items]
            except (KeyError, TypeError, ValueError):
                raise ValueError(f"{path}: entry '{image_id}' needs bbox items with xmin, ymin, xmax, ymax") from None
        return out

    def image_path(self, image_id: str) -> str:
        return str(self._images[image_id])

    def mask_path(self, image_id: str) -> str | None:
        path = self._masks.get(image_id)
        return str(path) if path is not None else None

    def gt(self, image_id: str) -> np.ndarray | None:
        """The JPEG/PNG mask binarised at ``threshold`` (0 = background, 1 = the class)."""
        path = self.mask_path(image_id)
        return None if path is None else read_binary_mask(path, self.p.threshold)

    def labels(self, image_id: str) -> list[int]:
        # Every Kvasir image shows the object (that is how the sets were built).
        if self._boxes is not None and image_id in self._boxes:
            return [1] if self._boxes[image_id] else []
        return [1]

    def load(self, image_id: str) -> Sample:
        image = read_image(self._images[image_id], **getattr(self, "image_limits", {}))
        mask = self.gt(image_id)
        if mask is not None:
            check_mask(mask, image, self.mask_path(image_id), 2)
        boxes = None
        if self._boxes is not None:
            h, w = image.shape[:2]
            boxes = [Box(1, max(0, x0), max(0, y0), min(w, x1), min(h, y1)) for x0, y0, x1, y1 in
                     self._boxes.get(image_id, [])]
        labels = [1] if mask is not None and mask.any() else self.labels(image_id)
        return Sample(image_id, image, mask, labels, boxes)
