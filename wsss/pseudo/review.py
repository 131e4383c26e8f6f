"""The review queue: a stage-one output folder's pseudo-labels ranked worst first by their quality estimate.

Reads ``<pseudo_dir>/manifest.jsonl`` (each labelled line carries ``quality.estimate`` from
:func:`wsss.pseudo.quality.manifest_quality`) and writes to ``out_dir`` (default ``<pseudo_dir>/review``):

- ``queue.csv``: one row per labelled image, lowest estimate first (images without an estimate come first:
  nothing vouches for them);
- ``index.html``: a static contact sheet in the same order, overlay thumbnails (``thumbs/``, relative links)
  with the estimate and the main features; opens from disk in any browser;
- with a threshold: ``needs_review.txt`` (ids below it, worst first) and, with ``trusted=True``,
  ``trusted/labels/``, a copy of the label PNGs of every image at or above it. Stage two leaves out images
  without a label PNG, so ``--set train.labels_dir=<out_dir>/trusted/labels`` trains on trusted labels only.
"""
from __future__ import annotations

import csv
import dataclasses
import html
import math
import shutil
from pathlib import Path

import cv2
import numpy as np

from wsss.pseudo.manifest import is_labelled, read_manifest
from wsss.utils.io import read_image, read_label_png, write_image, write_text_atomic
from wsss.viz import colourise, overlay

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".JPG", ".JPEG", ".PNG")
CSV_FEATURES = ("confidence", "mask_cam_iou", "mask_box_fill", "mask_area", "uncertain", "cam_in_box")


@dataclasses.dataclass
class QueueItem:
    image: str
    estimate: float | None  # None: the manifest line has no quality field (an older run)
    status: str
    label: str | None  # relative to the pseudo dir, e.g. labels/<id>.png
    classes: list[int]
    features: dict[str, float]
    per_class: dict[str, float]

    @property
    def sort_key(self) -> float:
        return -math.inf if self.estimate is None else float(self.estimate)


def load_queue(pseudo_dir: str | Path) -> list[QueueItem]:
    """Labelled images of the folder's manifest, worst first (ties: by id, so the order is stable)."""
    pseudo_dir = Path(pseudo_dir)
    manifest = pseudo_dir / "manifest.jsonl"
    if not manifest.is_file():
        raise FileNotFoundError(f"{manifest} not found: run tools/gen_pseudo.py first, or pass its output folder")
    items = []
    for rec in read_manifest(manifest).values():
        if not is_labelled(rec):
            continue
        q = rec.get("quality") or {}
        est = q.get("estimate")
        items.append(QueueItem(image=str(rec["image"]), estimate=None if est is None else float(est),
                               status=str(rec.get("status", "")), label=rec.get("label"),
                               classes=list(rec.get("classes") or []), features=dict(q.get("features") or {}),
                               per_class=dict(q.get("per_class") or {})))
    return sorted(items, key=lambda it: (it.sort_key, it.image))


def write_csv(items: list[QueueItem], path: str | Path) -> None:
    rows = [["rank", "image", "estimate", "status", "classes", "label", "per_class", *CSV_FEATURES]]
    for rank, it in enumerate(items, 1):
        rows.append([str(rank), it.image, "" if it.estimate is None else f"{it.estimate:.4f}", it.status,
                     " ".join(map(str, it.classes)), it.label or "",
                     " ".join(f"{c}:{v:.3f}" for c, v in it.per_class.items()),
                     *("" if f not in it.features else f"{it.features[f]:.4f}" for f in CSV_FEATURES)])
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as fh:
        csv.writer(fh).writerows(rows)


def find_image(images_dir: Path | None, image_id: str) -> Path | None:
    """The photo behind ``image_id`` in ``images_dir`` (or its ``images/``), any usual suffix."""
    if images_dir is None:
        return None
    for folder in (images_dir, images_dir / "images"):
        for suffix in IMAGE_SUFFIXES:
            p = folder / f"{image_id}{suffix}"
            if p.is_file():
                return p
    return None


