"""Stage one for a data set: labels -> cam -> boxes -> masks per image, written to disk.

Outputs under ``out_dir``: ``labels/<id>.png`` (VOC palette, 255 = ignore), ``manifest.jsonl``
and ``overlays/<id>.jpg`` for the first few images. Finished images are skipped on a rerun, so an
interrupted run resumes where it stopped.
"""
from __future__ import annotations

import traceback
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import yaml
from tqdm import tqdm

from wsss.boxes import BOX_SOURCES
from wsss.cam import CAM_METHODS
from wsss.config import to_dict
from wsss.data import SegDataset
from wsss.labels import LABEL_SOURCES
from wsss.masks import REFINERS
from wsss.pseudo.manifest import ManifestWriter, compact, is_labelled, read_manifest
from wsss.record import Record, Resources
from wsss.utils.io import write_image, write_label_png, write_text_atomic
from wsss.utils.runtime import seed_everything, timed
from wsss.viz import draw_boxes, heatmap, overlay, panel

STAGE_KEYS = ("classifier", "labels", "cam", "boxes", "masks")


class PseudoLabeler:
    """Builds each stage once (models load once per process) and runs them image by image."""

    def __init__(self, cfg: Any, resources: Resources) -> None:
        self.cfg = cfg
        self.resources = resources
        self.labels = LABEL_SOURCES.build(cfg.labels, resources=resources)
        self.cam = CAM_METHODS.build(cfg.cam, resources=resources)
        self.boxes = BOX_SOURCES.build(cfg.boxes, resources=resources)
        self.refiner = REFINERS.build(cfg.masks, resources=resources)

    def process(self, rec: Record) -> Record:
        with timed(rec.timings, "labels"):
            rec.classes, rec.scores = self.labels(rec)
        with timed(rec.timings, "cam"):
            rec.cams = self.cam(rec)
        with timed(rec.timings, "boxes"):
            rec.boxes = self.boxes(rec)
        with timed(rec.timings, "masks"):
            rec.label_map = self.refiner(rec)
        return rec


def stage_config(cfg: Any) -> dict:
    return {k: to_dict(getattr(cfg, k)) for k in STAGE_KEYS}


def _check_same_config(out_dir: Path, cfg: Any, overwrite: bool) -> None:
    """Refuse to mix results of two configs in one output folder."""
    path = out_dir / "stage_config.yaml"
    current = stage_config(cfg)
    if path.is_file() and not overwrite:
        previous = yaml.safe_load(path.read_text())
        if previous != current:
            changed = [k for k in STAGE_KEYS if previous.get(k) != current.get(k)]
            raise RuntimeError(f"{out_dir} holds pseudo-labels made with a different {', '.join(changed)} config; "
                               "use another --work-dir, or --set pseudo.overwrite=true to redo them")
    write_text_atomic(path, yaml.safe_dump(current, sort_keys=False))


def write_overlay(path: Path, rec: Record, class_names: list[str], cam_name: str = "CAM", boxes: bool = True) -> None:
    """image | the CAM the refiner saw | its boxes (when the pipeline has a boxes stage) | pseudo-label | truth."""
    image = rec.image
    cam = np.max(np.stack(list(rec.cams.values())), 0) if rec.cams else np.zeros(image.shape[:2], np.float32)
    tiles, titles = [image], ["image"]
    if rec.cams:
        tiles.append(heatmap(image, cam))
        titles.append(cam_name)
    if boxes:
        tiles.append(draw_boxes(image, rec.boxes))
        titles.append("boxes")
    tiles.append(overlay(image, rec.label_map))
    titles.append("pseudo-label")
    if rec.sample.mask is not None:
        tiles.append(overlay(image, rec.sample.mask))
        titles.append("ground truth")
    names = ",".join(class_names[c] for c in rec.classes)
    write_image(path, panel(tiles, [f"{titles[0]}: {names}"] + titles[1:]))


def generate_pseudo_labels(cfg: Any, dataset: SegDataset, resources: Resources, out_dir: str | Path,
                           ids: list[str] | None = None, desc: str = "pseudo-labels",
                           manifest_name: str = "manifest.jsonl") -> dict[str, dict]:
    """Run stage one over ``ids`` (default: the whole split); returns the manifest records.

    ``manifest_name`` lets each torchrun rank append to its own part (merged by rank 0 at the end).
    """
    out_dir = Path(out_dir)
    _check_same_config(out_dir, cfg, cfg.pseudo.overwrite)
    manifest_path = out_dir / manifest_name
    ids = list(dataset.ids if ids is None else ids)
    done = read_manifest(manifest_path)
    todo = [i for i in ids if cfg.pseudo.overwrite or not (is_labelled(done.get(i, {}))
                                                            and (out_dir / "labels" / f"{i}.png").is_file())]
    labeler = PseudoLabeler(cfg, resources)
    overlay_ids = set(ids[: cfg.pseudo.overlays])
    writer = ManifestWriter(manifest_path)
    try:
        for image_id in tqdm(todo, desc=desc, unit="img", initial=len(ids) - len(todo), total=len(ids)):
            record: dict[str, Any] = {"image": image_id}
            try:
                # seeded per image: the result does not depend on the order, a resume or the rank's shard
                seed_everything(cfg.seed + zlib.crc32(image_id.encode()) % 2**31)
                rec = Record(dataset.load(image_id))
                labeler.process(rec)
                write_label_png(out_dir / "labels" / f"{image_id}.png", rec.label_map)
                if image_id in overlay_ids:
                    write_overlay(out_dir / "overlays" / f"{image_id}.jpg", rec, dataset.class_names,
                                  "rCAM" if cfg.cam.name == "rcam" else f"CAM ({cfg.cam.gradcam.method})",
                                  cfg.boxes.name != "none")
                status = "low_confidence" if "low_confidence" in rec.extras else "ok"
                record |= {"status": status, "label": f"labels/{image_id}.png", "classes": rec.classes,
                           "scores": {str(c): round(s, 4) for c, s in rec.scores.items()},
                           "boxes": [[b.cls, *b.as_list(), round(b.score, 4)] for b in rec.boxes],
                           "timings": rec.timings, "error": None}
                if rec.extras:  # stage outputs such as the ROAD score of each CAM
                    record["extras"] = rec.extras
            except (KeyboardInterrupt, SystemExit):
                raise
            except Exception as e:  # a bad image is recorded and the run goes on
                record |= {"status": "error", "error": f"{type(e).__name__}: {e}",
                           "trace": traceback.format_exc(limit=3)}
                tqdm.write(f"skipped {image_id}: {record['error']}")
            writer.append(record)
    finally:
        writer.close()
    return compact(manifest_path, ids)
