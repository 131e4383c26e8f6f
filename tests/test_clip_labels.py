"""CLIP label source on a tiny random open_clip model of the real class."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
import torch

from wsss.data.base import Sample
from wsss.labels import LABEL_SOURCES
from wsss.labels.clip import ClipLabelParams, ClipZeroShot, select_labels, train_clip_head
from wsss.models.tiny import build_tiny_clip
from wsss.record import Record, Resources

from .conftest import QUICKSTART

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


# --- prompt ontology and per-class thresholds ------------------------------------------------------------------------
def encode(model: torch.nn.Module, tok: object, prompts: list[str]) -> torch.Tensor:
    with torch.no_grad():
        return torch.nn.functional.normalize(model.encode_text(tok(prompts)).float(), dim=-1)


def test_class_prompts_replace_the_templates_for_that_class_only(tmp_path: Path) -> None:
    templates = ["a photo of a {}.", "a {} here."]
    params = ClipLabelParams(pretrained=str(tmp_path / "unused.bin"), templates=templates,
                             prompts={"cat": ["a tabby cat", "a kitten", "a small cat asleep"]})
    res = resources_with_tiny_clip(params, tmp_path)
    source = LABEL_SOURCES.get("clip").builder(params, resources=res)
    model, _, tok = res.get(f"clip:{params.model}:{params.pretrained}", None)
    def ensemble(prompts: list[str]) -> torch.Tensor:
        return torch.nn.functional.normalize(encode(model, tok, prompts).mean(0), dim=-1)
    assert torch.allclose(source.clip.text[0], ensemble(params.prompts["cat"]), atol=1e-5)
    assert torch.allclose(source.clip.text[1], ensemble([t.format("dog") for t in templates]), atol=1e-5)
    assert torch.allclose(source.clip.text[2], ensemble([t.format("car") for t in templates]), atol=1e-5)


def test_text_encoding_in_batches_equals_one_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    import wsss.labels.clip as clip_module

    model, preprocess, tok = build_tiny_clip()
    prompts = [["a cat", "a kitten", "cats"], ["a dog"], ["a car", "two cars"]]
    whole = ClipZeroShot(model, preprocess, tok, NAMES[1:], ["{}"], torch.device("cpu"), prompts=prompts).text
    monkeypatch.setattr(clip_module, "TEXT_BATCH", 2)  # splits one class's prompts across two passes
    assert torch.allclose(ClipZeroShot(model, preprocess, tok, NAMES[1:], ["{}"], torch.device("cpu"),
                                       prompts=prompts).text, whole, atol=1e-6)


def test_per_class_threshold_overrides_the_global_one() -> None:
    probs = np.array([0.5, 0.3, 0.2])
    assert select_labels(probs, 0, 0.25) == [1, 2]
    assert select_labels(probs, 0, np.array([0.25, 0.4, 0.1])) == [1, 3]  # dog's own cut drops it, car's keeps it
    assert select_labels(probs, 0, np.array([0.9, 0.9, 0.9])) == [1]  # the best always stays


def test_source_applies_per_class_thresholds(tmp_path: Path) -> None:
    image = colour_image((200, 30, 30), 0)

    def labels(**kw: object) -> tuple[list[int], dict[int, float]]:
        params = ClipLabelParams(pretrained=str(tmp_path / "unused.bin"), top_k=0, threshold=1.0, **kw)
        source = LABEL_SOURCES.get("clip").builder(params, resources=resources_with_tiny_clip(params, tmp_path))
        return source(Record(Sample("a", image)))

    classes, scores = labels()
    best = max(scores, key=scores.get)
    assert classes == [best]  # no class reaches 1.0: the best is kept so the image has a label
    other = next(c for c in (1, 2, 3) if c != best)
    assert labels(thresholds={NAMES[other]: 0.0})[0] == [other]  # each class against its own cut
    assert labels(thresholds={NAMES[other]: 0.0, NAMES[best]: scores[best]})[0] == sorted([best, other])


@pytest.mark.parametrize("field,value", [("prompts", {"catt": ["a cat"]}), ("thresholds", {"catt": 0.5})])
def test_unknown_class_key_names_the_key_and_the_valid_names(tmp_path: Path, field: str, value: dict) -> None:
    params = ClipLabelParams(pretrained=str(tmp_path / "unused.bin"), **{field: value})
    with pytest.raises(ValueError, match=rf"labels\.clip\.{field}: 'catt' is not a class of this data set\. "
                                         r"Did you mean 'cat'\? Valid class names: cat, dog, car"):
        LABEL_SOURCES.get("clip").builder(params, resources=resources_with_tiny_clip(params, tmp_path))


@pytest.mark.parametrize("override,expected", [
    ("labels.clip.thresholds={cat: 0.5, dog: 1.5}", "labels.clip.thresholds = {'cat': 0.5, 'dog': 1.5}: every threshold "
                                                    "must be in [0, 1] (dog is 1.5)"),
    ("labels.clip.thresholds.car=-0.1", "every threshold must be in [0, 1] (car is -0.1)"),
    ("labels.clip.prompts.cat=[]", "prompts.cat: give a non-empty list of non-empty prompts"),
    ("labels.clip.prompts.cat=a cat", "labels.clip.prompts.cat: expected list[str]"),
])
def test_config_rejects_bad_class_settings(override: str, expected: str) -> None:
    from wsss.config import ConfigError, load_config

    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(QUICKSTART, [override])


def test_config_accepts_class_settings() -> None:
    from wsss.config import load_config

    cfg = load_config(QUICKSTART, ["labels.clip.prompts={cat: [a tabby cat, a kitten]}", "labels.clip.thresholds.dog=0"])
    assert cfg.labels.clip.prompts == {"cat": ["a tabby cat", "a kitten"]}
    assert cfg.labels.clip.thresholds == {"dog": 0.0}


# --- weights by local file, local folder or hf-hub: id, all through open_clip's own loaders, offline -----------------
TINY_CFG = {"embed_dim": 16,
            "vision_cfg": {"layers": 1, "width": 32, "head_width": 16, "patch_size": 8, "image_size": 32},
            "text_cfg": {"context_length": 16, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}}
REVISION = "4f1c2a9e0b7d6c5a3e2f1b0a9c8d7e6f5a4b3c2d"


def put_in_hf_cache(cache: Path, repo_id: str, files: dict[str, Path], revision: str = REVISION) -> Path:
    """Lay ``files`` out as huggingface_hub's cache holds a download: blobs, snapshot symlinks, refs/main."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / revision
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    (repo / "refs").mkdir()
    for name, src in files.items():
        data = src.read_bytes()
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        (snapshot / name).symlink_to(Path("../..") / "blobs" / blob.name)
    (repo / "refs" / "main").write_text(revision)
    return snapshot


