"""SAM / SAM 2 engine and refiners on tiny random models of the real classes."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.config import ConfigError, from_dict
from wsss.data.base import Box, Sample
from wsss.masks import REFINERS
from wsss.models.tiny import build_tiny_sam, build_tiny_sam2
from wsss.record import Record, Resources
from wsss.sam.adapters import ADAPTERS, SamAdapter, SegmentAnythingAdapter
from wsss.sam.engine import AutoMaskParams, SamEngine, SamModelParams, load_sam_model, sam_resource_key
from wsss.utils.io import IGNORE_INDEX

FAMILIES = {"sam": (build_tiny_sam, "vit_b"), "sam2": (build_tiny_sam2, "hiera_t")}
# random weights predict low IoUs: keep every mask so the automatic path is exercised
AUTO = AutoMaskParams(points_per_side=6, points_per_batch=64, pred_iou_thresh=0.0, stability_score_thresh=0.0)


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def family(request: pytest.FixtureRequest) -> tuple[str, torch.nn.Module]:
    build, _ = FAMILIES[request.param]
    return request.param, build()


def make_record(seed: int = 0, h: int = 48, w: int = 64) -> Record:
    rng = np.random.default_rng(seed)
    image = (rng.random((h, w, 3)) * 60 + 40).astype(np.uint8)
    image[12:36, 16:44] = (200, 80, 60)  # one bright object
    rec = Record(Sample(f"img{seed}", image))
    rec.classes = [1, 2]
    rec.boxes = [Box(1, 14, 10, 46, 38, 0.9), Box(2, 2, 2, 20, 20, 0.5)]
    return rec


def resources_with(family: str, model: torch.nn.Module, tmp_path: Path,
                   variant: str | None = None) -> tuple[Resources, SamModelParams]:
    variant = variant or FAMILIES[family][1]
    params = SamModelParams(family=family, variant=variant, checkpoint=str(tmp_path / "unused.pt"))
    res = Resources(None, ["background", "a", "b"], tmp_path, torch.device("cpu"))
    res.get(sam_resource_key(params), lambda: SamEngine(model, family, sam_resource_key(params)))
    return res, params


def count_calls(module: torch.nn.Module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


def decoder(model: torch.nn.Module) -> torch.nn.Module:
    return model.mask_decoder if hasattr(model, "mask_decoder") else model.sam_mask_decoder


@pytest.mark.parametrize("multimask", [True, False])
def test_box_masks_shapes_native_resolution_one_decoder_call(family, multimask: bool) -> None:
    name, model = family
    engine = SamEngine(model, name)
    rec = make_record()
    calls = count_calls(decoder(model))
    masks, ious = engine.box_masks(rec, np.array([b.as_list() for b in rec.boxes], np.float32), multimask)
    m = 3 if multimask else 1
    assert masks.shape == (2, m, 48, 64) and masks.dtype == bool
    assert ious.shape == (2, m)
    assert calls[0] == 1  # both boxes decoded in one batched call


def test_auto_masks_from_cached_embedding_equal_library_output(family) -> None:
    name, model = family
    engine = SamEngine(model, name)
    rec = make_record(1)
    lib = dataclasses.replace(AUTO, engine="library")  # the fast engine is tested in test_sam_fast_auto.py
    ours = engine.auto_masks(rec, lib)
    library = engine._generator(lib).generate(rec.image)  # the library's own path, encoding again
    assert len(ours) == len(library) > 0
    for a, b in zip(ours, library):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)


@pytest.mark.parametrize("refiner", ["sam_cam_match", "sam_box"])
def test_refiner_encodes_each_image_once(family, refiner: str, tmp_path: Path) -> None:
    name, model = family
    res, mp = resources_with(name, model, tmp_path)
    entry = REFINERS.get(refiner)
    stage = entry.builder(entry.params(model=mp, auto=AUTO), resources=res)
    calls = count_calls(model.image_encoder)
    for i, seed in enumerate([2, 3]):
        rec = make_record(seed)
        label = stage(rec)
        assert calls[0] == i + 1  # box prompts and automatic masks share one embedding
        assert label.shape == rec.image.shape[:2] and label.dtype == np.uint8
        assert set(np.unique(label)) <= {0, 1, 2, IGNORE_INDEX}


def test_plain_composition_encodes_twice() -> None:
    """The published composition (set_image + generate separately) runs the encoder twice per image."""
    from segment_anything import SamAutomaticMaskGenerator, SamPredictor

    model = build_tiny_sam()
    calls = count_calls(model.image_encoder)
    rec = make_record()
    predictor = SamPredictor(model)
    predictor.set_image(rec.image)
    predictor.predict(box=np.array(rec.boxes[0].as_list()), multimask_output=False)
    SamAutomaticMaskGenerator(model, **AUTO.library_kwargs()).generate(rec.image)
    assert calls[0] == 2


def test_cam_match_falls_back_to_box_mask(family, tmp_path: Path) -> None:
    name, model = family
    res, mp = resources_with(name, model, tmp_path)
    entry = REFINERS.get("sam_cam_match")
    rec = make_record(4)
    rec.boxes = rec.boxes[:1]
    never = entry.builder(entry.params(model=mp, auto=AUTO, min_iou=1.01), resources=res)
    label = never(rec)
    box_mask, _ = never.engine.box_masks(rec, np.array([rec.boxes[0].as_list()], np.float32), False)
    assert np.array_equal(label == 1, box_mask[0, 0])
    assert rec.cache["sam_cam_match"][0]["auto_index"] == -1
    always = entry.builder(entry.params(model=mp, auto=AUTO, min_iou=-1.0, max_area=1.0, border_sides=0,
                                        black_level=0), resources=res)
    label = always(rec)
    match = rec.cache["sam_cam_match"][0]
    assert match["auto_index"] >= 0
    auto = np.stack([r["segmentation"] for r in always.engine.auto_masks(rec, AUTO)])
    assert np.array_equal(label == 1, auto[match["auto_index"]])


@pytest.mark.parametrize("family_name,variant", [("sam", "vit_b"), ("sam2", "hiera_t")])
def test_missing_checkpoint_names_path_and_source(family_name: str, variant: str, tmp_path: Path) -> None:
    params = SamModelParams(family=family_name, variant=variant, checkpoint=str(tmp_path / "nope.pt"))
    with pytest.raises(FileNotFoundError) as err:
        load_sam_model(params, torch.device("cpu"), "masks.sam_box.model.checkpoint")
    assert "nope.pt" in str(err.value) and "masks.sam_box.model.checkpoint" in str(err.value)
    assert "github.com/facebookresearch" in str(err.value)


def test_checkpoint_round_trip_loads_weights_only(tmp_path: Path) -> None:
    """A saved state dict loads strictly into the real builder's architecture check (vit_b shape mismatch)."""
    tiny = build_tiny_sam()
    path = tmp_path / "tiny.pth"
    torch.save(tiny.state_dict(), path)
    with pytest.raises(RuntimeError, match="size mismatch|Missing key|Unexpected key"):
        load_sam_model(SamModelParams(checkpoint=str(path)), torch.device("cpu"))


