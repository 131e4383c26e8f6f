"""Data stage: readers that yield :class:`Sample` objects for a split, chosen by ``data.name``."""
from __future__ import annotations

from typing import Any

from wsss.data.base import Sample, SegDataset, labels_from_mask, read_gt
from wsss.data.classfolder import ClassFolderDataset, ClassFolderParams
from wsss.data.coco import CocoDataset, CocoParams
from wsss.data.folder import FolderDataset, FolderParams
from wsss.data.kvasir import KvasirDataset, KvasirInstrumentParams, KvasirParams
from wsss.data.synthetic import SyntheticParams, synthetic_dataset
from wsss.data.voc import VocDataset, VocParams
from wsss.registry import Registry

DATASETS = Registry("data")


@DATASETS.register("synthetic", params=SyntheticParams)
def _synthetic(params: SyntheticParams, split: str) -> FolderDataset:
    return synthetic_dataset(params, split)


@DATASETS.register("folder", params=FolderParams)
def _folder(params: FolderParams, split: str) -> FolderDataset:
    return FolderDataset(params.root, split, params.class_names, params.images, params.masks, params.labels_file,
                         params.merge_classes)


@DATASETS.register("voc", params=VocParams)
def _voc(params: VocParams, split: str) -> VocDataset:
    return VocDataset(params, split)


@DATASETS.register("coco", params=CocoParams)
def _coco(params: CocoParams, split: str) -> CocoDataset:
    return CocoDataset(params, split)


@DATASETS.register("kvasir_seg", params=KvasirParams)
def _kvasir_seg(params: KvasirParams, split: str) -> KvasirDataset:
    return KvasirDataset(params, split, "Kvasir-SEG")


@DATASETS.register("kvasir_instrument", params=KvasirInstrumentParams)
def _kvasir_instrument(params: KvasirInstrumentParams, split: str) -> KvasirDataset:
    return KvasirDataset(params, split, "Kvasir-Instrument")


@DATASETS.register("class_folders", params=ClassFolderParams)
def _class_folders(params: ClassFolderParams, split: str) -> ClassFolderDataset:
    return ClassFolderDataset(params, split)


def build_dataset(data_cfg: Any, split: str) -> SegDataset:
    """The reader named by ``data.name`` for one split, with the config's image-size limits."""
    dataset = DATASETS.build(data_cfg, split=split)
    # readers pass these to read_image: a decompression bomb or a 1-px sliver is an error naming the file
    dataset.image_limits = {"max_pixels": getattr(data_cfg, "max_pixels", 64_000_000),
                            "min_side": getattr(data_cfg, "min_side", 8)}
    return dataset


__all__ = ["DATASETS", "FolderDataset", "Sample", "SegDataset", "build_dataset", "labels_from_mask", "read_gt"]
