"""Training pairs for stage two: images with pseudo-labels (or ground truth), augmented."""
from __future__ import annotations

from pathlib import Path

import albumentations as A
import cv2
import numpy as np
import torch
from torch.utils.data import Dataset, DistributedSampler

from wsss.data import SegDataset
from wsss.utils.io import IGNORE_INDEX, read_image, read_label_png


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
        self.epoch_seed = seed

    def reseed(self, seed: int) -> None:
        """Per-epoch seed. Each sample's augmentation is then drawn from (seed, index) alone, so it does
        not depend on the sample order, the DataLoader worker or the DDP rank: a resumed or a multi-GPU
        run sees exactly the crops of an uninterrupted single-process one."""
        self.epoch_seed = seed

    def __len__(self) -> int:
        return len(self.ids)

    def read_image(self, image_id: str) -> np.ndarray:
        """The image alone: ``load`` would also read (and check) the ground-truth mask, the VOC XML or the
        COCO annotations, which training never uses (a third of a sample's CPU time on coco_dev). Readers without an
        ``image_path`` (the SegDataset protocol makes it optional) are loaded whole."""
        image_path = getattr(self.dataset, "image_path", None)
        if image_path is None:
            return self.dataset.load(image_id).image
        return read_image(image_path(image_id), **getattr(self.dataset, "image_limits", {}))

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        image = self.read_image(self.ids[i])
        label = read_label_png(self.labels_dir / f"{self.ids[i]}.png")
        if label.shape != image.shape[:2]:
            raise ValueError(f"{self.labels_dir / self.ids[i]}.png: size {label.shape} differs from its image "
                             f"{image.shape[:2]}")
        self.transform.set_random_seed((self.epoch_seed * 1_000_003 + i) % 2**32)
        out = self.transform(image=image, mask=label)
        return torch.from_numpy(out["image"].transpose(2, 0, 1).copy()), torch.from_numpy(out["mask"].astype(np.int64))


class BlockSampler(DistributedSampler):
    """A DistributedSampler whose ranks take contiguous blocks of ``micro_batch`` images of one shuffled order.

    Global block ``j`` of an epoch goes to rank ``j % world_size``; a step consumes ``accum * world_size``
    blocks. So N ranks with accumulation A see the same images per forward pass as one process with
    accumulation A*N (identical BatchNorm batches and gradients), and every rank gets the same step count.
    Smaller data sets than one global batch are repeated to fill it.
    """

    def __init__(self, dataset: Dataset, micro_batch: int, accum: int, rank: int, world_size: int, seed: int) -> None:
        super().__init__(dataset, num_replicas=world_size, rank=rank, shuffle=True, seed=seed, drop_last=True)
        self.micro_batch = micro_batch
        self.steps = max(len(dataset) // (micro_batch * accum * world_size), 1)  # optimizer steps per epoch
        self.num_samples = self.steps * accum * micro_batch
        self.total_size = self.num_samples * world_size

    def __iter__(self):  # noqa: ANN204 - an iterator of dataset indices
        g = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(len(self.dataset), generator=g).tolist()  # type: ignore[arg-type]
        while len(order) < self.total_size:
            order += order[: self.total_size - len(order)]
        order = order[: self.total_size]
        blocks = [order[i:i + self.micro_batch] for i in range(0, self.total_size, self.micro_batch)]
        return iter([i for block in blocks[self.rank::self.num_replicas] for i in block])

    def __len__(self) -> int:
        return self.num_samples
