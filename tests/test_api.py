"""The 5-line Python API on the photo route (the bundled ImageNet Lite0: real weights, no training)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import wsss
from wsss.utils.io import read_label_png, write_label_png


def _photo(seed: int, size: int = 96) -> np.ndarray:
    """A bright disk on a noisy darker background: something for GrabCut to find."""
    rng = np.random.default_rng(seed)
    img = rng.integers(20, 90, (size, size, 3), dtype=np.uint8)
    yy, xx = np.mgrid[:size, :size]
    disk = (yy - size / 2 - 5 * seed) ** 2 + (xx - size / 2) ** 2 < (size / 4) ** 2
    img[disk] = rng.integers(180, 255, (int(disk.sum()), 3), dtype=np.uint8)
    return img


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for i in range(2):
        Image.fromarray(_photo(i)).save(folder / f"p{i}.png")
    return folder


@pytest.fixture(scope="module")
def labeler(tmp_path_factory: pytest.TempPathFactory) -> wsss.Labeler:
    return wsss.Labeler.from_config("photos", work_dir=tmp_path_factory.mktemp("work"), device="cpu",
                                    **{"pseudo.overlays": 0})


def test_a_result_describes_its_label_map(labeler: wsss.Labeler, photos: Path) -> None:
    image = _photo(0)
    result = labeler(image)
    assert result.label_map.shape == image.shape[:2] and result.label_map.dtype == np.uint8
    assert result.class_names == ["background", "object"] and set(result.classes) <= {"object"}
    present = {result.class_names[c] for c in np.unique(result.label_map) if 0 < c < 255}
    assert present <= set(result.classes)
    for name, mask in result.masks().items():
        np.testing.assert_array_equal(mask, result.label_map == result.class_names.index(name))
    assert result.overlay().shape == image.shape
    assert all(name in result.classes for name, _, _ in result.boxes)
    np.testing.assert_array_equal(labeler(photos / "p0.png").label_map, result.label_map)  # a path works too


def test_the_batch_run_writes_what_a_single_call_gives_and_resumes(labeler: wsss.Labeler, photos: Path,
                                                                   tmp_path: Path) -> None:
    out = tmp_path / "out"
    manifest = labeler.run(photos, out)
    assert sorted(manifest) == ["p0", "p1"] and all(r["status"] in ("ok", "low_confidence") for r in manifest.values())
    for image_id in manifest:
        single = labeler(photos / f"{image_id}.png")
        np.testing.assert_array_equal(read_label_png(out / "labels" / f"{image_id}.png"), single.label_map)
    stamp = (out / "labels" / "p0.png").stat().st_mtime_ns
    assert labeler.run(photos, out) == manifest  # finished images are skipped
    assert (out / "labels" / "p0.png").stat().st_mtime_ns == stamp
    from pycocotools.coco import COCO

    counts = wsss.export(out, "coco_rle")  # class names come from the run's stage_config.yaml
    coco = COCO(counts["out"])
    assert [c["name"] for c in coco.loadCats(coco.getCatIds())] == ["object"] and len(coco.getImgIds()) == 2


def test_classes_and_overrides_reach_the_config(tmp_path: Path) -> None:
    lab = wsss.Labeler.from_config("photos", classes=["cat", "dog"], work_dir=tmp_path, device="cpu",
                                   **{"masks.name": "cam_threshold", "labels.classifier.top_k": 1})
    assert lab.class_names == ["background", "cat", "dog"]
    assert lab.cfg.masks.name == "cam_threshold" and lab.cfg.labels.classifier.top_k == 1
    with pytest.raises(FileNotFoundError, match="no_such_preset"):
        wsss.Labeler.from_config("no_such_preset")


def test_evaluate_scores_label_folders(tmp_path: Path) -> None:
    gt, pred = np.zeros((10, 10), np.uint8), np.zeros((10, 10), np.uint8)
    gt[:5] = 1
    gt[9, 9] = 255  # ignored
    pred[:4] = 1  # 40 of class 1's 50 pixels; background: 50 right of 60 claimed
    for folder, m in (("gt", gt), ("pred", pred)):
        write_label_png(tmp_path / folder / "a.png", m)
    metrics = wsss.evaluate(tmp_path / "pred", tmp_path / "gt", classes=["background", "thing"])
    iou_bg, iou_fg = 49 / 59, 40 / 50
    assert metrics["mIoU"] == pytest.approx((iou_bg + iou_fg) / 2, abs=1e-6)
