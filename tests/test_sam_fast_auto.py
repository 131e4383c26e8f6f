"""The fast automatic-mask path (wsss.sam.fast_auto) against the libraries' generators.

Fidelity (docs/sam.md, "Fidelity"): the fast path returns the library's records exactly (same masks in the same
order, same scores, boxes and areas) for any decoder. Checked on tiny random models (whose salt-and-pepper masks
NMS separates only at full resolution), on blocky decoders, and on random-weight models of the real
architectures (SAM vit_b, SAM 2.1 hiera-t) at a reduced input size, on a synthetic image and a real photo.
"""
from __future__ import annotations

import dataclasses
from functools import partial
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_sam_engine import FAMILIES, count_calls, decoder, make_record, resources_with
from wsss.data.base import Sample
from wsss.masks import REFINERS
from wsss.models.tiny import build_tiny_sam, build_tiny_sam2, coherent
from wsss.record import Record
from wsss.sam import fast_auto
from wsss.sam.engine import AutoMaskParams, SamEngine

REPO = Path(__file__).resolve().parents[1]
# no filtering and no NMS: both paths must return the very same masks
NO_FILTER = AutoMaskParams(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)




def build_vit_b(img_size: int = 256, seed: int = 0) -> torch.nn.Module:
    """segment_anything's vit_b (the registry's encoder, prompt encoder and decoder configs) on ``img_size``
    inputs: the registry fixes 1024 px, which costs ~14 s per image on this CPU."""
    from segment_anything.modeling import ImageEncoderViT, MaskDecoder, PromptEncoder, Sam, TwoWayTransformer

    torch.manual_seed(seed)
    grid = img_size // 16
    return Sam(
        image_encoder=ImageEncoderViT(depth=12, embed_dim=768, img_size=img_size, mlp_ratio=4, num_heads=12,
                                      norm_layer=partial(torch.nn.LayerNorm, eps=1e-6), patch_size=16, qkv_bias=True,
                                      use_rel_pos=True, global_attn_indexes=(2, 5, 8, 11), window_size=14,
                                      out_chans=256),
        prompt_encoder=PromptEncoder(embed_dim=256, image_embedding_size=(grid, grid),
                                     input_image_size=(img_size, img_size), mask_in_chans=16),
        mask_decoder=MaskDecoder(num_multimask_outputs=3, transformer=TwoWayTransformer(
            depth=2, embedding_dim=256, mlp_dim=2048, num_heads=8), transformer_dim=256, iou_head_depth=3,
            iou_head_hidden_dim=256),
        pixel_mean=[123.675, 116.28, 103.53], pixel_std=[58.395, 57.12, 57.375]).eval()


def build_hiera_t(img_size: int = 256, seed: int = 0) -> torch.nn.Module:
    """The sam2 package's SAM 2.1 hiera-t config, unchanged but for the input size."""
    from sam2.build_sam import build_sam2

    torch.manual_seed(seed)
    return build_sam2("configs/sam2.1/sam2.1_hiera_t.yaml", ckpt_path=None, device="cpu", mode="eval",
                      hydra_overrides_extra=[f"++model.image_size={img_size}"], apply_postprocessing=False)


MODELS = {  # name -> (family, builder)
    "tiny-sam": ("sam", build_tiny_sam), "tiny-sam2": ("sam2", build_tiny_sam2),
    "blocky-tiny-sam": ("sam", lambda: coherent(build_tiny_sam())),
    "blocky-tiny-sam2": ("sam2", lambda: coherent(build_tiny_sam2())),
    "vit_b@256": ("sam", build_vit_b), "hiera_t@256": ("sam2", build_hiera_t),
    "blocky-vit_b@256": ("sam", lambda: coherent(build_vit_b())),
}


def photo(h: int = 96, w: int = 128) -> np.ndarray:
    """A real photo (the vase in docs/quality_grid.jpg's first row), resized to h x w."""
    from PIL import Image

    path = REPO / "docs" / "quality_grid.jpg"
    if not path.exists():
        pytest.skip(f"{path} is missing")
    image = Image.open(path).convert("RGB").crop((0, 16, 226, 160))
    return np.asarray(image.resize((w, h), Image.BILINEAR))


