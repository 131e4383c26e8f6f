"""A folder of images with optional masks and labels; also the on-disk form of the synthetic set.

Layout (only ``images/`` is required)::

    root/images/<id>.{png,jpg,jpeg,bmp,tif}
    root/masks/<id>.png          class-index PNG (palette or grayscale), 255 = ignore; in a two-class set a
                                 mask of only 0 and 255 is a binary mask (255 = the class), as Kvasir-SEG has
    root/labels.json             {"<id>": ["cat", "dog"], ...}  image-level labels
    root/labels.csv              or a CSV: header `image,labels` with labels joined by ';' (or '|'),
                                 or header `image,<class>,<class>...` with 0/1 columns (see wsss/data/labels_csv.py)
    root/classes.txt             one class name per line, first line = background
    root/splits/<split>.txt      one id per line; without it a split is every image
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np

from wsss.data.base import IMAGE_SUFFIXES, Sample, labels_from_mask
from wsss.data.labels_csv import read_labels_csv
from wsss.utils.io import read_image, read_label_png


@dataclasses.dataclass
class FolderParams:
    root: str = "data/my_images"
    class_names: list[str] | None = None  # overrides classes.txt; first = background
    images: str = "images"
    masks: str = "masks"
    labels_file: str = "labels.json"
    # object vs background: every foreground class of the masks and labels becomes class 1 ("object"),
    # e.g. to score a class-agnostic photo run against a multi-class ground truth
    merge_classes: bool = False


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(p.suffix.lower() in IMAGE_SUFFIXES for p in folder.iterdir())


class FolderDataset:
    def __init__(self, root: str | Path, split: str, class_names: list[str] | None = None,
                 images: str = "images", masks: str = "masks", labels_file: str = "labels.json",
                 merge_classes: bool = False) -> None:
        self.root = Path(root)
        self.merge_classes = merge_classes
        self.image_dir = self.root / images
        self.mask_dir = self.root / masks
        if not self.image_dir.is_dir() and _has_images(self.root):
            self.image_dir = self.root  # a plain folder of photos: the images are the folder itself
        if not self.image_dir.is_dir():
            raise FileNotFoundError(f"data folder {self.root}: missing '{images}/' with the images, and no images "
                                    f"directly in it ({', '.join(IMAGE_SUFFIXES)})")
        self.class_names = class_names or self._read_classes()
        self._label_names = self._read_classes() if merge_classes and (self.root / "classes.txt").is_file() else self.class_names
        if merge_classes:
            self.class_names = [self.class_names[0], class_names[1] if class_names and len(class_names) > 1 else "object"]
        self._paths = {p.stem: p for p in sorted(self.image_dir.iterdir()) if p.suffix.lower() in IMAGE_SUFFIXES}
        if not self._paths:
            raise FileNotFoundError(f"{self.image_dir}: no images ({', '.join(IMAGE_SUFFIXES)})")
        self.ids = self._read_split(split)
        self._labels = self._read_labels(self.root / labels_file)

    def _read_classes(self) -> list[str]:
        path = self.root / "classes.txt"
        if not path.is_file():
            raise FileNotFoundError(f"{path} is missing: list class names one per line (background first), "
                                    "or set data.folder.class_names")
        names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if len(names) < 2:
            raise ValueError(f"{path}: needs background plus at least one class, got {names}")
        return names

    def _read_split(self, split: str) -> list[str]:
        path = self.root / "splits" / f"{split}.txt"
        if not path.exists():
            if (self.root / "splits").is_dir():
                have = sorted(p.stem for p in (self.root / "splits").glob("*.txt"))
                raise FileNotFoundError(f"split file {path} is missing; splits here: {have}")
            return list(self._paths)
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
        if not ids:
            raise ValueError(f"split file {path} is empty")
        missing = [i for i in ids if i not in self._paths]
        if missing:
            raise FileNotFoundError(f"{path}: {len(missing)} ids have no image in {self.image_dir}, e.g. '{missing[0]}'")
        return ids

    def _read_labels(self, path: Path) -> dict[str, list[int]] | None:
        if not path.is_file() and path.name == "labels.json" and path.with_suffix(".csv").is_file():
            path = path.with_suffix(".csv")
        if not path.is_file():
            return None
        if path.suffix.lower() == ".csv":
            return read_labels_csv(path, self.class_names)
        try:
            raw = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: not valid JSON: {e}") from None
        index = {n: i for i, n in enumerate(self._label_names)}
        merge = self.merge_classes
        out = {}
        for image_id, names in raw.items():
            unknown = [n for n in names if n not in index]
            if unknown:
                raise ValueError(f"{path}: image '{image_id}' has unknown class {unknown[0]!r}; known: {self._label_names[1:]}")
            out[image_id] = sorted({1 if merge else index[n] for n in names if index[n] > 0})
        return out

    def image_path(self, image_id: str) -> str:
        return str(self._paths[image_id])

    def mask_path(self, image_id: str) -> str | None:
        path = self.mask_dir / f"{image_id}.png"
        return str(path) if path.is_file() else None

    def labels(self, image_id: str) -> list[int] | None:
        if self._labels is not None and image_id in self._labels:
            return self._labels[image_id]
        mask = self.gt(image_id)
        return labels_from_mask(mask, len(self.class_names)) if mask is not None else None

    def gt(self, image_id: str, image_shape: tuple[int, ...] | None = None) -> np.ndarray | None:
        """The checked class-index mask (foreground merged to 1 with ``merge_classes``), or None."""
        mask_path = self.mask_path(image_id)
        if mask_path is None:
            return None
        mask = read_label_png(mask_path)
        if image_shape is not None and mask.shape != image_shape[:2]:
            raise ValueError(f"{mask_path}: mask size {mask.shape[::-1]} differs from image size "
                             f"{image_shape[1::-1]} of {self._paths[image_id]}")
        names = self._label_names
        values = np.unique(mask)
        if 255 in values and np.isin(values, (0, 255)).all():
            # a binary 0/255 mask (Kvasir-SEG, most binary tools): as class indices it is all ignore, and
            # the foreground would be lost without a word
            if len(names) != 2:
                raise ValueError(f"mask {mask_path} holds only 0 and 255: that is a binary object mask, which "
                                 f"reads as 0/1 only for a two-class set (background + one class), and this set "
                                 f"has {len(names)} classes; 255 means ignore. Save class indices 0..{len(names) - 1}")
            mask = np.where(mask == 255, 1, mask).astype(np.uint8)
            values = np.unique(mask)
        bad = np.setdiff1d(values, np.r_[np.arange(len(names)), 255])
        if bad.size:
            raise ValueError(f"{mask_path}: values {bad.tolist()} are not class indices (0..{len(names) - 1}) or 255")
        if self.merge_classes:
            mask = np.where((mask > 0) & (mask != 255), 1, mask).astype(np.uint8)
        return mask

    def load(self, image_id: str) -> Sample:
        image = read_image(self._paths[image_id], **getattr(self, "image_limits", {}))
        mask = self.gt(image_id, image.shape)
        labels = self.labels(image_id)
        if labels is None and mask is not None:
            labels = labels_from_mask(mask, len(self.class_names))
        return Sample(image_id, image, mask, labels)
