"""Batched SAM encoding (``SamEngine.encode_batch``, the SAM refiners' ``prepare_batch``) and bf16 in the encoder only.

Stage one's batched path calls ``prepare_batch`` on a batch before the refiner runs per image. On CUDA the encoder
then sees the stacked images (SAM 2's ``set_image_batch``; for SAM the ``set_image`` steps per image, one encoder
call); on CPU each image alone, so labels stay bitwise the per-image path's.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.test_sam_engine import AUTO, FAMILIES, count_calls, make_record, resources_with
from tests.test_sam_fast_auto import MODELS
from wsss.masks import REFINERS
from wsss.record import Record
from wsss.sam.engine import SamEngine


def records() -> list[Record]:
    """Three images of two sizes (SAM pads each to its square input; SAM 2 resizes each)."""
    return [make_record(0), make_record(1, h=40, w=64), make_record(2)]


def tensors(state: object) -> list[torch.Tensor]:
    if isinstance(state, torch.Tensor):
        return [state]
    if isinstance(state, dict):
        return [t for v in state.values() for t in tensors(v)]
    if isinstance(state, list | tuple):
        return [t for v in state for t in tensors(v)]
    return []


@pytest.mark.parametrize("model", ["tiny-sam", "tiny-sam2", "vit_b@256", "hiera_t@256"])
@torch.no_grad()
def test_stacked_encoding_gives_each_images_embedding(model: str) -> None:
    family, build = MODELS[model]
    engine = SamEngine(build(), family, model)
    one, batch = records(), records()
    calls = count_calls(engine.model.image_encoder)
    for rec in one:
        engine.ensure_image(rec)
    engine.encode_batch(batch, batched=True)
    assert calls[0] == len(one) + 1  # the batch in one encoder call
    for a, b in zip(one, batch):
        sa, sb = a.cache[engine.embedding_key], b.cache[engine.embedding_key]
        assert sa.keys() == sb.keys()
        assert {k: v for k, v in sa.items() if not tensors(v)} == {k: v for k, v in sb.items() if not tensors(v)}
        for ta, tb in zip(tensors(sa), tensors(sb)):
            assert ta.shape == tb.shape and torch.allclose(ta, tb, atol=1e-4, rtol=1e-4)
        # the restored batch state decodes boxes as the image's own state does
        boxes = np.array([bx.as_list() for bx in a.boxes], np.float32)
        (ma, ia), (mb, ib) = engine.box_masks(a, boxes, True, logits=True), engine.box_masks(b, boxes, True, logits=True)
        assert np.allclose(ma, mb, atol=1e-3) and np.allclose(ia, ib, atol=1e-4)


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_prepare_batch_on_cpu_is_the_per_image_path(name: str, tmp_path: Path) -> None:
    """On CPU ``prepare_batch`` encodes image by image: the refiner then encodes nothing, labels bitwise."""
    model = FAMILIES[name][0]()
    res, mp = resources_with(name, model, tmp_path)
    entry = REFINERS.get("sam_cam_match")
    refiner = entry.builder(entry.params(model=mp, auto=AUTO, min_iou=-1.0, max_area=1.0), resources=res)
    per_image = [refiner(rec) for rec in records()]
    recs = records()
    calls = count_calls(model.image_encoder)
    refiner.prepare_batch(recs)
    labels = [refiner(rec) for rec in recs]
    assert calls[0] == len(recs)
    assert all(np.array_equal(a, b) for a, b in zip(per_image, labels))


@pytest.mark.parametrize("name", sorted(FAMILIES))
def test_bf16_reaches_the_encoder_only(name: str, tmp_path: Path) -> None:
    """Under autocast (as ``pseudo.autocast`` wraps the batched path), the embedding is stored in float32 and
    the refiner decodes in float32."""
    model = FAMILIES[name][0]()
    res, mp = resources_with(name, model, tmp_path)
    entry = REFINERS.get("sam_box")
    refiner = entry.builder(entry.params(model=mp, auto=AUTO), resources=res)
    decoder = getattr(model, "mask_decoder", None) or model.sam_mask_decoder
    dtypes: list[torch.dtype] = []
    decoder.transformer.register_forward_hook(lambda _m, _a, out: dtypes.append(out[1].dtype))
    recs = records()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        refiner.prepare_batch(recs)
        labels = [refiner(rec) for rec in recs]
    state = recs[0].cache[refiner.engine.embedding_key]
    assert all(t.dtype == torch.float32 for t in tensors(state) if t.is_floating_point())
    assert dtypes and set(dtypes) == {torch.float32}
    assert all(lab.shape == rec.image.shape[:2] and lab.dtype == np.uint8 for lab, rec in zip(labels, recs))