@pytest.fixture(scope="module", params=sorted(FAMILIES))
def engine(request: pytest.FixtureRequest) -> SamEngine:
    build, _ = FAMILIES[request.param]
    return SamEngine(coherent(build()), request.param)


@pytest.fixture(scope="module", params=sorted(MODELS))
def any_engine(request: pytest.FixtureRequest) -> SamEngine:
    family, build = MODELS[request.param]
    return SamEngine(build(), family, request.param)


def both(engine: SamEngine, p: AutoMaskParams, rec: Record | None = None, **kw) -> tuple[list[dict], list[dict]]:
    rec = rec or make_record(1)
    return (engine.auto_masks(rec, dataclasses.replace(p, engine="fast"), **kw),
            engine.auto_masks(rec, dataclasses.replace(p, engine="library"), **kw))


def assert_identical(fast: list[dict], lib: list[dict]) -> None:
    """The library's records, in its order: masks, areas, boxes, scores (the documented tolerance: none)."""
    assert len(fast) == len(lib)
    for f, g in zip(fast, lib):
        assert f["segmentation"].dtype == bool and np.array_equal(f["segmentation"], g["segmentation"])
        assert f["area"] == g["area"] and f["bbox"] == g["bbox"] and f["crop_box"] == g["crop_box"]
        assert f["predicted_iou"] == g["predicted_iou"]
        assert f["stability_score"] == g["stability_score"] or np.isnan(f["stability_score"]) and np.isnan(g["stability_score"])
        assert np.allclose(f["point_coords"], g["point_coords"])


def test_unfiltered_masks_identical_to_library(engine: SamEngine) -> None:
    fast, lib = both(engine, NO_FILTER)
    assert len(fast) == len(lib) == 8 * 8 * 3
    assert fast[0]["segmentation"].shape == (48, 64)
    assert_identical(fast, lib)


def test_predicted_iou_filter_identical(engine: SamEngine) -> None:
    _, lib = both(engine, NO_FILTER)
    thresh = float(np.median([r["predicted_iou"] for r in lib]))
    fast, lib = both(engine, dataclasses.replace(NO_FILTER, pred_iou_thresh=thresh))
    assert 0 < len(lib) < 8 * 8 * 3
    assert_identical(fast, lib)


def thresholds(engine: SamEngine, rec: Record, p: AutoMaskParams) -> AutoMaskParams:
    """p with pred_iou_thresh at the lower quartile and stability_score_thresh at the median of the unfiltered
    masks (random weights score far below the defaults), so both filters remove masks."""
    records = engine.auto_masks(rec, dataclasses.replace(p, pred_iou_thresh=0, stability_score_thresh=0,
                                                         box_nms_thresh=1.0, engine="fast"))
    iou = np.array([r["predicted_iou"] for r in records])
    stab = np.array([r["stability_score"] for r in records])
    stab = stab[np.isfinite(stab) & (stab > 0)]
    return dataclasses.replace(p, pred_iou_thresh=max(float(np.quantile(iou, 0.25)), 0.0),
                               stability_score_thresh=float(np.median(stab)) if len(stab) else 0.0)


# (points_per_side, box_nms_thresh, stability_score_offset): the default NMS; a looser one with a small offset (the
# real architectures' random logits stay within +-0.2, so offset 1 leaves every stability 0); no NMS at all
SETTINGS = [(8, 0.7, 1.0), (8, 0.9, 0.05), (8, 1.0, 0.05)]


