"""VOC palette PNGs: the label maps as ``SegmentationClass/<id>.png``, laid out like CVAT's "Segmentation mask 1.1".

Writes ``SegmentationClass/<id>.png`` (palette PNG, pixel value = class index, VOC colours),
``ImageSets/Segmentation/default.txt`` (the ids) and ``labelmap.txt`` (``name:r,g,b::`` per class, the VOC
colour of its index), which is what CVAT's Segmentation mask importer and VOC-style training code read.
Uncertain pixels stay 255 (VOC's "void", drawn 224,224,192) unless ``ignore_value`` maps them elsewhere:
CVAT rejects an undeclared colour, so pass ``ignore_value=0`` (uncertain -> background) for CVAT.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from wsss.exporters.base import ExportItem, present_classes
from wsss.utils.io import IGNORE_INDEX, voc_palette, write_label_png, write_text_atomic


@dataclasses.dataclass
class VocParams:
    ignore_value: int = IGNORE_INDEX  # what uncertain (255) pixels become: 255 keeps VOC's void, 0 = background


class VocExporter:
    """Palette PNG copies of the label maps, plus CVAT / VOC index files."""

    name = "voc"
    default_out = "voc"

    def __init__(self, params: VocParams | None = None) -> None:
        self.params = params or VocParams()
        if not 0 <= self.params.ignore_value <= 255:
            raise ValueError(f"export.voc.ignore_value = {self.params.ignore_value}: must be a class index 0..255")

    def write(self, items: Iterable[ExportItem], class_names: Sequence[str], out: Path) -> dict[str, Any]:
        out = Path(out)
        ids = []
        for item in items:
            present_classes(item, len(class_names))
            label = item.label_map
            if self.params.ignore_value != IGNORE_INDEX:
                label = np.where(label == IGNORE_INDEX, self.params.ignore_value, label).astype(np.uint8)
            write_label_png(out / "SegmentationClass" / f"{item.image_id}.png", label)
            ids.append(item.image_id)
        write_text_atomic(out / "ImageSets" / "Segmentation" / "default.txt", "".join(f"{i}\n" for i in ids))
        palette = voc_palette()
        lines = ["# label:color_rgb:parts:actions\n"] + [
            f"{name}:{palette[3 * c]},{palette[3 * c + 1]},{palette[3 * c + 2]}::\n" for c, name in enumerate(class_names)]
        write_text_atomic(out / "labelmap.txt", "".join(lines))
        return {"images": len(ids)}