# -- the family adapters (wsss.sam.adapters) --------------------------------------------------------------
def test_adapter_registry_lists_both_families() -> None:
    assert set(FAMILIES) <= set(ADAPTERS)
    for name, (_, variant) in FAMILIES.items():
        assert issubclass(ADAPTERS[name], SamAdapter) and variant in ADAPTERS[name].variants
    with pytest.raises(ValueError, match="not registered.*'sam', 'sam2'"):
        SamModelParams(family="sam3")
    with pytest.raises(ConfigError, match="model.family: unknown implementation 'sam3'.*Available: sam, sam2"):
        from_dict(SamModelParams, {"family": "sam3", "variant": "hiera_t"}, "model")
    with pytest.raises(ValueError, match="not a sam2 model"):
        SamModelParams(family="sam2", variant="vit_b")


@pytest.mark.parametrize("multimask", [True, False])
def test_adapter_round_trip_restore_decodes_like_encode(family, multimask: bool) -> None:
    """A cached state restored into a fresh predictor decodes exactly as right after encoding, without the encoder."""
    name, model = family
    rec = make_record(5)
    boxes = torch.tensor([b.as_list() for b in rec.boxes], dtype=torch.float32)
    first = ADAPTERS[name](model)
    state = first.encode(np.ascontiguousarray(rec.image))
    with torch.no_grad():
        direct = first.decode_boxes(boxes, multimask, return_logits=True)
        points = first.decode_points(np.array([[20.0, 30.0], [5.0, 5.0]]))
    fresh = ADAPTERS[name](model)
    calls = count_calls(model.image_encoder)
    fresh.restore(state)
    with torch.no_grad():
        restored = fresh.decode_boxes(boxes, multimask, return_logits=True)
        restored_points = fresh.decode_points(np.array([[20.0, 30.0], [5.0, 5.0]]))
    assert calls[0] == 0
    m = 3 if multimask else 1
    assert direct[0].shape == (2, m, 48, 64) and direct[1].shape == (2, m)
    for a, b in zip((*direct, *points), (*restored, *restored_points)):
        assert torch.equal(a, b)
    assert points[0].shape[:2] == (2, 3)  # decode_points: multimask low-res logits, not upsampled
    up = fresh.upsample(points[0][:, 0], (48, 64))
    assert up.shape == (2, 48, 64)


class SamCopyAdapter(SegmentAnythingAdapter):
    """A real (if redundant) new family: segment_anything's adapter under another name, vit_b only."""

    variants = ("vit_b",)


def test_a_new_family_is_one_adapter_entry(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(ADAPTERS, "sam_copy", SamCopyAdapter)
    with pytest.raises(ValueError, match="not a sam_copy model"):
        SamModelParams(family="sam_copy", variant="vit_l")  # its own variants are validated
    model = build_tiny_sam()
    res, mp = resources_with("sam_copy", model, tmp_path, "vit_b")  # builds SamEngine(model, "sam_copy", ...)
    ref_res, ref_mp = resources_with("sam", model, tmp_path)
    entry = REFINERS.get("sam_cam_match")
    stage = entry.builder(entry.params(model=mp, auto=AUTO), resources=res)
    reference = entry.builder(entry.params(model=ref_mp, auto=AUTO), resources=ref_res)
    assert isinstance(stage.engine.adapter, SamCopyAdapter) and stage.engine is not reference.engine
    calls = count_calls(model.image_encoder)
    rec = make_record(6)
    label = stage(rec)
    assert calls[0] == 1  # one encoder pass per image, as for the built-in families
    assert np.array_equal(label, reference(make_record(6)))
    with pytest.raises(FileNotFoundError, match="github.com/facebookresearch/segment-anything"):
        load_sam_model(mp, torch.device("cpu"))  # loading comes with the class too
