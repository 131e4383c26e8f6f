"""The gallery column: the images of one split and class, a page at a time, selected by index only.

The browser only ever sends (split, class, page, index); the image id is looked up here in the
server-side list, so no user-supplied path or id is ever opened.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import cv2
import numpy as np

from wsss.data import SegDataset
from wsss.data.base import Sample

ALL_CLASSES = "all"


class GalleryIndex:
    def __init__(self, datasets: dict[str, SegDataset], page_size: int = 12, thumb: int = 160,
                 order: Mapping[str, float] | None = None, descending: bool = False) -> None:
        self.datasets = datasets
        self.page_size = page_size
        self.thumb = thumb
        self._ids: dict[tuple[str, str], list[str]] = {}
        self._order: dict[str, float] = {}
        self._descending = False
        self.sort_by(order, descending)

    def sort_by(self, order: Mapping[str, float] | None, descending: bool = False) -> None:
        """Order every list by ``order`` ({id: value}, e.g. the pseudo-label quality estimate): lowest first
        (worst first for a review), or highest with ``descending``. Ids missing from ``order`` follow, in
        data-set order. ``None`` restores data-set order."""
        self._order = {str(k): float(v) for k, v in (order or {}).items()}
        self._descending = descending
        self._ids.clear()  # cached lists were built in the old order

    def _sorted(self, ids: list[str]) -> list[str]:
        if not self._order:
            return ids
        sign = -1.0 if self._descending else 1.0
        known = sorted((i for i in ids if i in self._order), key=lambda i: sign * self._order[i])  # stable on ties
        return known + [i for i in ids if i not in self._order]

    def splits(self) -> list[str]:
        return list(self.datasets)

    def class_choices(self, split: str) -> list[str]:
        return [ALL_CLASSES] + self.datasets[split].class_names[1:]

    def ids(self, split: str, cls: str) -> list[str]:
        """Ids of ``split`` whose image-level labels contain ``cls`` (all ids for ``'all'``)."""
        if split not in self.datasets:
            raise KeyError(f"unknown split '{split}'; choose one of {self.splits()}")
        key = (split, cls)
        if key not in self._ids:
            ds = self.datasets[split]
            if cls == ALL_CLASSES:
                self._ids[key] = self._sorted(list(ds.ids))
            else:
                if cls not in ds.class_names:
                    raise KeyError(f"unknown class '{cls}'; choose one of {ds.class_names[1:]}")
                c = ds.class_names.index(cls)
                self._ids[key] = self._sorted([i for i in ds.ids if c in (ds.labels(i) or [])])
        return self._ids[key]

    def num_pages(self, split: str, cls: str) -> int:
        return max(1, math.ceil(len(self.ids(split, cls)) / self.page_size))

    def page_ids(self, split: str, cls: str, page: int) -> list[str]:
        """Ids on ``page`` (1-based; clamped into range)."""
        page = min(max(int(page), 1), self.num_pages(split, cls))
        start = (page - 1) * self.page_size
        return self.ids(split, cls)[start : start + self.page_size]

    def thumbnails(self, split: str, cls: str, page: int) -> list[tuple[np.ndarray, str]]:
        out = []
        for image_id in self.page_ids(split, cls, page):
            image = self.datasets[split].load(image_id).image
            scale = self.thumb / max(image.shape[:2])
            if scale < 1:
                image = cv2.resize(
                    image, (round(image.shape[1] * scale), round(image.shape[0] * scale)), interpolation=cv2.INTER_AREA
                )
            out.append((image, image_id))
        return out

    def select(self, split: str, cls: str, page: int, index: int) -> Sample:
        """The full sample behind thumbnail ``index`` of ``page``."""
        ids = self.page_ids(split, cls, page)
        if not 0 <= int(index) < len(ids):
            raise IndexError(f"gallery index {index} is outside page {page} ({len(ids)} images)")
        return self.datasets[split].load(ids[int(index)])
