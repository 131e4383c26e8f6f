"""CLIP label source on a tiny random open_clip model of the real class."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.data.base import Sample
from wsss.labels import LABEL_SOURCES
from wsss.labels.clip import ClipLabelParams, ClipZeroShot, select_labels, train_clip_head
from wsss.models.tiny import build_tiny_clip
from wsss.record import Record, Resources

NAMES = ["background", "cat", "dog", "car"]


def resources_with_tiny_clip(params: ClipLabelParams, tmp_path: Path) -> Resources:
    res = Resources(None, NAMES, tmp_path, torch.device("cpu"))
    res.get(f"clip:{params.model}:{params.pretrained}", build_tiny_clip)
    return res


def colour_image(rgb: tuple[int, int, int], seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(np.array(rgb)[None, None] + rng.normal(0, 10, (40, 48, 3)), 0, 255).astype(np.uint8)


@pytest.mark.parametrize("top_k,threshold", [(1, 0.0), (2, 0.0), (0, 0.3), (3, 0.99)])
def test_select_labels_top_k_and_threshold(top_k: int, threshold: float) -> None:
    probs = np.array([0.2, 0.5, 0.3])
    got = select_labels(probs, top_k, threshold)
    ranked = [1, 2, 0]
    expected = [i for i in (ranked[:top_k] if top_k else ranked) if probs[i] >= threshold] or [1]
    assert got == sorted(i + 1 for i in expected)


@pytest.mark.parametrize("top_k", [1, 2])
def test_clip_source_returns_probabilities_for_every_class(top_k: int, tmp_path: Path) -> None:
    params = ClipLabelParams(pretrained=str(tmp_path / "unused.bin"), top_k=top_k, templates=["a photo of a {}."])
    source = LABEL_SOURCES.get("clip").builder(params, resources=resources_with_tiny_clip(params, tmp_path))
    classes, scores = source(Record(Sample("a", colour_image((200, 30, 30), 0))))
    assert sorted(scores) == [1, 2, 3]
    assert sum(scores.values()) == pytest.approx(1.0, abs=1e-5)
    assert len(classes) == top_k
    assert max(scores, key=scores.get) in classes


def test_prompt_ensemble_averages_templates(tmp_path: Path) -> None:
    model, preprocess, tok = build_tiny_clip()
    one = ClipZeroShot(model, preprocess, tok, ["cat"], ["a photo of a {}."], torch.device("cpu"))
    two = ClipZeroShot(model, preprocess, tok, ["cat"], ["a photo of a {}.", "a {} here."], torch.device("cpu"))
    with torch.no_grad():
        e = torch.nn.functional.normalize(model.encode_text(tok(["a photo of a cat.", "a cat here."])).float(), dim=-1)
    assert torch.allclose(one.text[0], e[0], atol=1e-5)
    assert torch.allclose(two.text[0], torch.nn.functional.normalize(e.mean(0), dim=-1), atol=1e-5)


def test_linear_head_learns_labels_and_loads_from_file(tmp_path: Path) -> None:
    model, preprocess, tok = build_tiny_clip()
    clip = ClipZeroShot(model, preprocess, tok, NAMES[1:], ["a photo of a {}."], torch.device("cpu"))
    colours = {1: (220, 40, 40), 2: (40, 220, 40), 3: (40, 40, 220)}
    images = [colour_image(colours[c], s) for c in colours for s in range(4)]
    labels = [[c] for c in colours for _ in range(4)]
    head = train_clip_head(clip, images, labels, 3, epochs=150, lr=0.05)
    path = tmp_path / "head.pt"
    torch.save(head.state_dict(), path)
    params = ClipLabelParams(pretrained=str(tmp_path / "unused.bin"), head=str(path), threshold=0.5, top_k=0)
    source = LABEL_SOURCES.get("clip").builder(params, resources=resources_with_tiny_clip(params, tmp_path))
    for c, rgb in colours.items():  # unseen noise draws of each colour
        assert source(Record(Sample("x", colour_image(rgb, 100 + c))))[0] == [c]


def test_missing_clip_weights_name_the_path(tmp_path: Path) -> None:
    params = ClipLabelParams(pretrained=str(tmp_path / "missing.bin"))
    res = Resources(None, NAMES, tmp_path, torch.device("cpu"))
    with pytest.raises(FileNotFoundError, match="missing.bin"):
        LABEL_SOURCES.get("clip").builder(params, resources=res)
