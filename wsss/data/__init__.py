"""Data stage: readers that yield :class:`Sample` objects for a split, chosen by ``data.name``."""
from __future__ import annotations

from typing import Any

from wsss.data.base import Sample, SegDataset, labels_from_mask
from wsss.data.folder import FolderDataset, FolderParams
from wsss.data.synthetic import SyntheticParams, synthetic_dataset
from wsss.registry import Registry

DATASETS = Registry("data")


@DATASETS.register("synthetic", params=SyntheticParams)
def _synthetic(params: SyntheticParams, split: str) -> FolderDataset:
    return synthetic_dataset(params, split)


@DATASETS.register("folder", params=FolderParams)
def _folder(params: FolderParams, split: str) -> FolderDataset:
    return FolderDataset(params.root, split, params.class_names, params.images, params.masks, params.labels_file)


def build_dataset(data_cfg: Any, split: str) -> SegDataset:
    """The reader named by ``data.name`` for one split."""
    return DATASETS.build(data_cfg, split=split)


__all__ = ["DATASETS", "FolderDataset", "Sample", "SegDataset", "build_dataset", "labels_from_mask"]
