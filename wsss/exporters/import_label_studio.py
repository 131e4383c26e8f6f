"""Corrected labels back in from Label Studio's JSON export (brush masks and polygons) -> a pseudo dir.

Label Studio's COCO export carries rectangles and polygons only, not brush masks, so brush work comes back
through its plain JSON export (Export > JSON): a list of tasks, each with ``annotations`` (the people's
work) and ``predictions``. Per task the newest annotation that was not cancelled is used (by
``updated_at`` / ``created_at``, else the last one); a task nobody annotated is left out (``unreviewed``):
its prediction is not a correction. ``brushlabels`` results are decoded from the brush RLE,
``polygonlabels`` from their percent coordinates; other result types (rectangles, choices) carry no mask
and are counted in ``no_mask``.

The output is the same as :func:`wsss.exporters.import_coco.import_coco` writes (labels, manifest,
import.json; overlap rule: smaller on top). Image id: the task's ``data.wsss_id`` (wsss's export sets it),
else the stem of ``data.image`` (a local-files path, or an upload whose 8-hex-digit prefix is dropped).
Image size: the results' ``original_width`` / ``original_height``, else ``data.width`` / ``data.height``.
"""
from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import unquote

import numpy as np

from wsss.exporters.import_coco import PseudoDirWriter, check_class_names, load_json, paint_label
from wsss.exporters.label_studio import brush_mask

_UPLOAD_PREFIX = re.compile(r"^[0-9a-f]{8}-")


def task_image_id(task: dict) -> str:
    """``data.wsss_id``, else the file stem of ``data.image`` (without Label Studio's upload prefix)."""
    data = task.get("data") or {}
    if data.get("wsss_id"):
        return str(data["wsss_id"])
    url = unquote(str(data.get("image", "")))
    path = url.split("?d=", 1)[1] if "?d=" in url else url.split("?", 1)[0]
    stem = PurePosixPath(path).stem
    return _UPLOAD_PREFIX.sub("", stem) if "/data/upload/" in url else stem


def _newest_annotation(task: dict) -> dict | None:
    done = [a for a in task.get("annotations") or [] if isinstance(a, dict) and not a.get("was_cancelled")]
    if not done:
        return None
    return max(enumerate(done), key=lambda ia: (str(ia[1].get("updated_at") or ia[1].get("created_at") or ""), ia[0]))[1]


def _result_mask(result: dict, height: int, width: int) -> np.ndarray | None:
    from pycocotools import mask as mask_utils

    value = result.get("value") or {}
    if result.get("type") == "brushlabels" and "rle" in value:
        return brush_mask(value["rle"], height, width)
    if result.get("type") == "polygonlabels" and len(value.get("points") or []) >= 3:
        xy = (np.asarray(value["points"], float) / 100.0 * (width, height)).ravel().tolist()
        return mask_utils.decode(mask_utils.frPyObjects([xy], height, width))[..., 0].astype(bool)
    return None


def _result_class(path: Path, result: dict, class_names: Sequence[str]) -> int:
    value = result.get("value") or {}
    names = value.get(str(result.get("type"))) or value.get("labels") or []
    if not names:
        raise ValueError(f"{path}: a {result.get('type')} result has no label; give every mask a label")
    index = {n: i for i, n in enumerate(class_names)}
    folded = {n.casefold(): i for i, n in enumerate(class_names)}
    name = str(names[0])
    cls = index.get(name, folded.get(name.casefold()))
    if cls is None:
        raise ValueError(f"{path}: label '{name}' is not one of the classes {', '.join(class_names)}; rename it in the "
                         "labelling config or pass the matching class names")
    return cls


def _image_size(task: dict, results: list[dict]) -> tuple[int, int] | None:
    for r in results:
        if r.get("original_height") and r.get("original_width"):
            return int(r["original_height"]), int(r["original_width"])
    data = task.get("data") or {}
    if data.get("height") and data.get("width"):
        return int(data["height"]), int(data["width"])
    return None


def import_label_studio(tasks_json: str | Path, out_dir: str | Path, class_names: Sequence[str],
                        progress: bool = True) -> dict[str, Any]:
    """Write ``<out_dir>/labels/<id>.png`` and ``manifest.jsonl`` from a Label Studio JSON export; returns counts."""
    from tqdm import tqdm

    tasks_json = Path(tasks_json)
    tasks = load_json(tasks_json)
    if not isinstance(tasks, list):
        raise ValueError(f"{tasks_json}: not a Label Studio JSON export (expected a list of tasks)")
    check_class_names(class_names)
    writer = PseudoDirWriter(out_dir, tasks_json, "import_label_studio")
    counts = {"images": 0, "annotations": 0, "no_mask": 0, "unreviewed": 0, "no_size": 0}
    for task in tqdm(tasks, desc="import label studio", unit="task", leave=False, disable=not progress):
        annotation = _newest_annotation(task) if isinstance(task, dict) else None
        if annotation is None:
            counts["unreviewed"] += 1
            continue
        results = [r for r in annotation.get("result") or [] if isinstance(r, dict)]
        size = _image_size(task, results)
        if size is None:
            counts["no_size"] += 1
            continue
        masks = []
        for r in results:
            try:
                mask = _result_mask(r, *size)
            except ValueError as e:
                raise ValueError(f"{tasks_json}: task {task.get('id')}: {e}") from None
            if mask is None or not mask.any():
                counts["no_mask"] += 1
                continue
            masks.append((_result_class(tasks_json, r, class_names), mask))
        writer.add(task_image_id(task), str((task.get("data") or {}).get("image", "")), paint_label(*size, masks))
        counts["images"] += 1
        counts["annotations"] += len(masks)
    writer.close(class_names, counts)
    return {"out": str(out_dir), **counts}
