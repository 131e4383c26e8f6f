"""Training pairs for stage two: images with pseudo-labels (or ground truth), augmented."""
from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from wsss.data import SegDataset
from wsss.utils.io import IGNORE_INDEX, read_label_png


class PseudoLabelSet(Dataset):
    """Images of ``dataset`` paired with ``<labels_dir>/<id>.png``; ids without a label are left out."""

    def __init__(self, dataset: SegDataset, labels_dir: str | Path, crop: int, scale: tuple[float, float],
                 mean: tuple, std: tuple, seed: int) -> None:
        self.dataset = dataset
        self.labels_dir = Path(labels_dir)
        if not self.labels_dir.is_dir():
            raise FileNotFoundError(f"pseudo-labels folder {self.labels_dir} not found: run tools/gen_pseudo.py first "
                                    "or set train.labels_dir")
        self.ids = [i for i in dataset.ids if (self.labels_dir / f"{i}.png").is_file()]
        if not self.ids:
            raise FileNotFoundError(f"{self.labels_dir}: no label PNG matches an image id of the split")
        self.transform = A.Compose([
            A.RandomScale(scale_limit=(scale[0] - 1.0, scale[1] - 1.0), p=1.0),
            A.PadIfNeeded(crop, crop, border_mode=cv2.BORDER_CONSTANT, fill=0, fill_mask=IGNORE_INDEX),
            A.RandomCrop(crop, crop),
            A.HorizontalFlip(p=0.5),
            A.ColorJitter(0.2, 0.2, 0.2, 0.0, p=0.5),
            A.Normalize(mean=mean, std=std),
        ], seed=seed)

    def reseed(self, seed: int) -> None:
        """Per-epoch seed, so a resumed run draws the same augmentations as an uninterrupted one."""
        self.transform.set_random_seed(seed)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.dataset.load(self.ids[i]).image
        label = read_label_png(self.labels_dir / f"{self.ids[i]}.png")
        if label.shape != image.shape[:2]:
            raise ValueError(f"{self.labels_dir / self.ids[i]}.png: size {label.shape} differs from its image {image.shape[:2]}")
        out = self.transform(image=image, mask=label)
        return torch.from_numpy(out["image"].transpose(2, 0, 1).copy()), torch.from_numpy(out["mask"].astype(np.int64))