@pytest.mark.parametrize("image", ["synthetic", "photo"])
@pytest.mark.parametrize("pps,nms,offset", SETTINGS)
def test_filters_and_nms_identical_for_any_decoder(any_engine: SamEngine, image: str, pps: int, nms: float,
                                                   offset: float) -> None:
    """The whole generator, thresholds set so every filter and NMS remove masks: the library's records exactly."""
    rec = make_record(1) if image == "synthetic" else Record(Sample("photo", photo()))
    p = thresholds(any_engine, rec, AutoMaskParams(points_per_side=pps, box_nms_thresh=nms,
                                                   stability_score_offset=offset))
    fast, lib = both(any_engine, p, rec)
    assert lib  # at least the best mask survives
    assert_identical(fast, lib)


def test_tiny_random_sam_on_a_photo_keeps_what_the_library_keeps() -> None:
    """The issue's case: a tiny random SAM on a real photo, default NMS. Low-res boxes made the former fast path
    keep 1 mask where the library kept 6; full-resolution boxes keep the library's masks."""
    eng = SamEngine(build_tiny_sam(), "sam")
    fast, lib = both(eng, AutoMaskParams(points_per_side=16, pred_iou_thresh=0, stability_score_thresh=0),
                     Record(Sample("photo", photo())))
    assert len(lib) > 3
    assert_identical(fast, lib)


