"""Grounding-DINO box source on a tiny random model of transformers' real class."""
from __future__ import annotations

import copy
import re
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from transformers import GroundingDinoForObjectDetection

from wsss.boxes import BOX_SOURCES
from wsss.boxes.grounding_dino import (
    ClassQuery,
    GroundingDinoBoxes,
    GroundingDinoClassPrompt,
    GroundingDinoParams,
    boxes_from_outputs,
    chunk_queries,
    detect,
    encode_caption,
    load_grounding_dino,
    phrase_tokens,
    text_limit,
)
from wsss.config import ConfigError, load_config
from wsss.data.base import Sample
from wsss.models.tiny import build_tiny_grounding_dino
from wsss.record import Record, Resources

from .conftest import QUICKSTART
from .test_clip_labels import put_in_hf_cache

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


# --- ontology: prompts per class, per-class thresholds ---------------------------------------------------------------
WORDS = ["cat", "dog", "kitten", "puppy", "car", "bus", "boat"]
NAMES5 = ["background", "cat", "dog", "car", "bus", "boat"]


@pytest.fixture(scope="module")
def tiny_words() -> tuple:
    return build_tiny_grounding_dino(WORDS)


def build(tiny: tuple, tmp_path: Path, names: list[str] = NAMES, **kw: object) -> GroundingDinoBoxes:
    params = GroundingDinoParams(model=str(tmp_path / "unused"), **kw)
    res = Resources(None, names, tmp_path, torch.device("cpu"))
    res.get(f"grounding_dino:{params.model}", lambda: tiny)
    return BOX_SOURCES.get("grounding_dino").builder(params, resources=res)


def test_ontology_prompt_replaces_the_class_name(tiny_words: tuple, tmp_path: Path) -> None:
    rec = record([1, 2])
    by_ontology = build(tiny_words, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100,
                        ontology={"cat": {"prompt": "kitten"}})
    by_names = build(tiny_words, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100,
                     class_names=["kitten", "dog"])
    assert by_ontology.queries[1].phrases == ("kitten",) and by_ontology.queries[2].phrases == ("dog",)
    assert by_ontology(rec) == by_names(rec) != []


def test_boxes_of_any_prompt_go_to_its_class(tiny_words: tuple, tmp_path: Path) -> None:
    source = build(tiny_words, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100,
                   ontology={"cat": {"prompt": ["kitten", "cat"]}, "dog": {"prompt": ["puppy", "dog"]}})
    boxes = source(record([1, 2]))
    assert {b.cls for b in boxes} <= {1, 2} and boxes
    assert len(boxes) == 20  # thresholds 0: every query of the tiny model, each assigned to exactly one class


def outputs_for(logits: list[list[float]], boxes: list[list[float]]) -> SimpleNamespace:
    return SimpleNamespace(logits=torch.logit(torch.tensor([logits])), pred_boxes=torch.tensor([boxes]))


def test_assignment_uses_the_phrase_tokens_and_each_class_cut() -> None:
    # caption "[CLS] kitten . cat . dog [UNK] . [SEP]": cat owns tokens 1 and 3, dog tokens 5-6
    spans = [(1, 1, 2), (1, 3, 4), (2, 5, 7)]
    probs = [[0.1, 0.9, 0.1, 0.2, 0.1, 0.3, 0.1, 0.1, 0.1],  # best on 'kitten' -> cat, 0.9
             [0.1, 0.2, 0.1, 0.1, 0.1, 0.1, 0.6, 0.1, 0.1],  # best on dog's second token -> dog, 0.6
             [0.1, 0.2, 0.1, 0.1, 0.1, 0.5, 0.1, 0.1, 0.1],  # dog, 0.5: below dog's own box cut of 0.55
             [0.99, 0.3, 0.1, 0.1, 0.1, 0.1, 0.1, 0.1, 0.99]]  # high only on [CLS]/[SEP]: cat 0.3, below 0.35
    centre = [[0.5, 0.5, 0.5, 0.5]] * 4
    cuts = {1: (0.35, 0.25), 2: (0.55, 0.25)}
    got = boxes_from_outputs(outputs_for(probs, centre), spans, cuts, (40, 80))
    assert [(b.cls, round(b.score, 4)) for b in got] == [(1, 0.9), (2, 0.6)]
    assert (got[0].x0, got[0].y0, got[0].x1, got[0].y1) == (20, 10, 60, 30)
    # a text cut above the box cut is the binding one (Grounding-DINO's phrase rule): cat's 0.9 fails 0.95
    assert [b.cls for b in boxes_from_outputs(outputs_for(probs, centre), spans, {1: (0.35, 0.95), 2: (0.0, 0.0)},
                                              (40, 80))] == [2, 2]


