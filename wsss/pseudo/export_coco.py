"""Pseudo-labels as a COCO instances file with RLE masks, for CVAT, Label Studio, FiftyOne, detectron2 ...

One annotation per class per image (``per_component=False``) or per 8-connected component of each
class; masks are pycocotools compressed RLE, ``bbox`` and ``area`` come from the mask. Ignore
(255) pixels belong to no annotation. Only images whose manifest status is ``ok`` are exported.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from wsss.pseudo.manifest import is_labelled, read_manifest
from wsss.utils.io import read_label_png, write_json_atomic


def mask_annotations(label: np.ndarray, num_classes: int, per_component: bool = False) -> list[dict]:
    """COCO annotation dicts (without ids) for the classes 1..K-1 in ``label``."""
    from pycocotools import mask as mask_utils

    anns = []
    for c in np.unique(label).tolist():
        if not 0 < c < num_classes:
            continue
        binary = (label == c).astype(np.uint8)
        parts = [binary]
        if per_component:
            n, comp = cv2.connectedComponents(binary, connectivity=8)
            parts = [(comp == i).astype(np.uint8) for i in range(1, n)]
        for part in parts:
            rle = mask_utils.encode(np.asfortranarray(part))
            anns.append({"category_id": int(c), "segmentation": {"size": [int(v) for v in rle["size"]],
                                                                  "counts": rle["counts"].decode("ascii")},
                         "area": float(mask_utils.area(rle)), "bbox": [float(v) for v in mask_utils.toBbox(rle)],
                         "iscrowd": 0})
    return anns


def export_coco(pseudo_dir: str | Path, class_names: list[str], out_path: str | Path,
                image_paths: dict[str, str] | None = None, per_component: bool = False) -> dict:
    """Write ``out_path`` from ``<pseudo_dir>/manifest.jsonl`` and ``labels/``; returns counts."""
    pseudo_dir = Path(pseudo_dir)
    manifest = pseudo_dir / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} is missing: run `python tools/gen_pseudo.py CONFIG` first")
    records = read_manifest(manifest)
    images, annotations, skipped = [], [], []
    for image_id, rec in tqdm(records.items(), desc="export coco", unit="img", leave=False):
        label_path = pseudo_dir / rec.get("label", f"labels/{image_id}.png")
        if not is_labelled(rec) or not label_path.is_file():
            skipped.append(image_id)
            continue
        label = read_label_png(label_path)
        img_id = len(images) + 1
        file_name = (image_paths or {}).get(image_id, f"{image_id}.jpg")
        images.append({"id": img_id, "file_name": file_name, "height": int(label.shape[0]),
                       "width": int(label.shape[1]), "wsss_id": image_id})
        for ann in mask_annotations(label, len(class_names), per_component):
            annotations.append(ann | {"id": len(annotations) + 1, "image_id": img_id})
    categories = [{"id": c, "name": name, "supercategory": "object"} for c, name in enumerate(class_names) if c > 0]
    write_json_atomic(out_path, {"info": {"description": f"wsss pseudo-labels from {pseudo_dir}"},
                                 "images": images, "annotations": annotations, "categories": categories})
    return {"images": len(images), "annotations": len(annotations), "skipped": skipped}