def test_pack_round_trip() -> None:
    rng = np.random.default_rng(0)
    for hw in [(5, 7), (48, 64), (1, 1)]:
        masks = torch.from_numpy(rng.random((3, *hw)) > 0.5)
        packed = fast_auto.pack_masks(masks)
        assert packed.dtype == torch.uint8 and packed.shape == (3, -(-hw[0] * hw[1] // 8))
        assert torch.equal(fast_auto.unpack_masks(packed, hw), masks)
    assert fast_auto.pack_masks(torch.zeros((0, 4, 4), dtype=torch.bool)).shape == (0, 2)


# -- the grid inside boxes (paper 000's grid: boxes) ---------------------------------------------------------
def test_grid_in_boxes_selects_points_inside_grown_boxes() -> None:
    grid = fast_auto.point_grid(4, 40, 80)  # x at 10, 30, 50, 70; y at 5, 15, 25, 35
    assert np.allclose(grid[:4], [[10, 5], [30, 5], [50, 5], [70, 5]])
    inside = fast_auto.grid_in_boxes(grid, np.array([[25, 0, 55, 20]]), 0.0)
    assert grid[inside].tolist() == [[30, 5], [50, 5], [30, 15], [50, 15]]
    grown = fast_auto.grid_in_boxes(grid, np.array([[25, 0, 55, 20]]), 0.5)  # 15 px left/right, 10 px down
    assert grid[grown].tolist() == [[10, 5], [30, 5], [50, 5], [70, 5], [10, 15], [30, 15], [50, 15], [70, 15],
                                    [10, 25], [30, 25], [50, 25], [70, 25]]
    union = fast_auto.grid_in_boxes(grid, np.array([[60, 30, 80, 40], [0, 0, 20, 10]]), 0.0)
    assert union.tolist() == [0, 15]  # in grid order, whatever the box order
    tiny = fast_auto.grid_in_boxes(grid, np.array([[34, 17, 38, 19]]), 0.1)  # between grid points
    assert grid[tiny].tolist() == [[30, 15]]  # its nearest grid point
    assert fast_auto.grid_in_boxes(grid, np.zeros((0, 4)), 0.1).tolist() == []


@pytest.mark.parametrize("auto_engine", ["fast", "library"])
def test_box_grid_masks_are_the_full_grids_from_those_points(engine: SamEngine, auto_engine: str) -> None:
    """Without NMS the box grid's masks are exactly the full grid's masks prompted inside the boxes."""
    rec = make_record(1)
    boxes = np.array([b.as_list() for b in rec.boxes], np.float64)
    p = dataclasses.replace(NO_FILTER, engine=auto_engine)
    full = engine.auto_masks(rec, p)
    sub = engine.auto_masks(rec, p, boxes=boxes, box_margin=0.1)
    selected = fast_auto.point_grid(8, 48, 64)[fast_auto.grid_in_boxes(fast_auto.point_grid(8, 48, 64), boxes, 0.1)]
    assert 0 < len(sub) == 3 * len(selected) < len(full)
    inside = [r for r in full if any(np.allclose(r["point_coords"][0], q) for q in selected)]
    key = lambda r: (r["point_coords"][0][1], r["point_coords"][0][0], r["segmentation"].tobytes())  # noqa: E731
    for a, b in zip(sorted(sub, key=key), sorted(inside, key=key)):
        assert np.array_equal(a["segmentation"], b["segmentation"])
        assert a["predicted_iou"] == pytest.approx(b["predicted_iou"], abs=1e-5)  # other batch sizes: float noise
    assert engine.auto_masks(rec, p, boxes=boxes, box_margin=0.1) is sub  # cached per boxes and margin
    assert engine.auto_masks(rec, p) is full


def test_box_grid_fast_equals_library_and_decodes_once(engine: SamEngine) -> None:
    rec = make_record(2)
    boxes = np.array([b.as_list() for b in rec.boxes], np.float64)
    p = thresholds(engine, rec, AutoMaskParams(points_per_side=16, box_nms_thresh=0.7))
    calls = count_calls(decoder(engine.model).transformer)  # the fast path calls the transformer, not forward()
    fast, lib = both(engine, p, rec, boxes=boxes, box_margin=0.1)
    n = len(fast_auto.grid_in_boxes(fast_auto.point_grid(16, 48, 64), boxes, 0.1))
    assert p.points_per_batch < n <= fast_auto.MAX_POINTS_PER_CALL
    assert calls[0] == 2  # one decoder call per engine for all boxes' points (the library's points_per_batch is 64)
    assert_identical(fast, lib)
    with pytest.raises(ValueError, match="crop_n_layers"):
        engine.auto_masks(rec, dataclasses.replace(p, crop_n_layers=1), boxes=boxes)


@pytest.mark.parametrize("auto_engine", ["fast", "library"])
def test_cam_match_same_labels_and_one_encoder_pass(auto_engine: str, tmp_path: Path) -> None:
    """Paper 000's refiner: the same label map with both engines, and one encoder pass per image with either."""
    labels = {}
    for name, (build, _) in sorted(FAMILIES.items()):
        model = coherent(build())
        res, mp = resources_with(name, model, tmp_path)
        entry = REFINERS.get("sam_cam_match")
        auto = AutoMaskParams(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0)  # NMS 0.7
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


def test_cam_match_box_grid(tmp_path: Path) -> None:
    """grid: boxes prompts only inside the boxes (fewer decoder prompts), one encoder pass, the full grid's
    choice here (the chosen mask comes from a point inside the box)."""
    model = coherent(build_tiny_sam())
    res, mp = resources_with("sam", model, tmp_path)
    entry = REFINERS.get("sam_cam_match")
    auto = AutoMaskParams(points_per_side=16, pred_iou_thresh=0.0, stability_score_thresh=0.0)
    stages = {g: entry.builder(entry.params(model=mp, auto=auto, max_area=1.0, grid=g), resources=res)
              for g in ("full", "boxes")}
    enc = count_calls(model.image_encoder)
    labels, chosen = {}, {}
    for g, stage in stages.items():
        rec = make_record(2)
        labels[g] = stage(rec)
        auto_masks = rec.cache["sam_cam_match_views"][1][1]
        chosen[g] = [m["auto_index"] >= 0 for m in rec.cache["sam_cam_match"]]
        assert len(auto_masks) > 0
    assert enc[0] == 2  # one per image
    assert chosen["boxes"] == chosen["full"] and any(chosen["full"])
    assert np.array_equal(labels["boxes"], labels["full"])
    with pytest.raises(ValueError, match="grid"):
        entry.params(grid="box")
    with pytest.raises(ValueError, match="crop_n_layers"):
        entry.params(grid="boxes", auto=AutoMaskParams(crop_n_layers=1))


def test_engine_key_is_validated() -> None:
    with pytest.raises(ValueError, match="auto.engine"):
        AutoMaskParams(engine="gpu")  # type: ignore[arg-type]

