"""The accepted mask as a PNG (0 / 255) and as a COCO annotation file with an RLE segmentation (the CLI's writer)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
from PIL import Image

from wsss.exporters.coco_rle import mask_annotations
from wsss.utils.io import atomic_path, write_text_atomic


def mask_png_bytes(mask: np.ndarray) -> bytes:
    """A binary mask as an 8-bit grayscale PNG: 255 = object, 0 = background."""
    if mask.ndim != 2:
        raise ValueError(f"mask must be HxW, got shape {mask.shape}")
    buf = io.BytesIO()
    Image.fromarray(np.where(mask.astype(bool), 255, 0).astype(np.uint8), mode="L").save(buf, format="PNG")
    return buf.getvalue()


def coco_rle_json(
    mask: np.ndarray, category: str, category_id: int, file_name: str, score: float | None = None
) -> dict:
    """A one-image, one-annotation COCO dict (loadable by ``pycocotools.coco.COCO``).

    The annotation comes from the CLI's COCO RLE writer (``wsss.exporters.coco_rle``), so the demo and
    ``tools/export.py`` encode a mask the same way.
    """
    h, w = mask.shape
    binary = mask.astype(bool).astype(np.uint8)
    anns = mask_annotations(binary, num_classes=2)
    annotation = {"id": 1, "image_id": 1, **(anns[0] if anns else {"segmentation": [], "area": 0.0,
                                                                   "bbox": [0.0, 0.0, 0.0, 0.0], "iscrowd": 0})}
    annotation["category_id"] = int(category_id)
    if score is not None:
        annotation["score"] = float(score)
    return {
        "images": [{"id": 1, "file_name": file_name, "height": int(h), "width": int(w)}],
        "annotations": [annotation],
        "categories": [{"id": int(category_id), "name": category}],
    }


def write_exports(
    out_dir: str | Path, stem: str, mask: np.ndarray, category: str, category_id: int, score: float | None = None
) -> tuple[Path, Path]:
    """``<stem>_mask.png`` and ``<stem>_coco_rle.json`` under ``out_dir`` (atomic writes)."""
    out_dir = Path(out_dir)
    png, js = out_dir / f"{stem}_mask.png", out_dir / f"{stem}_coco_rle.json"
    with atomic_path(png) as tmp:
        tmp.write_bytes(mask_png_bytes(mask))
    write_text_atomic(js, json.dumps(coco_rle_json(mask, category, category_id, f"{stem}.png", score), indent=1))
    return png, js
