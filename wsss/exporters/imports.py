"""One entry for corrected labels: a COCO json (CVAT, ...) or a Label Studio JSON export, told apart by shape."""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from wsss.exporters.import_coco import import_coco, load_json
from wsss.exporters.import_label_studio import import_label_studio


def import_labels(path: str | Path, out_dir: str | Path, class_names: Sequence[str], progress: bool = True) -> dict[str, Any]:
    """COCO (a mapping with ``images``) or Label Studio (a list of tasks) -> pseudo dir; returns counts + ``format``."""
    doc = load_json(Path(path))
    if isinstance(doc, list):
        return {"format": "label_studio", **import_label_studio(path, out_dir, class_names, progress)}
    if isinstance(doc, dict) and "images" in doc:
        return {"format": "coco", **import_coco(path, out_dir, class_names, progress)}
    raise ValueError(f"{path}: neither a COCO instances json (a mapping with 'images') nor a Label Studio JSON export "
                     "(a list of tasks)")
