"""benchmarks/bench_quality.py: its scoring helpers, and a run on a tiny real-layout set it is pointed at."""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "benchmarks" / "bench_quality.py"


def bench_module():
    spec = importlib.util.spec_from_file_location("bench_quality", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_fg_iou_leaves_out_ignore_and_merges_classes() -> None:
    fg_iou = bench_module().fg_iou
    gt = np.array([[0, 1, 2, 255]], np.uint8)
    assert fg_iou(np.array([[0, 1, 1, 1]], np.uint8), gt) == pytest.approx(1.0)  # 255 of the mask left out
    assert fg_iou(np.array([[1, 1, 0, 0]], np.uint8), gt) == pytest.approx(1 / 3)
    assert fg_iou(np.array([[0, 255, 255, 0]], np.uint8), gt) == 0.0  # a predicted 255 is not foreground
    assert fg_iou(np.zeros((1, 4), np.uint8), np.zeros((1, 4), np.uint8)) == 1.0


def test_dev_and_held_halves_are_fixed_and_disjoint() -> None:
    halves = bench_module().dev_held(["d", "a", "c", "b", "e"])
    assert halves["dev"] == {"a", "c", "e"} and halves["held"] == {"b", "d"}
    assert halves["all"] == halves["dev"] | halves["held"]


def make_set(root: Path, n: int = 2) -> None:
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncat\nbus\n")
    labels = {}
    for i in range(n):
        image = np.full((72, 96, 3), 40, np.uint8)
        mask = np.zeros((72, 96), np.uint8)
        cv2.circle(image, (30 + 20 * i, 36), 18, (220, 160, 60), -1)
        cv2.circle(mask, (30 + 20 * i, 36), 18, 1 + i % 2, -1)
        cv2.imwrite(str(root / "images" / f"im{i}.jpg"), image)
        cv2.imwrite(str(root / "masks" / f"im{i}.png"), mask)
        labels[f"im{i}"] = ["cat" if i % 2 == 0 else "bus"]
    (root / "labels.json").write_text(json.dumps(labels))


def test_benchmark_runs_both_settings_on_a_real_layout_set(tmp_path: Path) -> None:
    make_set(tmp_path / "data" / "tiny")
    out = tmp_path / "out"
    cmd = [sys.executable, str(SCRIPT), "--data", str(tmp_path / "data"), "--synthetic", "0", "--methods",
           "baseline,cam_threshold", "--grid", "1", "--out", str(out), "--set", "device=cpu"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr[-2000:]
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"tiny object", "tiny classes"}
    for setting in results.values():
        assert setting["images"] == 2 and set(setting["methods"]) == {"baseline", "cam_threshold"}
        for row in setting["methods"].values():
            assert 0.0 <= row["all"]["fg_iou"] <= 1.0 and set(row["per_image_fg_iou"]) == {"im0", "im1"}
            assert row["dev"]["fg_iou"] == pytest.approx(row["per_image_fg_iou"]["im0"])
    assert results["tiny classes"]["num_classes"] == 3 and results["tiny object"]["num_classes"] == 2
    assert (out / "grid_tiny_object.jpg").is_file() and "| cam_threshold |" in (out / "results.md").read_text()
    bad = subprocess.run(cmd[:2] + ["--data", str(tmp_path / "data"), "--sets", "nope"], capture_output=True, text=True)
    assert bad.returncode != 0 and "'nope'" in bad.stderr and "tiny" in bad.stderr
