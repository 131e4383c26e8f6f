"""Classification folders (GastroVision style): one subfolder per class, no masks.

Layout (``root``; a ``root/<split>/`` folder, if present, is used for that split)::

    root/<class name>/<image>.jpg     e.g. GastroVision/Colon polyps/xxx.jpg

Ids are ``<class>/<stem>``; each image's label is its folder. Without per-split folders,
``train`` / ``val`` is a seeded hold-out per class and ``all`` is everything. Good for classifier
training (``tools/train_classifier.py``) and for pseudo-labelling with ``labels.name: given``.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np

from wsss.data.base import IMAGE_SUFFIXES, Sample
from wsss.data.layout import holdout_split, require
from wsss.utils.io import read_image


@dataclasses.dataclass
class ClassFolderParams:
    root: str = "data/GastroVision"
    class_names: list[str] | None = None  # default: the subfolder names, sorted; "background" is prepended
    val_fraction: float = 0.2
    seed: int = 0
    min_images: int = 1  # classes with fewer images are left out (GastroVision has some tiny classes)


class ClassFolderDataset:
    def __init__(self, params: ClassFolderParams, split: str) -> None:
        root = Path(params.root)
        name = f"class folders ({root})"
        require(root, "one subfolder per class", name)
        split_root = root / split
        per_split = split_root.is_dir()
        base = split_root if per_split else root
        folders = sorted(p for p in base.iterdir() if p.is_dir() and not p.name.startswith("."))
        files = {f.name: sorted(p for p in f.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) for f in folders}
        files = {k: v for k, v in files.items() if len(v) >= max(params.min_images, 1)}
        if params.class_names:
            unknown = [c for c in params.class_names if c not in files]
            if unknown:
                raise FileNotFoundError(f"{name}: no image folder {base / unknown[0]} for class '{unknown[0]}'")
            classes = list(params.class_names)
        else:
            classes = sorted(files)
        if not classes:
            raise FileNotFoundError(f"{name}: no class subfolders with images in {base}")
        self.class_names = ["background"] + classes
        self._paths: dict[str, Path] = {}
        self._label: dict[str, int] = {}
        self.ids = []
        for c, cls in enumerate(classes, start=1):
            ids = [f"{cls}/{p.stem}" for p in files[cls]]
            for image_id, p in zip(ids, files[cls]):
                self._paths[image_id], self._label[image_id] = p, c
            self.ids += ids if per_split else holdout_split(ids, split, params.val_fraction, params.seed, name)

    def image_path(self, image_id: str) -> str:
        return str(self._paths[image_id])

    def mask_path(self, image_id: str) -> str | None:
        return None

    def gt(self, image_id: str) -> np.ndarray | None:
        return None

    def labels(self, image_id: str) -> list[int]:
        return [self._label[image_id]]

    def load(self, image_id: str) -> Sample:
        return Sample(image_id, read_image(self._paths[image_id], **getattr(self, "image_limits", {})), None, self.labels(image_id))
