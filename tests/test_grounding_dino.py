"""Grounding-DINO box source on a tiny random model of transformers' real class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.boxes import BOX_SOURCES
from wsss.boxes.grounding_dino import GroundingDinoParams
from wsss.data.base import Sample
from wsss.models.tiny import build_tiny_grounding_dino
from wsss.record import Record, Resources

NAMES = ["background", "cat", "dog"]


@pytest.fixture(scope="module")
def tiny() -> tuple:
    return build_tiny_grounding_dino(["cat", "dog"])


def source(tiny: tuple, tmp_path: Path, **kw: object):
    params = GroundingDinoParams(model=str(tmp_path / "unused"), **kw)
    res = Resources(None, NAMES, tmp_path, torch.device("cpu"))
    res.get(f"grounding_dino:{params.model}", lambda: tiny)
    return BOX_SOURCES.get("grounding_dino").builder(params, resources=res)


def record(classes: list[int]) -> Record:
    image = (np.random.default_rng(0).random((48, 64, 3)) * 255).astype(np.uint8)
    rec = Record(Sample("a", image))
    rec.classes = classes
    return rec


@pytest.mark.parametrize("classes", [[1], [1, 2]])
def test_boxes_inside_image_for_prompted_classes_only(tiny: tuple, tmp_path: Path, classes: list[int]) -> None:
    boxes = source(tiny, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=5)(record(classes))
    assert boxes, "thresholds of 0 keep every query"
    for b in boxes:
        assert b.cls in classes
        assert 0 <= b.x0 < b.x1 <= 64 and 0 <= b.y0 < b.y1 <= 48
    for c in classes:
        assert sum(b.cls == c for b in boxes) <= 5


def test_box_threshold_keeps_a_subset(tiny: tuple, tmp_path: Path) -> None:
    rec = record([1, 2])
    low = source(tiny, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100)(rec)
    cut = float(np.median([b.score for b in low]))
    high = source(tiny, tmp_path, box_threshold=cut, text_threshold=0.0, max_boxes_per_class=100)(rec)
    assert 0 < len(high) < len(low)
    assert all(b.score > cut for b in high)


def test_no_classes_no_boxes(tiny: tuple, tmp_path: Path) -> None:
    assert source(tiny, tmp_path)(record([])) == []


def test_missing_model_folder_is_named(tmp_path: Path) -> None:
    params = GroundingDinoParams(model=str(tmp_path / "gdino"))
    res = Resources(None, NAMES, tmp_path, torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="gdino"):
        BOX_SOURCES.get("grounding_dino").builder(params, resources=res)