@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF_HOME in offline mode; returns its hub cache folder.

    huggingface_hub reads HF_HOME / HF_HUB_OFFLINE once, at import, so the test also sets the constants
    its download functions look up on every call (what a fresh ``HF_HOME=... HF_HUB_OFFLINE=1`` process sees).
    """
    import huggingface_hub.constants as hub

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    (home / "hub").mkdir(parents=True)
    return home / "hub"


@pytest.fixture
def saved_tiny_clip(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    """The tiny CLIP and a folder as open_clip's hub repos hold it (open_clip_config.json + weights)."""
    model, _, _ = build_tiny_clip()
    folder = tmp_path / "tiny_clip"
    folder.mkdir()
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CFG, "preprocess_cfg": {}}))
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    return model, folder


def scores_of(params: ClipLabelParams, tmp_path: Path) -> dict[int, float]:
    res = Resources(None, NAMES, tmp_path, torch.device("cpu"))  # nothing injected: the real loader runs
    source = LABEL_SOURCES.get("clip").builder(params, resources=res)
    return source(Record(Sample("a", colour_image((200, 30, 30), 0))))[1]


@pytest.mark.parametrize("form", ["file", "hf-file", "folder", "hf-hub"])
def test_weights_load_by_file_folder_or_hub_id_offline(form: str, saved_tiny_clip: tuple, offline_hub: Path,
                                                       tmp_path: Path) -> None:
    import open_clip

    model, folder = saved_tiny_clip
    if form in ("file", "hf-file"):  # an architecture open_clip knows (registered like its own configs) + weights
        (tmp_path / "wsss-tiny-clip.json").write_text(json.dumps(TINY_CFG))
        open_clip.add_model_config(tmp_path / "wsss-tiny-clip.json")
        weights = str(folder / "open_clip_pytorch_model.bin")
        if form == "hf-file":  # one file of a hub repo, the way SAM checkpoints are named (hf_hub_download)
            put_in_hf_cache(offline_hub, "wsss-test/tiny-clip-file", {"open_clip_pytorch_model.bin": Path(weights)})
            weights = "hf:wsss-test/tiny-clip-file/open_clip_pytorch_model.bin"
        params = ClipLabelParams(model="wsss-tiny-clip", pretrained=weights)
    elif form == "folder":
        params = ClipLabelParams(pretrained=str(folder))
    else:
        put_in_hf_cache(offline_hub, "wsss-test/tiny-clip", {p.name: p for p in folder.iterdir()})
        params = ClipLabelParams(pretrained="hf-hub:wsss-test/tiny-clip")
    _, preprocess, tokenizer = build_tiny_clip()
    expected = ClipZeroShot(model, preprocess, tokenizer, NAMES[1:], params.templates, torch.device("cpu"))
    got = scores_of(params, tmp_path)
    want = expected.probabilities([colour_image((200, 30, 30), 0)])[0]
    assert [got[c] for c in (1, 2, 3)] == pytest.approx(want.tolist(), abs=1e-6)


def test_hf_hub_id_not_in_the_offline_cache_names_key_and_fix(offline_hub: Path, tmp_path: Path) -> None:
    with pytest.raises(OSError, match=r"labels\.clip\.pretrained: cannot load CLIP 'hf-hub:wsss-test/absent'.*Offline"):
        scores_of(ClipLabelParams(pretrained="hf-hub:wsss-test/absent"), tmp_path)


def test_hub_repo_or_folder_without_weights_is_refused(saved_tiny_clip: tuple, offline_hub: Path, tmp_path: Path) -> None:
    """open_clip itself would warn and carry on with random weights."""
    _, folder = saved_tiny_clip
    put_in_hf_cache(offline_hub, "wsss-test/config-only", {"open_clip_config.json": folder / "open_clip_config.json"})
    with pytest.raises(OSError, match="labels.clip.pretrained: cannot load CLIP 'hf-hub:wsss-test/config-only'"):
        scores_of(ClipLabelParams(pretrained="hf-hub:wsss-test/config-only"), tmp_path)
    (folder / "open_clip_pytorch_model.bin").unlink()
    with pytest.raises(FileNotFoundError, match="needs open_clip_config.json and a weights file"):
        scores_of(ClipLabelParams(pretrained=str(folder)), tmp_path)
