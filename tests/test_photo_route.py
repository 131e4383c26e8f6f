"""The photo route (configs/photos.yaml): union boxes, the object class, class probabilities of
ImageNet groups, mirrored CAMs, low-confidence flags, plain photo folders and merged classes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from torch import nn

from wsss.boxes import CamComponentBoxes, CamComponentParams
from wsss.cam.gradcam import GradCamParams, GradCamStage, fuse_max
from wsss.classifier.model import Classifier
from wsss.data.base import Sample
from wsss.data.folder import FolderDataset
from wsss.record import Record, Resources
from wsss.utils.io import read_label_png

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO / "configs" / "photos.yaml"


def two_blob_cam() -> np.ndarray:
    """A body and an ear whose CAM dips below 0.5 between them (two components at t = 0.5)."""
    cam = np.zeros((60, 80), np.float32)
    cam[20:50, 10:40] = 1.0  # body
    cam[5:12, 50:58] = 0.7  # ear, cut off from the body below t
    return cam


@pytest.mark.parametrize("mode, expected", [
    ("union", [(10, 5, 58, 50)]),
    ("components", [(10, 20, 40, 50), (50, 5, 58, 12)]),
])
def test_box_modes(mode: str, expected: list[tuple[int, int, int, int]]) -> None:
    rec = Record(Sample("a", np.zeros((60, 80, 3), np.uint8)), classes=[1], cams={1: two_blob_cam()})
    boxes = CamComponentBoxes(CamComponentParams(threshold=0.5, mode=mode, min_area=0.0), None)(rec)
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == expected


def test_box_mode_is_validated() -> None:
    with pytest.raises(ValueError, match="union"):
        CamComponentParams(mode="all")


class ColourNet(nn.Module):
    """Logit k = mean of colour channel k (R, G, B) through a 1x1 conv 'head' layer: a CAM of output k
    marks where channel k is bright, so every target is checkable by eye."""

    def __init__(self) -> None:
        super().__init__()
        self.conv_head = nn.Conv2d(3, 3, 1, bias=False)
        with torch.no_grad():
            self.conv_head.weight.copy_(torch.eye(3).view(3, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_head(x).mean((2, 3)) * 10.0


def colour_classifier(groups: dict[int, list[int]], multilabel: bool = False, objects: tuple[int, ...] = (),
                      top_k: int = 2) -> Classifier:
    return Classifier(ColourNet(), 32, (0.0,) * 3, (1.0,) * 3, groups, "conv_head", multilabel, torch.device("cpu"),
                      object_classes=objects, object_top_k=top_k)


def red_green_image() -> np.ndarray:
    """Red square top-left (bright, wins top-1), a dimmer green square bottom-right."""
    image = np.zeros((32, 32, 3), np.uint8)
    image[2:12, 2:12, 0] = 255
    image[20:30, 20:30, 1] = 200
    return image


def test_class_probability_sums_a_softmax_group_and_maxes_sigmoids() -> None:
    image = red_green_image()
    soft = colour_classifier({1: [0, 1], 2: [2]})
    p = soft.output_probabilities([image])[0]
    assert p.sum().item() == pytest.approx(1.0, abs=1e-5)
    assert soft.predict([image])[0][1] == pytest.approx(float(p[0] + p[1]), abs=1e-6)  # P(group) = sum
    sig = colour_classifier({1: [0, 1], 2: [2]}, multilabel=True)
    q = sig.output_probabilities([image])[0]
    assert sig.predict([image])[0][1] == pytest.approx(float(max(q[0], q[1])), abs=1e-6)


@pytest.mark.parametrize("top_k", [1, 2])
def test_object_class_cam_covers_its_top_k_outputs(top_k: int) -> None:
    clf = colour_classifier({1: [0, 1, 2]}, objects=(1,), top_k=top_k)
    res = Resources(None, ["background", "object"], "/tmp", torch.device("cpu"))
    res.get("classifier", lambda: clf)
    stage = GradCamStage(GradCamParams(), res)
    rec = Record(Sample("a", red_green_image()), classes=[1])
    cam = stage(rec)[1]
    red, green = cam[2:12, 2:12].mean(), cam[20:30, 20:30].mean()
    assert red > 0.8  # the top-1 output (red) is always marked
    assert (green > 0.5) == (top_k == 2)  # the second output only when the object class takes the top 2
    assert cam[14:18, :].mean() < 0.2  # the empty band between them is not


def test_object_probability_is_the_top_k_mass() -> None:
    clf = colour_classifier({1: [0, 1, 2]}, objects=(1,), top_k=2)
    p = clf.output_probabilities([red_green_image()])[0]
    assert clf.predict([red_green_image()])[0][1] == pytest.approx(float(p.topk(2).values.sum()), abs=1e-6)


def test_fuse_max_scales_each_map_to_one() -> None:
    a, b = np.array([[0.0, 0.5]]), np.array([[0.2, 0.1]])
    assert np.allclose(fuse_max([a, b]), [[1.0, 1.0]])


def test_mirrored_cam_stays_in_place() -> None:
    """hflip averages with the mirrored image's CAM mirrored back: an off-centre object stays where it is."""
    clf = colour_classifier({1: [0]})
    res = Resources(None, ["background", "red"], "/tmp", torch.device("cpu"))
    res.get("classifier", lambda: clf)
    image = np.zeros((32, 32, 3), np.uint8)
    image[8:20, 2:10, 0] = 255  # left side only
    plain = GradCamStage(GradCamParams(), res)(Record(Sample("a", image), classes=[1]))[1]
    mirrored = GradCamStage(GradCamParams(hflip=True), res)(Record(Sample("a", image), classes=[1]))[1]
    assert mirrored[8:20, 2:10].mean() > 0.8 and mirrored[:, 20:].max() < 0.2
    assert np.abs(mirrored - plain).max() < 0.1  # a symmetric network: the same map