def thumbnail(pseudo_dir: Path, it: QueueItem, images_dir: Path | None, size: int) -> np.ndarray:
    """Overlay of the label on its photo when the photo is found, else the label's palette colours alone."""
    label = read_label_png(pseudo_dir / it.label) if it.label and (pseudo_dir / it.label).is_file() else None
    photo = find_image(images_dir, it.image)
    image = read_image(photo) if photo is not None else None
    if label is None and image is None:
        tile = np.full((size, size, 3), 200, np.uint8)
    elif image is None:
        tile = colourise(label)
    elif label is None or label.shape != image.shape[:2]:
        tile = image
    else:
        tile = overlay(image, label)
    scale = size / max(tile.shape[:2])
    return cv2.resize(tile, (max(1, round(tile.shape[1] * scale)), max(1, round(tile.shape[0] * scale))),
                      interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_NEAREST)


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def write_contact_sheet(items: list[QueueItem], pseudo_dir: str | Path, out_dir: str | Path,
                        images_dir: str | Path | None = None, threshold: float | None = None, size: int = 200) -> Path:
    """``out_dir/index.html`` with one ``<figure class="entry">`` per image, worst first; thumbs in ``thumbs/``."""
    pseudo_dir, out_dir = Path(pseudo_dir), Path(out_dir)
    images = Path(images_dir) if images_dir else None
    (out_dir / "thumbs").mkdir(parents=True, exist_ok=True)
    cards = []
    for rank, it in enumerate(items, 1):
        name = f"thumbs/{rank:05d}.jpg"  # by rank, not id: an id never becomes a path or a URL here
        write_image(out_dir / name, thumbnail(pseudo_dir, it, images, size))
        flagged = threshold is not None and (it.estimate is None or it.estimate < threshold)
        feats = ", ".join(f"{k} {it.features[k]:.2f}" for k in CSV_FEATURES if k in it.features)
        cards.append(
            f'<figure class="entry{" flagged" if flagged else ""}" data-image="{html.escape(it.image, quote=True)}" '
            f'data-estimate="{_fmt(it.estimate)}"><img src="{name}" alt="{html.escape(it.image, quote=True)}" '
            f'loading="lazy"><figcaption><b>#{rank} {html.escape(it.image)}</b><br>estimate {_fmt(it.estimate)}'
            f'{" &middot; needs review" if flagged else ""}<br><small>{html.escape(feats)}</small></figcaption></figure>')
    title = f"Review queue: {html.escape(str(pseudo_dir))} ({len(items)} images, worst first)"
    note = "" if threshold is None else f" Red: estimate below {threshold:g}."
    page = f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<style>
body {{ font-family: sans-serif; margin: 1em; }}
.grid {{ display: flex; flex-wrap: wrap; gap: 10px; }}
.entry {{ margin: 0; width: {size + 8}px; border: 2px solid #ccc; padding: 4px; font-size: 12px; }}
.entry.flagged {{ border-color: #d22; }}
.entry img {{ display: block; max-width: {size}px; max-height: {size}px; }}
</style></head><body>
<h1>{title}</h1>
<p>Estimated quality in [0, 1] (roughly the expected foreground IoU), computed without ground truth; check the
first ones first.{note} Ranked list: <a href="queue.csv">queue.csv</a>.</p>
<div class="grid">
{chr(10).join(cards)}
</div></body></html>
"""
    path = out_dir / "index.html"
    write_text_atomic(path, page)
    return path


def below(items: list[QueueItem], threshold: float) -> list[QueueItem]:
    """Items to review: estimate below ``threshold`` or no estimate at all."""
    return [it for it in items if it.estimate is None or it.estimate < threshold]


def write_trusted(items: list[QueueItem], pseudo_dir: Path, out_dir: Path, threshold: float) -> Path:
    """Copy the label PNGs of images at or above ``threshold`` to ``out_dir/trusted/labels`` (fresh each run)."""
    dest = out_dir / "trusted" / "labels"
    if dest.is_dir():
        shutil.rmtree(dest)  # a stale copy could keep a label a new threshold excludes
    dest.mkdir(parents=True)
    flagged = {it.image for it in below(items, threshold)}
    for it in items:
        if it.image not in flagged and it.label and (pseudo_dir / it.label).is_file():
            shutil.copy2(pseudo_dir / it.label, dest / Path(it.label).name)
    return dest


def build_review(pseudo_dir: str | Path, out_dir: str | Path | None = None, threshold: float | None = None,
                 trusted: bool = False, images_dir: str | Path | None = None, size: int = 200) -> dict:
    """Write the queue (CSV + HTML, and with ``threshold`` needs_review.txt / trusted labels); returns a summary."""
    pseudo_dir = Path(pseudo_dir)
    out = Path(out_dir) if out_dir else pseudo_dir / "review"
    items = load_queue(pseudo_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(items, out / "queue.csv")
    html_path = write_contact_sheet(items, pseudo_dir, out, images_dir, threshold, size)
    summary: dict = {"images": len(items), "csv": str(out / "queue.csv"), "html": str(html_path),
                     "without_estimate": sum(it.estimate is None for it in items)}
    if threshold is not None:
        flagged = below(items, threshold)
        write_text_atomic(out / "needs_review.txt", "".join(f"{it.image}\n" for it in flagged))
        summary |= {"needs_review": len(flagged), "needs_review_txt": str(out / "needs_review.txt")}
        if trusted:
            summary["trusted_labels"] = str(write_trusted(items, pseudo_dir, out, threshold))
    elif trusted:
        raise ValueError("trusted labels need a threshold")
    return summary
