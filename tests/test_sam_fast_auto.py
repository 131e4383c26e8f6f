"""The fast automatic-mask path (wsss.sam.fast_auto) against the libraries' generators, on tiny random models."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_sam_engine import FAMILIES, count_calls, make_record, resources_with
from wsss.masks import REFINERS
from wsss.sam.engine import AutoMaskParams, SamEngine

# no filtering and no NMS: both paths must return the very same masks
NO_FILTER = AutoMaskParams(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)


def coherent(model: torch.nn.Module, gain: float = 8.0) -> torch.nn.Module:
    """Random decoders paint salt-and-pepper masks whose boxes all span the image (NMS then keeps one mask).
    Averaging the transposed-conv kernels makes the upscaling a nearest-neighbour one (masks become unions
    of embedding cells, like real objects) and the gain gives logits of real magnitude."""
    dec = model.mask_decoder if hasattr(model, "mask_decoder") else model.sam_mask_decoder
    with torch.no_grad():
        for m in dec.output_upscaling.modules():
            if isinstance(m, torch.nn.ConvTranspose2d):
                m.weight.copy_(m.weight.mean((2, 3), keepdim=True).expand_as(m.weight))
        for mlp in dec.output_hypernetworks_mlps:
            mlp.layers[-1].weight.mul_(gain)
    return model


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def engine(request: pytest.FixtureRequest) -> SamEngine:
    build, _ = FAMILIES[request.param]
    return SamEngine(coherent(build()), request.param)


def both(engine: SamEngine, p: AutoMaskParams, seed: int = 1) -> tuple[list[dict], list[dict]]:
    rec = make_record(seed)
    return (engine.auto_masks(rec, dataclasses.replace(p, engine="fast")),
            engine.auto_masks(rec, dataclasses.replace(p, engine="library")))


def matched(a: list[dict], b: list[dict], min_iou: float = 0.9) -> float:
    """Fraction of the masks in ``a`` that have a mask in ``b`` with IoU >= ``min_iou`` (two empty masks match)."""
    if not a or not b:
        return float(len(a) == len(b))
    fa = np.stack([r["segmentation"] for r in a]).reshape(len(a), -1)
    fb = np.stack([r["segmentation"] for r in b]).reshape(len(b), -1)
    inter = fa.astype(np.float32) @ fb.T.astype(np.float32)
    union = fa.sum(1)[:, None] + fb.sum(1)[None] - inter
    iou = np.where(union == 0, 1.0, inter / np.maximum(union, 1))
    return float((iou.max(1) >= min_iou).mean())


def test_unfiltered_masks_identical_to_library(engine: SamEngine) -> None:
    fast, lib = both(engine, NO_FILTER)
    assert len(fast) == len(lib) == 8 * 8 * 3
    key = lambda r: (-r["predicted_iou"], r["segmentation"].tobytes())  # noqa: E731 (same order on ties)
    for f, g in zip(sorted(fast, key=key), sorted(lib, key=key)):
        assert np.array_equal(f["segmentation"], g["segmentation"])  # survivors upsampled as the library does
        assert f["segmentation"].shape == (48, 64) and f["segmentation"].dtype == bool
        assert f["area"] == g["area"] and f["bbox"] == g["bbox"]
        assert f["predicted_iou"] == pytest.approx(g["predicted_iou"], abs=1e-5)


def test_predicted_iou_filter_identical(engine: SamEngine) -> None:
    _, lib = both(engine, NO_FILTER)
    thresh = float(np.median([r["predicted_iou"] for r in lib]))
    fast, lib = both(engine, dataclasses.replace(NO_FILTER, pred_iou_thresh=thresh))
    assert 0 < len(fast) == len(lib) < 8 * 8 * 3
    assert matched(fast, lib, 1.0) == matched(lib, fast, 1.0) == 1.0


@pytest.mark.parametrize("nms", [0.5, 0.7, 0.9])
def test_nms_on_low_res_boxes_agrees(engine: SamEngine, nms: float) -> None:
    """Low-res boxes are up to one low-res pixel (here 2 image px) coarser, so a pair whose box IoU sits at the
    threshold may go either way: allow one mask in ten to differ."""
    fast, lib = both(engine, dataclasses.replace(NO_FILTER, box_nms_thresh=nms))
    assert len(lib) > 3  # the coherent model leaves several masks after NMS
    assert abs(len(fast) - len(lib)) <= max(1, len(lib) // 10)
    assert matched(fast, lib) >= 0.9 and matched(lib, fast) >= 0.9
    assert np.array_equal(fast[0]["segmentation"], lib[0]["segmentation"])  # the best-scoring mask is never suppressed


def test_low_res_stability_filter_agrees(engine: SamEngine) -> None:
    """Stability measured at low resolution differs a little near mask edges: masks near the threshold may flip."""
    p = dataclasses.replace(NO_FILTER, stability_score_offset=2.0)
    _, lib = both(engine, p)
    scores = np.array([r["stability_score"] for r in lib])
    thresh = float(np.median(scores[np.isfinite(scores)]))
    fast, lib = both(engine, dataclasses.replace(p, stability_score_thresh=thresh))
    assert len(lib) > 10
    assert abs(len(fast) - len(lib)) <= 0.2 * len(lib)
    assert matched(fast, lib) >= 0.8 and matched(lib, fast) >= 0.8
    stab = {r["segmentation"].tobytes(): r["stability_score"] for r in lib}
    common = [(r["stability_score"], stab[r["segmentation"].tobytes()]) for r in fast if r["segmentation"].tobytes() in stab]
    assert common and np.abs(np.subtract(*zip(*common))).max() < 0.15


@pytest.mark.parametrize("auto_engine", ["fast", "library"])
def test_cam_match_same_labels_and_one_encoder_pass(auto_engine: str, tmp_path: Path) -> None:
    """Paper 000's refiner: the same label map with both engines, and one encoder pass per image with either."""
    labels = {}
    for name, (build, _) in sorted(FAMILIES.items()):
        model = coherent(build())
        res, mp = resources_with(name, model, tmp_path)
        entry = REFINERS.get("sam_cam_match")
        auto = NO_FILTER  # the same candidate masks, so the label maps must be equal (NMS may differ: tests above)
        stages = {e: entry.builder(entry.params(model=mp, auto=dataclasses.replace(auto, engine=e), max_area=1.0,
                                                border_sides=0),
                                   resources=res) for e in ("fast", "library")}
        calls = count_calls(model.image_encoder)
        for seed in (2, 3):
            rec, before = make_record(seed), calls[0]
            labels[name, seed] = stages[auto_engine](rec)
            assert calls[0] == before + 1  # box prompts and automatic masks share one embedding
            assert any(m["auto_index"] >= 0 for m in rec.cache["sam_cam_match"])  # an automatic mask was chosen
            other = stages["library" if auto_engine == "fast" else "fast"](make_record(seed))
            assert np.array_equal(labels[name, seed], other)


def test_engine_key_is_validated() -> None:
    with pytest.raises(ValueError, match="auto.engine"):
        AutoMaskParams(engine="gpu")  # type: ignore[arg-type]