def test_folder_of_plain_photos_and_merged_classes(tmp_path: Path) -> None:
    (tmp_path / "flat").mkdir()
    cv2.imwrite(str(tmp_path / "flat" / "p1.jpg"), np.full((20, 30, 3), 90, np.uint8))
    flat = FolderDataset(tmp_path / "flat", "all", class_names=["background", "object"])
    assert flat.ids == ["p1"] and flat.load("p1").image.shape == (20, 30, 3)

    root = tmp_path / "multi"
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    (root / "classes.txt").write_text("background\ncat\ndog\nbus\n")
    (root / "labels.json").write_text(json.dumps({"a": ["dog", "bus"]}))
    cv2.imwrite(str(root / "images" / "a.png"), np.zeros((8, 8, 3), np.uint8))
    mask = np.zeros((8, 8), np.uint8)
    mask[0, 0], mask[1, 1], mask[2, 2], mask[3, 3] = 1, 2, 3, 255
    cv2.imwrite(str(root / "masks" / "a.png"), mask)
    merged = FolderDataset(root, "all", ["background", "object"], merge_classes=True)
    s = merged.load("a")
    assert merged.class_names == ["background", "object"]
    assert s.labels == [1]
    assert s.mask[0, 0] == s.mask[1, 1] == s.mask[2, 2] == 1 and s.mask[3, 3] == 255 and s.mask[4, 4] == 0
    assert np.array_equal(merged.gt("a"), s.mask)
    plain = FolderDataset(root, "all")
    assert plain.load("a").labels == [2, 3] and plain.load("a").mask[2, 2] == 3


def test_imagenet_classifier_maps_words_and_falls_back_to_object() -> None:
    from wsss.classifier import imagenet_class_groups
    from wsss.classifier.imagenet_names import imagenet_class_names

    names = imagenet_class_names()
    groups, objects = imagenet_class_groups(["background", "cat", "object"], {})
    assert {"tabby", "Persian cat", "Egyptian cat"} <= {names[i] for i in groups[1]}
    assert groups[2] == list(range(1000)) and objects == (2,)
    with pytest.raises(ValueError, match="classifier.imagenet_lite0: class 'xyzzy' matches no ImageNet category"):
        imagenet_class_groups(["background", "xyzzy"], {})
    groups, objects = imagenet_class_groups(["background", "xyzzy"], {}, unmapped="object")
    assert groups[1] == list(range(1000)) and objects == (1,)


def write_photos(folder: Path, n: int = 3) -> None:
    """Small 'photos': a bright textured disc on a dark cluttered background."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        image = rng.integers(0, 60, (96, 128, 3), dtype=np.uint8)
        cv2.circle(image, (40 + 20 * i, 50), 25, (40, 180, 230), -1)
        image[::4] //= 2
        cv2.imwrite(str(folder / f"photo{i}.jpg"), image)


def test_photos_route_labels_a_plain_folder_and_flags_low_confidence(tmp_path: Path) -> None:
    """One documented command on a folder of unlabelled photos, with the bundled ImageNet model."""
    write_photos(tmp_path / "photos")
    work = tmp_path / "work"
    cmd = [sys.executable, str(REPO / "tools" / "gen_pseudo.py"), str(PHOTOS), "--work-dir", str(work), "--no-eval",
           "--set", f"data.folder.root={tmp_path / 'photos'}", "device=cpu", "labels.classifier.min_confidence=1.01"]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", **_env()})
    assert run.returncode == 0, run.stderr[-2000:]
    lines = [json.loads(line) for line in (work / "pseudo" / "manifest.jsonl").read_text().splitlines()]
    assert [r["image"] for r in lines] == ["photo0", "photo1", "photo2"]
    assert {r["status"] for r in lines} == {"low_confidence"}  # min_confidence above any probability
    assert all(r["extras"]["low_confidence"]["best"] < 1.01 for r in lines)
    assert "3 labelled with low classifier confidence" in run.stdout
    for r in lines:
        label = read_label_png(work / "pseudo" / r["label"])
        assert label.shape == (96, 128) and set(np.unique(label)) <= {0, 1, 255}
    assert any((read_label_png(work / "pseudo" / r["label"]) == 1).any() for r in lines)
    again = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env={"OMP_NUM_THREADS": "1", **_env()})
    assert again.returncode == 0 and "3 images labelled, 0 failed" in again.stdout  # low_confidence counts as done
    assert len((work / "pseudo" / "manifest.jsonl").read_text().splitlines()) == 3


def _env() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}


def test_demo_photo_mode_runs_the_photo_route(tmp_path: Path) -> None:
    """The demo on configs/photos.yaml: the data set's 'object' class, the route's union boxes and refiner."""
    from wsss.app.engine import DemoEngine
    from wsss.config import load_config

    write_photos(tmp_path / "photos", n=2)
    cfg = load_config(PHOTOS, [f"data.folder.root={tmp_path / 'photos'}", "device=cpu"])
    eng = DemoEngine(cfg, tmp_path / "work", max_side=128)
    try:
        assert eng.class_names == ["background", "object"] and list(eng.datasets) == ["all"]
        p = eng.default_params()
        assert p.mask_model == cfg.masks.name and p.box_threshold == cfg.boxes.cam_components.threshold
        res = eng.run(eng.load_sample("all", "photo0"), p)
        assert res.target_name == "object" and res.mask.any() and not res.mask.all()
        assert "boxes at CAM >= 0.50" in "\n".join(res.log)
    finally:
        eng.close()
