"""The point-prompt decoder of the automatic-mask path (wsss.sam.decoders) against the libraries' decoders.

segment_anything's image side is computed once per batch, sam2's as the library repeats it; both must give
the library's numbers bitwise at the same batch, and upscale only the prompts the predicted-IoU filter keeps.
Run on random-weight models of the real architectures and on the tiny ones.
"""
from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from tests.test_sam_engine import make_record
from tests.test_sam_fast_auto import MODELS, photo
from wsss.data.base import Sample
from wsss.record import Record
from wsss.sam import decoders, fast_auto
from wsss.sam.engine import AutoMaskParams, SamEngine

DECODERS = ["tiny-sam", "tiny-sam2", "vit_b@256", "hiera_t@256"]


@pytest.fixture(scope="module", params=DECODERS)
def encoded(request: pytest.FixtureRequest) -> tuple[SamEngine, np.ndarray]:
    """An engine holding a real photo's embedding, and the 8 x 8 grid's points on it."""
    family, build = MODELS[request.param]
    engine = SamEngine(build(), family, request.param)
    rec = Record(Sample("photo", photo()))
    engine.ensure_image(rec)
    return engine, fast_auto.point_grid(8, *rec.image.shape[:2])


def upscaling_rows(engine: SamEngine) -> list[int]:
    """Batch sizes the decoder's upscaling sees (its first layer for sam2, which unpacks the Sequential)."""
    decoder = getattr(engine.model, "mask_decoder", None) or engine.model.sam_mask_decoder
    first = decoder.output_upscaling[0]
    rows: list[int] = []
    first.register_forward_hook(lambda _m, args, _out: rows.append(args[0].shape[0]))
    return rows


@torch.no_grad()
def test_all_masks_bitwise_the_librarys(encoded: tuple[SamEngine, np.ndarray]) -> None:
    engine, points = encoded
    low, iou = engine.adapter.decode_points(points)  # the library's MaskDecoder.forward
    ours = engine.adapter.decode_point_masks(points, 0.0)
    assert torch.equal(ours.low, low.flatten(0, 1))
    assert torch.equal(ours.iou, iou.flatten(0, 1))
    assert torch.equal(ours.prompt, torch.arange(len(points)).repeat_interleave(iou.shape[1]))


@torch.no_grad()
def test_iou_filter_exact_and_rejected_prompts_not_upscaled(encoded: tuple[SamEngine, np.ndarray]) -> None:
    engine, points = encoded
    low, iou = engine.adapter.decode_points(points)
    # a threshold between the prompts' best masks, so some prompts keep none of their three
    threshold = float(iou.max(1).values.median())
    keep = iou > threshold
    rows = upscaling_rows(engine)
    ours = engine.adapter.decode_point_masks(points, threshold)
    assert torch.equal(ours.low, low[keep]) and torch.equal(ours.iou, iou[keep])
    assert torch.equal(ours.prompt, keep.nonzero()[:, 0])
    assert 0 < rows[-1] == int(keep.any(1).sum()) < len(points)


@pytest.mark.parametrize("model", ["vit_b@256", "hiera_t@256", "tiny-sam", "tiny-sam2"])
@pytest.mark.parametrize("image_batch", [1, 5])
@torch.no_grad()
def test_reassociated_transformer_equals_the_librarys(model: str, image_batch: int) -> None:
    """fast_transformer against TwoWayTransformer.forward, the image side shared (batch 1) or per prompt."""
    family, build = MODELS[model]
    sam = build()
    decoder = getattr(sam, "mask_decoder", None) or sam.sam_mask_decoder
    encoder = getattr(sam, "prompt_encoder", None) or sam.sam_prompt_encoder
    c, (h, w) = decoder.transformer_dim, encoder.image_embedding_size
    g = torch.Generator().manual_seed(0)
    image = torch.randn(image_batch, c, h, w, generator=g)
    tokens = torch.randn(5, 7, c, generator=g)
    pe = encoder.get_dense_pe()
    ref_q, ref_k = decoder.transformer(image.expand(5, -1, -1, -1), pe.expand(5, -1, -1, -1), tokens)
    q, k = decoders.fast_transformer(decoder.transformer, image, pe, tokens)
    assert q.shape == ref_q.shape and k.shape == ref_k.shape
    assert torch.allclose(q, ref_q, atol=1e-4) and torch.allclose(k, ref_k, atol=1e-4)
    assert not torch.equal(q, ref_q[torch.arange(5).roll(1)])  # the prompts' outputs differ: a real comparison


@pytest.mark.parametrize("model", ["vit_b@256", "hiera_t@256"])
def test_decode_batch_changes_only_rounding(model: str) -> None:
    """Passes of 3 prompts through the re-associated transformer: the library's masks up to float rounding."""
    family, build = MODELS[model]
    engine = SamEngine(build(), family, model)
    p = AutoMaskParams(points_per_side=8, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0)
    rec = Record(Sample("photo", photo()))
    whole = engine.auto_masks(rec, p)
    split = engine.auto_masks(rec, dataclasses.replace(p, decode_batch=3))
    assert len(split) == len(whole) == 8 * 8 * 3
    for a, b in zip(split, whole):
        assert a["point_coords"] == b["point_coords"]
        assert abs(a["predicted_iou"] - b["predicted_iou"]) < 1e-5
        inter = (a["segmentation"] & b["segmentation"]).sum()
        union = (a["segmentation"] | b["segmentation"]).sum()
        assert union == 0 or inter / union > 0.99


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile on CPU needs a C++ compiler")
@pytest.mark.parametrize("model", ["tiny-sam", "tiny-sam2"])
def test_compiled_engine_gives_the_eager_masks(model: str) -> None:
    """``pseudo.compile`` (SamEngine.compile): the encoder and decoder through torch.compile, same masks."""
    family, build = MODELS[model]
    eager, compiled = SamEngine(build(), family, "eager"), SamEngine(build(), family, "compiled")
    compiled.compile()
    compiled.compile()  # a second call wraps nothing twice
    assert type(compiled.model.image_encoder).__name__ == "OptimizedModule"
    assert type(compiled.model.image_encoder._orig_mod).__name__ != "OptimizedModule"
    p = AutoMaskParams(points_per_side=6, pred_iou_thresh=0.0, stability_score_thresh=0.0, box_nms_thresh=1.0,
                       decode_batch=4)  # the compiled re-associated transformer too
    a, b = eager.auto_masks(make_record(1), p), compiled.auto_masks(make_record(1), p)
    assert len(a) == len(b) > 0
    ious = [(x["segmentation"] & y["segmentation"]).sum() / max(1, (x["segmentation"] | y["segmentation"]).sum())
            for x, y in zip(a, b)]
    assert min(ious) > 0.98
    assert np.allclose([x["predicted_iou"] for x in a], [y["predicted_iou"] for y in b], atol=1e-4)
