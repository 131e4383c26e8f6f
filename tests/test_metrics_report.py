"""tools/eval.py reports (JSON, CSV, plots) and the COCO export, on a miniature Kvasir-SEG."""
from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests._mini_layouts import make_kvasir, make_voc
from wsss.config import load_config
from wsss.data import build_dataset
from wsss.evaluation.report import evaluate_dir, write_report
from wsss.exporters import export
from wsss.pseudo.manifest import ManifestWriter
from wsss.utils.io import write_label_png

REPO = Path(__file__).resolve().parents[1]


def _config(tmp_path: Path, data: dict) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(yaml.safe_dump({"device": "cpu", "data": data}))
    return path


def _shifted_predictions(ds: object, pred_dir: Path, maps_dir: Path, shift: int = 3) -> None:
    """Ground truth moved right by ``shift`` px as labels, and a blurred-edge map as a continuous prediction."""
    for image_id in ds.ids:
        pred = np.roll(ds.gt(image_id), shift, axis=1)
        write_label_png(pred_dir / f"{image_id}.png", pred)
        np.save(maps_dir / f"{image_id}.npy", np.clip(0.8 * pred + 0.1, 0, 1))


def test_eval_tool_writes_json_csv_and_plots(tmp_path: Path) -> None:
    root = make_kvasir(tmp_path / "Kvasir-SEG")
    cfg_path = _config(tmp_path, {"name": "kvasir_seg", "split": "all", "kvasir_seg": {"root": str(root)}})
    ds = build_dataset(load_config(cfg_path).data, "all")
    pred_dir, maps_dir = tmp_path / "pred", tmp_path / "maps"
    maps_dir.mkdir()
    _shifted_predictions(ds, pred_dir, maps_dir)
    work = tmp_path / "work"
    cmd = [sys.executable, str(REPO / "tools" / "eval.py"), str(cfg_path), "--pred", str(pred_dir),
           "--maps", str(maps_dir), "--work-dir", str(work)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    report = json.loads((work / "eval.json").read_text())
    direct = evaluate_dir(pred_dir, ds, maps_dir=maps_dir)
    assert report["mIoU"] == pytest.approx(direct["mIoU"]) and 0.5 < report["mIoU"] < 1.0
    assert report["maps_fg"]["ODS"] == pytest.approx(direct["maps_fg"]["ODS"])
    # the map is 0.9 on the predicted object and 0.1 elsewhere: MAE = 0.1 + 0.8 * (shifted-away share)
    assert report["maps_fg"]["MAE"] > 0.1
    rows = list(csv.DictReader((work / "eval_per_class.csv").open()))
    assert [r["class"] for r in rows] == ["background", "polyp"]
    assert float(rows[1]["IoU"]) == pytest.approx(report["IoU"][1], abs=1e-5)
    assert float(rows[1]["Dice"]) == pytest.approx(report["Dice"][1], abs=1e-5)
    for name in ("iou_per_class.png", "confusion_matrix.png"):
        with Image.open(work / name) as im:
            assert im.format == "PNG" and min(im.size) > 100


def test_report_for_many_classes(tmp_path: Path) -> None:
    make_voc(tmp_path)
    ds = build_dataset(load_config(_config(tmp_path, {"name": "voc", "voc": {"root": str(tmp_path)}})).data, "train")
    pred_dir = tmp_path / "pred"
    for image_id in ds.ids:
        gt = ds.gt(image_id)
        write_label_png(pred_dir / f"{image_id}.png", np.where(gt == 255, 0, gt).astype(np.uint8))
    m = evaluate_dir(pred_dir, ds)
    assert m["mIoU"] == pytest.approx(1.0) and m["labels_fg"]["ODS"] == pytest.approx(1.0)
    paths = write_report(m, tmp_path / "report")
    assert len(list(csv.DictReader(paths["csv"].open()))) == 21


@pytest.mark.parametrize("per_component", [False, True])
def test_export_coco_round_trips_masks(tmp_path: Path, per_component: bool) -> None:
    from pycocotools.coco import COCO

    pseudo = tmp_path / "pseudo"
    labels = {}
    rng = np.random.default_rng(0)
    writer = ManifestWriter(pseudo / "manifest.jsonl")
    for i in range(3):
        label = np.zeros((24, 32), np.uint8)
        label[2:8, 2:10] = 1
        label[12:20, 20:30] = 1 + i % 2
        label[rng.random(label.shape) < 0.02] = 255
        labels[f"im{i}"] = label
        write_label_png(pseudo / "labels" / f"im{i}.png", label)
        writer.append({"image": f"im{i}", "status": "ok", "label": f"labels/im{i}.png"})
    writer.append({"image": "broken", "status": "error", "error": "ValueError: cannot read image"})
    writer.close()
    out = tmp_path / "coco.json"
    counts = export(pseudo, "coco_rle", out, ["background", "polyp", "tool"], {"im0": "a/im0.jpg"}, per_component)
    assert counts["images"] == 3 and counts["skipped"] == ["broken"]
    coco = COCO(str(out))
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["polyp", "tool"]
    assert coco.loadImgs(1)[0]["file_name"] == "a/im0.jpg"
    for img in coco.loadImgs(coco.getImgIds()):
        label = labels[img["wsss_id"]]
        anns = coco.loadAnns(coco.getAnnIds(imgIds=img["id"]))
        for c in (1, 2):
            union = np.zeros_like(label, bool)
            for a in anns:
                if a["category_id"] == c:
                    union |= coco.annToMask(a).astype(bool)
            np.testing.assert_array_equal(union, label == c)
        if per_component:
            assert sum(a["category_id"] == 1 for a in anns) == (2 if img["wsss_id"] != "im1" else 1)


def test_export_coco_tool(tmp_path: Path) -> None:
    root = make_kvasir(tmp_path / "Kvasir-SEG", n=3)
    cfg_path = _config(tmp_path, {"name": "kvasir_seg", "split": "all", "kvasir_seg": {"root": str(root)}})
    work = tmp_path / "work"
    writer = ManifestWriter(work / "pseudo" / "manifest.jsonl")
    for i in range(3):
        m = np.zeros((48, 56), np.uint8)
        m[10:20, 10:30] = 1
        write_label_png(work / "pseudo" / "labels" / f"cju{i:04d}.png", m)
        writer.append({"image": f"cju{i:04d}", "status": "ok", "label": f"labels/cju{i:04d}.png"})
    writer.close()
    cmd = [sys.executable, str(REPO / "tools" / "export_coco.py"), str(cfg_path), "--work-dir", str(work),
           "--relative-to", str(root)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
    data = json.loads((work / "pseudo" / "coco_pseudo.json").read_text())
    assert [i["file_name"] for i in data["images"]] == [f"images/cju{i:04d}.jpg" for i in range(3)]
    assert all(a["area"] == 200 and a["bbox"] == [10, 10, 20, 10] for a in data["annotations"])