def test_per_class_box_threshold(tiny_words: tuple, tmp_path: Path) -> None:
    rec = record([1, 2])
    low = build(tiny_words, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100)(rec)
    dog_scores = sorted(b.score for b in low if b.cls == 2)
    cut = dog_scores[len(dog_scores) // 2]
    got = build(tiny_words, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100,
                ontology={"dog": {"box_threshold": cut}})(rec)
    assert [b for b in got if b.cls == 1] == [b for b in low if b.cls == 1]  # cat keeps the global cut
    assert [b for b in got if b.cls == 2] == [b for b in low if b.cls == 2 and b.score > cut]
    assert 0 < sum(b.cls == 2 for b in got) < len(dog_scores)


def test_unknown_ontology_key_names_it_and_the_valid_names(tiny: tuple, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"boxes\.grounding_dino\.ontology: 'cta' is not a class of this data set\. "
                                         r"Did you mean 'cat'\? Valid class names: cat, dog"):
        source(tiny, tmp_path, ontology={"cta": {"prompt": "a cat"}})


@pytest.mark.parametrize("override,expected", [
    ("boxes.grounding_dino.ontology.cat.box_threshold=1.5",
     "boxes.grounding_dino.ontology.cat.box_threshold = 1.5: must be in [0, 1]"),
    ("boxes.grounding_dino.ontology={dog: {text_threshold: -0.2}}",
     "boxes.grounding_dino.ontology.dog.text_threshold = -0.2: must be in [0, 1]"),
    ("boxes.grounding_dino.ontology.cat.prompts=a cat", "Did you mean 'boxes.grounding_dino.ontology.cat.prompt'?"),
    ("boxes.grounding_dino.ontology.cat.prompt=[]", "boxes.grounding_dino.ontology.cat: prompt []: give a phrase"),
])
def test_config_rejects_bad_ontology(override: str, expected: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(expected)):
        load_config(QUICKSTART, [override])


def test_config_builds_the_ontology() -> None:
    cfg = load_config(QUICKSTART, ["boxes.grounding_dino.ontology={cat: {prompt: [tabby cat, kitten], box_threshold: 0.3},"
                                   " dog: {prompt: puppy}}"])
    onto = cfg.boxes.grounding_dino.ontology
    assert onto["cat"] == GroundingDinoClassPrompt(["tabby cat", "kitten"], 0.3, None)
    assert onto["dog"].phrases("dog") == ["puppy"] and GroundingDinoClassPrompt().phrases("Dog.") == ["dog"]


# --- the text limit: chunked captions, one image encoding -------------------------------------------------------------
@pytest.fixture(scope="module")
def short_text() -> tuple:
    """The tiny model with a text limit of 10 tokens: [CLS] + four 'word .' + [SEP], so 5 classes need 2 captions."""
    model, processor = build_tiny_grounding_dino(WORDS)
    config = copy.deepcopy(model.config)
    config.max_text_len = 10
    torch.manual_seed(0)
    return GroundingDinoForObjectDetection(config).eval(), processor


def test_long_captions_are_chunked_and_equal_each_chunk_alone(short_text: tuple, tmp_path: Path) -> None:
    model, processor = short_text
    src = build(short_text, tmp_path, names=NAMES5, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100)
    queries = list(src.queries.values())
    tokens = phrase_tokens(processor.tokenizer, [q.phrases[0] for q in queries])
    assert text_limit(model, processor.tokenizer) == 10
    chunks = chunk_queries(queries, tokens, 10)
    assert [[q.cls for q in c] for c in chunks] == [[1, 2, 3, 4], [5]]

    calls = []
    hook = model.model.backbone.conv_encoder.register_forward_hook(lambda *a: calls.append(1))
    try:
        rec = record([1, 2, 3, 4, 5])
        together = src(rec)
        assert len(calls) == 1, "the image backbone runs once for both captions"
        alone = []
        for chunk in chunks:  # each caption on its own, the backbone run afresh
            rec.classes = [q.cls for q in chunk]
            alone += src(rec)
        assert len(calls) == 3
    finally:
        hook.remove()
    assert sorted(together, key=lambda b: (b.cls, -b.score)) == sorted(alone, key=lambda b: (b.cls, -b.score))
    assert {b.cls for b in together} == {1, 2, 3, 4, 5}
    assert "forward" not in vars(model.model.backbone)  # the backbone is itself again


def test_caption_ids_are_what_the_processor_makes(short_text: tuple) -> None:
    _, processor = short_text
    queries = [ClassQuery(1, ("cat", "kitten"), 0.3, 0.2), ClassQuery(2, ("dog",), 0.3, 0.2)]
    tokens = phrase_tokens(processor.tokenizer, ["cat", "kitten", "dog"])
    text, spans = encode_caption(queries, tokens, processor.tokenizer, torch.device("cpu"))
    assert text["input_ids"][0].tolist() == processor.tokenizer("cat. kitten. dog.")["input_ids"]
    assert spans == [(1, 1, 2), (1, 3, 4), (2, 5, 6)]


def test_a_class_longer_than_the_limit_is_named(short_text: tuple, tmp_path: Path) -> None:
    src = build(short_text, tmp_path, names=NAMES5, ontology={"cat": {"prompt": ["cat", "kitten", "cat kitten", "dog"]}})
    with pytest.raises(ValueError, match=r"class 1 \(cat, kitten, cat kitten, dog\) take 11 tokens.*limit of 10"):
        src(record([1]))


def test_box_corners_match_transformers_post_processing(tiny: tuple) -> None:
    model, processor = tiny
    image = record([1]).image
    inputs = processor(images=image, text="cat.", return_tensors="pt")
    with torch.no_grad():
        outputs = model(**inputs)
    ref = processor.post_process_grounded_object_detection(outputs, inputs["input_ids"], threshold=0.0, text_threshold=0.0,
                                                           target_sizes=[image.shape[:2]])[0]["boxes"].tolist()
    ref = {(max(int(x0), 0), max(int(y0), 0), min(round(x1), 64), min(round(y1), 48)) for x0, y0, x1, y1 in ref}
    mine = detect(model, processor, image, {1: "cat"}, 0.0, 0.0, torch.device("cpu"))
    assert mine and {(b.x0, b.y0, b.x1, b.y1) for b in mine} <= ref


# --- loading by local folder or hub id, offline ----------------------------------------------------------------------
@pytest.fixture
def offline_hub(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A private HF_HOME in offline mode (see tests/test_clip_labels.py: the constants are read at import)."""
    import huggingface_hub.constants as hub

    home = tmp_path / "hf_home"
    monkeypatch.setenv("HF_HOME", str(home))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(hub, "HF_HUB_CACHE", str(home / "hub"))
    monkeypatch.setattr(hub, "HF_HUB_OFFLINE", True)
    (home / "hub").mkdir(parents=True)
    return home / "hub"


@pytest.mark.parametrize("form", ["folder", "hub-id"])
def test_model_loads_from_folder_or_hub_id_offline(form: str, tiny: tuple, offline_hub: Path, tmp_path: Path) -> None:
    model, processor = tiny
    folder = tmp_path / "grounding-dino-tiny-test"
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    if form == "folder":
        spec = str(folder)
    else:
        put_in_hf_cache(offline_hub, "wsss-test/grounding-dino-tiny", {p.name: p for p in folder.iterdir()})
        spec = "wsss-test/grounding-dino-tiny"
    params = GroundingDinoParams(model=spec, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100)
    loaded = BOX_SOURCES.get("grounding_dino").builder(params, resources=Resources(None, NAMES, tmp_path, torch.device("cpu")))
    rec = record([1, 2])
    assert loaded(rec) == source(tiny, tmp_path, box_threshold=0.0, text_threshold=0.0, max_boxes_per_class=100)(rec) != []


def test_hub_id_missing_from_the_offline_cache_names_key_and_fix(offline_hub: Path) -> None:
    with pytest.raises(OSError, match=r"boxes\.grounding_dino\.model: cannot load Grounding-DINO 'wsss-test/absent'.*"
                                      r"save_pretrained"):
        load_grounding_dino("wsss-test/absent", torch.device("cpu"))
