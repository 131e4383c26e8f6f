"""COCO 2014 instances as semantic segmentation: 80 categories -> contiguous ids 1..80, crowd -> 255.

Layout (``root``)::

    annotations/instances_train2014.json
    annotations/instances_val2014.json
    train2014/COCO_train2014_<12 digits>.jpg
    val2014/COCO_val2014_<12 digits>.jpg

Ids are the image file stems. Semantic masks are drawn with pycocotools on first use and cached as
palette PNGs under ``cache_dir/<split>2014_<stamp>/`` (atomic writes; the stamp changes with the
annotation file, so an edited json never reuses stale masks). Image-level labels come straight
from the annotations (non-crowd instances), so classifier training needs no conversion.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import io
from pathlib import Path

import numpy as np

from wsss.data.base import Box, Sample
from wsss.data.layout import check_mask, require
from wsss.paths import wsss_home
from wsss.utils.io import IGNORE_INDEX, read_image, read_label_png, write_label_png


@dataclasses.dataclass
class CocoParams:
    root: str = "data/coco"
    annotations: str = "annotations/instances_{split}2014.json"  # {split}: train / val
    images: str = "{split}2014"
    # converted semantic masks (PNG); default: $WSSS_HOME/datasets/coco2014_masks
    cache_dir: str = dataclasses.field(default_factory=lambda: str(wsss_home() / "datasets" / "coco2014_masks"))


def _stamp(path: Path) -> str:
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode()).hexdigest()[:10]


def semantic_mask(coco: object, img_info: dict, cat_to_index: dict[int, int]) -> np.ndarray:
    """One image's class-index mask: larger instances first so smaller ones stay visible; crowd -> 255 where
    no non-crowd instance covers it."""
    h, w = img_info["height"], img_info["width"]
    mask = np.zeros((h, w), np.uint8)
    anns = coco.loadAnns(coco.getAnnIds(imgIds=img_info["id"], iscrowd=None))
    crowd = np.zeros((h, w), bool)
    for ann in sorted(anns, key=lambda a: -a.get("area", 0)):
        m = coco.annToMask(ann).astype(bool)
        if ann.get("iscrowd", 0):
            crowd |= m
        else:
            mask[m] = cat_to_index[ann["category_id"]]
    mask[crowd & (mask == 0)] = IGNORE_INDEX
    return mask


class CocoDataset:
    def __init__(self, params: CocoParams, split: str) -> None:
        from pycocotools.coco import COCO

        root = Path(params.root)
        name = f"COCO 2014 ({root})"
        self.ann_path = require(root / params.annotations.format(split=split), f"instances json of split '{split}'",
                                name, kind="file")
        self.image_dir = require(root / params.images.format(split=split), f"images of split '{split}'", name)
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress lines
            try:
                self.coco = COCO(str(self.ann_path))
            except (ValueError, KeyError, TypeError) as e:
                raise ValueError(f"{self.ann_path}: not a COCO instances file: {e}") from None
        cats = sorted(self.coco.loadCats(self.coco.getCatIds()), key=lambda c: c["id"])
        self.cat_to_index = {c["id"]: i for i, c in enumerate(cats, start=1)}
        self.class_names = ["background"] + [c["name"] for c in cats]
        infos = sorted(self.coco.loadImgs(self.coco.getImgIds()), key=lambda i: i["file_name"])
        self._info = {Path(i["file_name"]).stem: i for i in infos}
        self.ids = list(self._info)
        if not self.ids:
            raise ValueError(f"{self.ann_path}: lists no images")
        self.cache = Path(params.cache_dir) / f"{split}2014_{_stamp(self.ann_path)}"

    def _anns(self, image_id: str) -> list[dict]:
        return self.coco.loadAnns(self.coco.getAnnIds(imgIds=self._info[image_id]["id"], iscrowd=None))

    def image_path(self, image_id: str) -> str:
        return str(self.image_dir / self._info[image_id]["file_name"])

    def mask_path(self, image_id: str) -> str | None:
        """The cached semantic PNG, converted now if it is not there yet."""
        path = self.cache / f"{image_id}.png"
        if not path.is_file():
            write_label_png(path, semantic_mask(self.coco, self._info[image_id], self.cat_to_index))
        return str(path)

    def gt(self, image_id: str) -> np.ndarray:
        return read_label_png(self.mask_path(image_id))

    def labels(self, image_id: str) -> list[int]:
        return sorted({self.cat_to_index[a["category_id"]] for a in self._anns(image_id) if not a.get("iscrowd", 0)})

    def load(self, image_id: str) -> Sample:
        info = self._info[image_id]
        image = read_image(self.image_dir / info["file_name"], **getattr(self, "image_limits", {}))
        mask = check_mask(self.gt(image_id), image, self.ann_path.name + f" (image {image_id})",
                          len(self.class_names))
        boxes = []
        for a in self._anns(image_id):
            if a.get("iscrowd", 0):
                continue
            x, y, w, h = a["bbox"]
            boxes.append(Box(self.cat_to_index[a["category_id"]], int(np.floor(x)), int(np.floor(y)),
                             int(np.ceil(x + w)), int(np.ceil(y + h))))
        return Sample(image_id, image, mask, self.labels(image_id), boxes)
