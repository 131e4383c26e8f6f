"""Builders of miniature copies of the real data-set layouts (a few 32-64 px images) for tests."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.utils.io import write_label_png


def _rng_image(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    return rng.integers(0, 255, (h, w, 3), dtype=np.uint8)


def make_voc(root: Path, n: int = 4, size: tuple[int, int] = (40, 48), seed: int = 0) -> Path:
    """VOCdevkit/VOC2012 with masks in both SegmentationClass (palette) and SegmentationClassAug, and XML."""
    rng = np.random.default_rng(seed)
    voc = root / "VOCdevkit" / "VOC2012"
    h, w = size
    ids = [f"2007_{i:06d}" for i in range(n)]
    for k, image_id in enumerate(ids):
        (voc / "JPEGImages").mkdir(parents=True, exist_ok=True)
        Image.fromarray(_rng_image(rng, h, w)).save(voc / "JPEGImages" / f"{image_id}.jpg", quality=95)
        mask = np.zeros((h, w), np.uint8)
        cls_a, cls_b = 1 + k % 20, 1 + (k + 7) % 20
        mask[4:20, 4:20] = cls_a
        mask[22:36, 26:44] = cls_b
        mask[20, 4:20] = 255  # boundary pixels, as VOC has
        write_label_png(voc / "SegmentationClass" / f"{image_id}.png", mask)
        (voc / "SegmentationClassAug").mkdir(parents=True, exist_ok=True)
        Image.fromarray(mask, mode="L").save(voc / "SegmentationClassAug" / f"{image_id}.png")
        from wsss.data.voc import VOC_CLASSES

        objs = "".join(f"<object><name>{VOC_CLASSES[c]}</name><difficult>{d}</difficult><bndbox><xmin>{x0 + 1}</xmin>"
                       f"<ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
                       for c, d, (x0, y0, x1, y1) in ((cls_a, 0, (4, 4, 20, 20)), (cls_b, 1, (26, 22, 44, 36))))
        (voc / "Annotations").mkdir(parents=True, exist_ok=True)
        (voc / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename>{objs}</annotation>")
    sets = voc / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True, exist_ok=True)
    (sets / "train.txt").write_text("\n".join(ids[: n // 2]) + "\n")
    (sets / "val.txt").write_text("\n".join(ids[n // 2:]) + "\n")
    (sets / "train_aug.txt").write_text("\n".join(ids) + "\n")
    return voc


def _poly(x0: int, y0: int, x1: int, y1: int) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def make_coco(root: Path, split: str = "val", seed: int = 0) -> Path:
    """annotations/instances_<split>2014.json with 3 categories (ids 1, 3, 90: not contiguous) and 3 images."""
    rng = np.random.default_rng(seed)
    img_dir = root / f"{split}2014"
    img_dir.mkdir(parents=True, exist_ok=True)
    images, anns = [], []
    specs = [  # (category_id, box, iscrowd) per image
        [(1, (4, 4, 20, 24), 0), (90, (30, 10, 60, 30), 0)],
        [(3, (0, 0, 32, 32), 0), (1, (8, 8, 16, 16), 0), (90, (40, 20, 60, 40), 1)],
        [],
    ]
    for i, objs in enumerate(specs, start=1):
        name = f"COCO_{split}2014_{i:012d}.jpg"
        Image.fromarray(_rng_image(rng, 40, 64)).save(img_dir / name)
        images.append({"id": i, "file_name": name, "height": 40, "width": 64})
        for cat, (x0, y0, x1, y1), crowd in objs:
            ann = {"id": len(anns) + 1, "image_id": i, "category_id": cat, "iscrowd": crowd,
                   "area": float((x1 - x0) * (y1 - y0)), "bbox": [x0, y0, x1 - x0, y1 - y0]}
            if crowd:  # crowd regions come as uncompressed RLE in COCO
                from pycocotools import mask as mask_utils

                m = np.zeros((40, 64), np.uint8)
                m[y0:y1, x0:x1] = 1
                rle = mask_utils.encode(np.asfortranarray(m))
                ann["segmentation"] = {"size": rle["size"], "counts": rle["counts"].decode()}
            else:
                ann["segmentation"] = _poly(x0, y0, x1, y1)
            anns.append(ann)
    cats = [{"id": 1, "name": "person", "supercategory": "person"}, {"id": 3, "name": "car", "supercategory": "v"},
            {"id": 90, "name": "toothbrush", "supercategory": "indoor"}]
    (root / "annotations").mkdir(parents=True, exist_ok=True)
    path = root / "annotations" / f"instances_{split}2014.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    return root


def make_kvasir(root: Path, n: int = 5, masks_suffix: str = ".jpg", bboxes: str = "kavsir_bboxes.json",
                seed: int = 0) -> Path:
    """images/*.jpg, masks/* (JPEG: compression noise around 0 and 255) and the bboxes json."""
    rng = np.random.default_rng(seed)
    (root / "images").mkdir(parents=True, exist_ok=True)
    (root / "masks").mkdir(parents=True, exist_ok=True)
    boxes = {}
    for i in range(n):
        image_id = f"cju{i:04d}"
        Image.fromarray(_rng_image(rng, 48, 56)).save(root / "images" / f"{image_id}.jpg")
        m = np.zeros((48, 56), np.uint8)
        x0, y0 = 5 + i, 6 + i
        m[y0:y0 + 20, x0:x0 + 24] = 255
        Image.fromarray(m).save(root / "masks" / f"{image_id}{masks_suffix}")
        boxes[image_id] = {"height": 48, "width": 56,
                           "bbox": [{"label": "polyp", "xmin": x0, "ymin": y0, "xmax": x0 + 24, "ymax": y0 + 20}]}
    (root / bboxes).write_text(json.dumps(boxes))
    return root


def make_class_folders(root: Path, classes: tuple[str, ...] = ("Colon polyps", "Normal mucosa"), per_class: int = 5,
                       seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for cls in classes:
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(_rng_image(rng, 32, 32)).save(root / cls / f"img{i}.jpg")
    return root
