"""Grad-CAM through a trained tiny classifier: maps in [0, 1] at image size."""
import copy

import numpy as np
import pytest

from wsss.cam import CAM_METHODS
from wsss.classifier import build_classifier
from wsss.data import build_dataset
from wsss.labels import LABEL_SOURCES
from wsss.record import Record, Resources
from wsss.utils.runtime import resolve_device


@pytest.mark.parametrize("method", ["GradCAM", "GradCAMPlusPlus", "XGradCAM", "LayerCAM"])
def test_gradcam_maps(tiny_run: tuple, method: str) -> None:
    cfg, work_dir, _ = tiny_run
    cfg = copy.deepcopy(cfg)
    ds = build_dataset(cfg.data, "train")
    res = Resources(cfg, ds.class_names, work_dir, resolve_device("cpu"))
    cfg.cam.gradcam.method = method
    stage = CAM_METHODS.build(cfg.cam, resources=res)
    rec = Record(ds.load(ds.ids[0]))
    rec.classes = rec.sample.labels
    cams = stage(rec)
    assert set(cams) == set(rec.classes)
    for cam in cams.values():
        assert cam.shape == rec.image.shape[:2] and cam.dtype == np.float32
        assert 0.0 <= cam.min() and cam.max() <= 1.0


def test_classifier_is_loaded_once_and_labels_predicted(tiny_run: tuple) -> None:
    cfg, work_dir, _ = tiny_run
    cfg = copy.deepcopy(cfg)
    cfg.labels.name = "classifier"
    ds = build_dataset(cfg.data, "train")
    res = Resources(cfg, ds.class_names, work_dir, resolve_device("cpu"))
    labels = LABEL_SOURCES.build(cfg.labels, resources=res)
    cam = CAM_METHODS.build(cfg.cam, resources=res)
    assert labels.classifier is cam.classifier
    classes, scores = labels(Record(ds.load(ds.ids[0])))
    assert classes and set(scores) == set(range(1, len(ds.class_names)))
    assert all(0.0 <= s <= 1.0 for s in scores.values())


def test_missing_classifier_checkpoint_is_explained(tiny_run: tuple, tmp_path) -> None:
    cfg, _, _ = tiny_run
    with pytest.raises(FileNotFoundError, match="train_classifier.py"):
        build_classifier(cfg, build_dataset(cfg.data, "train").class_names, tmp_path, resolve_device("cpu"))
