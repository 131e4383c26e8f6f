"""PASCAL VOC 2012 (with the SBD-augmented ``SegmentationClassAug`` masks of the usual WSSS setup).

Layout (``root`` may point at ``VOC2012``, at ``VOCdevkit`` or at the folder holding ``VOCdevkit``)::

    VOCdevkit/VOC2012/JPEGImages/<id>.jpg
    VOCdevkit/VOC2012/SegmentationClass/<id>.png      palette PNGs for train / val (255 = boundary)
    VOCdevkit/VOC2012/SegmentationClassAug/<id>.png   grayscale PNGs for train_aug (10,582 images)
    VOCdevkit/VOC2012/Annotations/<id>.xml            object boxes and names
    VOCdevkit/VOC2012/ImageSets/Segmentation/{train,val,train_aug}.txt
    VOCdevkit/VOC2012/classes.txt                     optional: your own classes, one per line, background first
                                                      (default: the 21 VOC classes)
"""
from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Literal

import numpy as np

from wsss.data.base import Box, Sample, labels_from_mask
from wsss.data.layout import check_mask, read_index_mask, read_split_file, require
from wsss.utils.io import read_image

VOC_CLASSES = ["background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor"]


@dataclasses.dataclass
class VocParams:
    root: str = "data/VOCdevkit/VOC2012"
    mask_dir: str | None = None  # default: SegmentationClassAug for train_aug, SegmentationClass otherwise
    labels_from: Literal["mask", "xml"] = "mask"  # image-level labels from the masks (WSSS convention) or the XML
    skip_difficult: bool = False  # drop XML objects marked difficult (labels and boxes)


def find_voc_root(root: str | Path) -> Path:
    root = Path(root)
    for candidate in (root, root / "VOC2012", root / "VOCdevkit" / "VOC2012"):
        if (candidate / "JPEGImages").is_dir():
            return candidate
    return root


def read_voc_classes(root: Path) -> list[str]:
    """``<root>/classes.txt`` (one name per line, background first) when there is one, else the 21 VOC classes."""
    path = root / "classes.txt"
    if not path.is_file():
        return list(VOC_CLASSES)
    names = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    if len(names) < 2:
        raise ValueError(f"{path}: needs background plus at least one class, got {names}")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: class names repeat: {sorted({n for n in names if names.count(n) > 1})}")
    return names


# train_aug needs the SBD extras, which a plain VOC2012 download lacks: say how to run without them
_AUG_HINT = ("; split train_aug needs SegmentationClassAug/ and ImageSets/Segmentation/train_aug.txt (SBD, see "
             "docs/datasets.md): without them use --set data.split=train")


class VocDataset:
    def __init__(self, params: VocParams, split: str) -> None:
        self.p = params
        self.root = find_voc_root(params.root)
        name = f"VOC2012 ({self.root})"
        self.image_dir = require(self.root / "JPEGImages", "the JPEG images", name)
        mask_dir = params.mask_dir or ("SegmentationClassAug" if split == "train_aug" else "SegmentationClass")
        self.mask_dir = self.root / mask_dir
        self.xml_dir = self.root / "Annotations"
        if params.labels_from == "xml":
            require(self.xml_dir, "the object annotations XML", name)
        self.class_names = read_voc_classes(self.root)  # a VOC-layout set may bring its own classes
        try:
            if params.labels_from == "mask":
                require(self.mask_dir, f"class-index masks for split '{split}' (or set data.voc.labels_from: xml)",
                        name)
            self.ids = read_split_file(self.root / "ImageSets" / "Segmentation" / f"{split}.txt", name)
        except FileNotFoundError as e:
            if split != "train_aug":
                raise
            raise FileNotFoundError(f"{e}{_AUG_HINT}") from None
        missing = [i for i in self.ids if not (self.image_dir / f"{i}.jpg").is_file()]
        if missing:
            raise FileNotFoundError(f"{name}: {len(missing)} ids of split '{split}' have no image, "
                                    f"e.g. {self.image_dir / (missing[0] + '.jpg')}")

    def image_path(self, image_id: str) -> str:
        return str(self.image_dir / f"{image_id}.jpg")

    def mask_path(self, image_id: str) -> str | None:
        path = self.mask_dir / f"{image_id}.png"
        return str(path) if path.is_file() else None

    def gt(self, image_id: str) -> np.ndarray | None:
        path = self.mask_path(image_id)
        return None if path is None else read_index_mask(path)  # RGB-coloured masks are mapped back to indices

    def _xml_objects(self, image_id: str) -> list[tuple[int, list[int]]]:
        path = self.xml_dir / f"{image_id}.xml"
        if not path.is_file():
            return []
        try:
            tree = ET.parse(path)
        except ET.ParseError as e:
            raise ValueError(f"{path}: not valid XML: {e}") from None
        index = {n: i for i, n in enumerate(self.class_names)}
        objects = []
        for obj in tree.getroot().iter("object"):
            name = (obj.findtext("name") or "").strip()
            if name not in index:
                raise ValueError(f"{path}: unknown class {name!r}; known: {self.class_names[1:]}")
            if self.p.skip_difficult and (obj.findtext("difficult") or "0").strip() == "1":
                continue
            bb = obj.find("bndbox")
            if bb is None:
                raise ValueError(f"{path}: object {name!r} has no <bndbox>")
            try:
                x0, y0, x1, y1 = (int(float(bb.findtext(k))) for k in ("xmin", "ymin", "xmax", "ymax"))
            except (TypeError, ValueError):
                raise ValueError(f"{path}: object {name!r} has a malformed <bndbox>") from None
            objects.append((index[name], [x0 - 1, y0 - 1, x1, y1]))  # VOC is 1-based inclusive
        return objects

    def labels(self, image_id: str) -> list[int] | None:
        if self.p.labels_from == "xml":
            return sorted({c for c, _ in self._xml_objects(image_id)})
        path = self.mask_path(image_id)
        return None if path is None else labels_from_mask(read_index_mask(path), len(self.class_names))

    def load(self, image_id: str) -> Sample:
        image = read_image(self.image_dir / f"{image_id}.jpg", **getattr(self, "image_limits", {}))
        mask = None
        path = self.mask_path(image_id)
        if path is not None:
            mask = check_mask(read_index_mask(path), image, path, len(self.class_names))
        if self.p.labels_from == "xml":
            labels = self.labels(image_id)
        else:
            labels = labels_from_mask(mask, len(self.class_names)) if mask is not None else None
        objects = self._xml_objects(image_id)
        boxes = [Box(c, *xyxy) for c, xyxy in objects] if (self.xml_dir / f"{image_id}.xml").is_file() else None
        return Sample(image_id, image, mask, labels, boxes)
