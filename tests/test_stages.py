"""Each stage on tiny inputs the tests make."""
from pathlib import Path

import cv2
import numpy as np
import pytest

from wsss.boxes import cam_component_boxes
from wsss.data import FolderDataset, build_dataset
from wsss.data.base import Box, Sample
from wsss.data.synthetic import CLASS_NAMES, SyntheticParams, make_image
from wsss.masks import cam_to_grabcut_mask, compose_label_map, variant_thresholds
from wsss.masks.grabcut_cam import GrabCutCam, GrabCutCamParams
from wsss.record import Record
from wsss.utils.io import read_label_png, write_image, write_label_png


def test_synthetic_is_deterministic_and_labelled() -> None:
    a = make_image(np.random.default_rng(5), 64, 3)
    b = make_image(np.random.default_rng(5), 64, 3)
    c = make_image(np.random.default_rng(6), 64, 3)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    assert not np.array_equal(a[0], c[0])
    assert set(np.unique(a[1])) <= set(range(len(CLASS_NAMES)))


def test_synthetic_dataset_splits_and_labels(tmp_path: Path) -> None:
    import dataclasses

    from wsss.schema import DataSection

    params = SyntheticParams(root=str(tmp_path / "syn"), num_train=6, num_val=3, size=48, seed=1)
    section = DataSection(name="synthetic", synthetic=params)
    train, val = build_dataset(section, "train"), build_dataset(section, "val")
    assert len(train.ids) == 6 and len(val.ids) == 3 and not set(train.ids) & set(val.ids)
    for image_id in train.ids:
        s = train.load(image_id)
        assert s.image.shape == (48, 48, 3) and s.mask.shape == (48, 48)
        assert s.labels == sorted(int(c) for c in np.unique(s.mask) if c > 0)
    # a second build with the same params reuses the files; other params regenerate
    stamp = (tmp_path / "syn" / "meta.json").stat().st_mtime_ns
    build_dataset(section, "train")
    assert (tmp_path / "syn" / "meta.json").stat().st_mtime_ns == stamp
    build_dataset(DataSection(name="synthetic", synthetic=dataclasses.replace(params, seed=2)), "train")
    assert (tmp_path / "syn" / "meta.json").stat().st_mtime_ns != stamp


def test_folder_reader_without_masks_and_missing_parts(tmp_path: Path) -> None:
    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "a.png", np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(FileNotFoundError, match="classes.txt"):
        FolderDataset(tmp_path, "train")
    ds = FolderDataset(tmp_path, "train", class_names=["background", "thing"])
    s = ds.load("a")
    assert s.mask is None and s.labels is None
    with pytest.raises(FileNotFoundError, match="missing 'images/'"):
        FolderDataset(tmp_path / "nowhere", "train", class_names=["background", "x"])


def test_label_png_roundtrip_is_palette(tmp_path: Path) -> None:
    from PIL import Image

    label = np.array([[0, 1], [255, 20]], np.uint8)
    write_label_png(tmp_path / "l.png", label)
    assert Image.open(tmp_path / "l.png").mode == "P"
    np.testing.assert_array_equal(read_label_png(tmp_path / "l.png"), label)
    assert not list(tmp_path.glob(".*tmp*"))  # no temp file left behind


def test_cam_component_boxes_one_per_component() -> None:
    cam = np.zeros((40, 40), np.float32)
    cam[2:10, 3:12] = 0.9
    cam[20:35, 25:30] = 0.7
    cam[38, 38] = 0.95  # a single pixel: below min_area
    boxes = cam_component_boxes(cam, cls=2, threshold=0.5, min_area=0.005, max_boxes=10)
    assert [(b.x0, b.y0, b.x1, b.y1) for b in boxes] == [(3, 2, 12, 10), (25, 20, 30, 35)]
    assert all(b.cls == 2 for b in boxes) and boxes[0].score == pytest.approx(0.9)


@pytest.mark.parametrize("variant,t,expected", [
    ("PF-PB", 0.3, (0.0, 0.3, 1.0)), ("F-PF", 0.6, (0.0, 0.01, 0.6)), ("F-PB", 0.2, (0.0, 0.2, 0.21))])
def test_variant_thresholds_follow_paper_001(variant: str, t: float, expected: tuple) -> None:
    assert variant_thresholds(variant, t, 0.01) == pytest.approx(expected)


def test_cam_digitised_into_quaternary_mask() -> None:
    cam = np.array([0.05, 0.25, 0.5, 0.95])
    np.testing.assert_array_equal(cam_to_grabcut_mask(cam, 0.1, 0.3, 0.9),
                                  [cv2.GC_BGD, cv2.GC_PR_BGD, cv2.GC_PR_FGD, cv2.GC_FGD])


def test_compose_label_map_overlaps() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    conf = {1: np.full((4, 4), 0.4), 2: np.full((4, 4), 0.8)}
    by_score = compose_label_map((4, 4), {1: a, 2: b}, conf, "score")
    assert (by_score[0] == 1).all() and (by_score[1] == 2).all() and (by_score[3] == 0).all()
    ignored = compose_label_map((4, 4), {1: a, 2: b}, conf, "ignore")
    assert (ignored[1] == 255).all() and (ignored[2] == 2).all()


def _blob_scene(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A red disc on a textured grey background, and a blurry, offset CAM of it."""
    rng = np.random.default_rng(seed)
    img = rng.integers(90, 150, (64, 64, 3)).astype(np.uint8)
    gt = np.zeros((64, 64), np.uint8)
    cv2.circle(gt, (30, 32), 14, 1, -1)
    img[gt == 1] = (200, 30, 40)
    cam = cv2.GaussianBlur(np.roll(gt.astype(np.float32), 4, axis=1), (0, 0), 7)
    return img, gt, cam / cam.max()


@pytest.mark.parametrize("scope", ["box", "image"])
def test_grabcut_cam_beats_cam_threshold_on_colour_object(scope: str) -> None:
    img, gt, cam = _blob_scene()
    rec = Record(Sample("x", img), classes=[1], cams={1: cam})
    rec.boxes = cam_component_boxes(cam, 1, 0.3, 0.0, 5)
    label = GrabCutCam(GrabCutCamParams(t=0.3, scope=scope, iterations=3), None)(rec)
    iou = lambda p: ((p == 1) & (gt == 1)).sum() / ((p == 1) | (gt == 1)).sum()  # noqa: E731
    assert iou(label) > iou((cam >= 0.3).astype(np.uint8)) + 0.05
    assert iou(label) > 0.8


def test_grabcut_outside_box_is_background() -> None:
    img, gt, cam = _blob_scene()
    rec = Record(Sample("x", img), classes=[1], cams={1: np.ones_like(cam)}, boxes=[Box(1, 10, 10, 40, 40)])
    label = GrabCutCam(GrabCutCamParams(t=0.3, scope="box", margin=0.2), None)(rec)
    assert label[:10].max() == 0 and label[:, 40:].max() == 0


def test_compose_label_map_rejects_class_indices_beyond_254() -> None:
    m = np.ones((2, 2), bool)
    with pytest.raises(ValueError, match="does not fit a label map"):
        compose_label_map((2, 2), {300: m}, {300: np.ones((2, 2))})
