"""Box source ``grounding_dino`` (paper 003): boxes for the image's labelled classes from text prompts.

Uses transformers' GroundingDinoForObjectDetection and its processor, loaded by ``from_pretrained``
from a local folder or a hub id such as IDEA-Research/grounding-dino-tiny (downloaded once into the
Hugging Face cache; read from it offline).

Each class is prompted by its name, or by the prompt(s) of its ``ontology`` entry, which may also
carry the class's own ``box_threshold`` / ``text_threshold``. The prompts of an image's classes are
joined into one caption (``"cat . tabby cat . dog ."``); a box goes to the class whose prompt tokens
score highest for it. A caption longer than the model's text limit (``max_text_len``, 256 tokens for
the released models: past it the model silently drops tokens) is split into several captions by
class; the image backbone, which does not depend on the text, runs once for all of them.
"""
from __future__ import annotations

import contextlib
import dataclasses
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.boxes.base import BoxSource
from wsss.data.base import Box
from wsss.labels.clip import check_class_keys  # the same rule for every per-class mapping
from wsss.models.weights import PUBLISHED
from wsss.paths import wsss_home
from wsss.record import Record, Resources

_PATCH_LOCK = threading.Lock()  # one backbone_once at a time, so two threads never stack their patches


@dataclasses.dataclass
class GroundingDinoClassPrompt:
    """One class in ``boxes.grounding_dino.ontology``: what to ask for, and optionally its own thresholds."""

    prompt: str | list[str] = ""  # one phrase or several (a box may match any of them); '' = the class name
    box_threshold: float | None = None  # null = boxes.grounding_dino.box_threshold
    text_threshold: float | None = None  # null = boxes.grounding_dino.text_threshold

    def __post_init__(self) -> None:
        phrases = [self.prompt] if isinstance(self.prompt, str) else list(self.prompt)
        if self.prompt != "" and (not phrases or any(not isinstance(p, str) or not clean(p) for p in phrases)):
            raise ValueError(f"prompt {self.prompt!r}: give a phrase or a non-empty list of non-empty phrases")

    def phrases(self, default: str) -> list[str]:
        if self.prompt == "":
            return [clean(default)]
        return [clean(p) for p in ([self.prompt] if isinstance(self.prompt, str) else self.prompt)]


@dataclasses.dataclass
class GroundingDinoParams:
    # local folder, or a hub id (cached by transformers); default: $WSSS_HOME/checkpoints/grounding-dino-tiny
    model: str = dataclasses.field(default_factory=lambda: str(wsss_home() / "checkpoints" / "grounding-dino-tiny"))
    box_threshold: float = 0.35  # a box's score (its best prompt token) must exceed this
    text_threshold: float = 0.25  # ... and this (Grounding-DINO's phrase rule; matters when set above box_threshold)
    class_names: list[str] | None = None  # prompt phrases for classes 1..K; null = the data set's names
    max_boxes_per_class: int = 10
    # data-set class name -> {prompt: str | [str], box_threshold, text_threshold}; unlisted classes: name, global cuts
    ontology: dict[str, GroundingDinoClassPrompt] = dataclasses.field(default_factory=dict)

    def __post_init__(self) -> None:
        for name, entry in self.ontology.items():  # Python callers may pass plain mappings
            if isinstance(entry, dict):
                self.ontology[name] = GroundingDinoClassPrompt(**entry)
            elif not isinstance(entry, GroundingDinoClassPrompt):
                raise ValueError(f"boxes.grounding_dino.ontology.{name}: expected a mapping with prompt, box_threshold, "
                                 f"text_threshold; got {entry!r}")


@dataclasses.dataclass(frozen=True)
class ClassQuery:
    """What Grounding-DINO is asked for one class: its phrases and the cuts its boxes must pass."""

    cls: int  # 1..K
    phrases: tuple[str, ...]
    box_threshold: float
    text_threshold: float


def clean(phrase: str) -> str:
    """Lower case without a trailing '.', which is the caption's phrase separator."""
    return phrase.strip().rstrip(".").strip().lower()


def load_grounding_dino(model_id: str, device: torch.device) -> tuple[Any, Any]:
    """(model, processor); a path-like id must be an existing folder, anything else is a hub id (online, or cached)."""
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    if (model_id.startswith((".", "/", "~")) or model_id.count("/") != 1) and not Path(model_id).expanduser().is_dir():
        raise FileNotFoundError(f"boxes.grounding_dino.model: no Grounding-DINO folder at '{Path(model_id).resolve()}'. "
                                f"Save one there ({PUBLISHED['grounding_dino']}) or give a hub id when online.")
    source = str(Path(model_id).expanduser()) if Path(model_id).expanduser().is_dir() else model_id
    try:
        model = GroundingDinoForObjectDetection.from_pretrained(source).to(device).eval()
        processor = AutoProcessor.from_pretrained(source)
    except OSError as e:  # offline hub id or incomplete folder: Hugging Face's message names neither key nor fix
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise OSError(f"boxes.grounding_dino.model: cannot load Grounding-DINO '{model_id}' ({reason}). Offline, point "
                      f"it at a local copy: a folder written by model.save_pretrained(DIR) and "
                      f"processor.save_pretrained(DIR) from {PUBLISHED['grounding_dino']}, e.g. "
                      f"--set boxes.grounding_dino.model=/path/to/grounding-dino-tiny") from e
    return model, processor


def text_limit(model: Any, tokenizer: Any) -> int:
    """Tokens one caption may hold, [CLS] and [SEP] included: the model's max_text_len (256 for the released
    models), or the tokenizer's limit if smaller."""
    limit = int(getattr(model.config, "max_text_len", 256))
    tok_max = getattr(tokenizer, "model_max_length", None)
    return min(limit, int(tok_max)) if isinstance(tok_max, int) and 0 < tok_max < 1_000_000 else limit


def phrase_tokens(tokenizer: Any, phrases: Iterable[str]) -> dict[str, list[int]]:
    """Token ids of each phrase alone (BERT splits on spaces and punctuation, so a caption's ids are the
    concatenation of its phrases' ids and the separators': the span of every phrase is known exactly)."""
    return {p: list(tokenizer(p, add_special_tokens=False)["input_ids"]) for p in phrases}


def caption_length(query: ClassQuery, tokens: dict[str, list[int]]) -> int:
    return sum(len(tokens[p]) + 1 for p in query.phrases)  # each phrase and its '.'


def chunk_queries(queries: list[ClassQuery], tokens: dict[str, list[int]], limit: int) -> list[list[ClassQuery]]:
    """Classes in order, packed greedily into captions of at most ``limit`` tokens (a class never splits)."""
    chunks: list[list[ClassQuery]] = []
    used = limit
    for q in queries:
        need = caption_length(q, tokens)
        if need + 2 > limit:
            raise ValueError(f"boxes.grounding_dino: the prompts of class {q.cls} ({', '.join(q.phrases)}) take {need + 2} "
                             f"tokens, more than the model's text limit of {limit}; shorten them")
        if used + need > limit:
            chunks.append([])
            used = 2  # [CLS] and [SEP]
        chunks[-1].append(q)
        used += need
    return chunks


def encode_caption(chunk: list[ClassQuery], tokens: dict[str, list[int]], tokenizer: Any,
                   device: torch.device) -> tuple[dict[str, torch.Tensor], list[tuple[int, int, int]]]:
    """Text inputs for ``"p1 . p2 . ..."`` and the (class, start, end) token span of every phrase."""
    sep_dot = tokenizer(".", add_special_tokens=False)["input_ids"]
    ids, spans = [tokenizer.cls_token_id], []
    for q in chunk:
        for p in q.phrases:
            spans.append((q.cls, len(ids), len(ids) + len(tokens[p])))
            ids += tokens[p] + sep_dot
    ids.append(tokenizer.sep_token_id)
    input_ids = torch.tensor([ids], device=device)
    return {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
            "token_type_ids": torch.zeros_like(input_ids)}, spans


@contextlib.contextmanager
def backbone_once(model: Any) -> Iterator[None]:
    """Run Grounding-DINO's image backbone once for several captions of the same image.

    transformers has no argument to pass precomputed image features (``encoder_outputs`` are already
    fused with the text), but its backbone module (``model.model.backbone``: Swin + position
    embeddings) sees only the pixels, so its output is reused while the same ``pixel_values`` come
    back (an identity check: other pixels, e.g. another thread's image, are encoded afresh). A model
    without that module runs its backbone every pass, with the same boxes.
    """
    backbone = getattr(getattr(model, "model", None), "backbone", None)
    if not isinstance(backbone, torch.nn.Module):
        yield
        return
    with _PATCH_LOCK:
        own = backbone.__dict__.get("forward")  # e.g. an accelerate hook; restored as it was
        original = backbone.forward
        cache: dict[str, Any] = {}

        def forward(pixel_values: torch.Tensor, pixel_mask: torch.Tensor) -> tuple[list, list]:
            if cache.get("pixels") is not pixel_values or cache.get("mask") is not pixel_mask:
                cache.update(pixels=pixel_values, mask=pixel_mask, out=original(pixel_values, pixel_mask))
            features, positions = cache["out"]
            return list(features), list(positions)  # the model appends to the position list

        backbone.forward = forward
        try:
            yield
        finally:
            if own is None:
                del backbone.forward
            else:
                backbone.forward = own


def boxes_from_outputs(outputs: Any, spans: list[tuple[int, int, int]], cuts: dict[int, tuple[float, float]],
                       size: tuple[int, int]) -> list[Box]:
    """Each query box goes to the class whose phrase tokens score highest; kept if it passes that class's cuts."""
    h, w = size
    probs = outputs.logits[0].sigmoid()  # (queries, max_text_len)
    per_span = torch.stack([probs[:, s:e].max(-1).values for _, s, e in spans], -1)  # (queries, phrases)
    score, best = per_span.max(-1)
    cx, cy, bw, bh = outputs.pred_boxes[0].unbind(-1)  # normalised centre / size
    corners = torch.stack([(cx - bw / 2) * w, (cy - bh / 2) * h, (cx + bw / 2) * w, (cy + bh / 2) * h], -1)
    boxes = []
    for (x0, y0, x1, y1), s, b in zip(corners.tolist(), score.tolist(), best.tolist()):
        cls = spans[b][0]
        box_cut, text_cut = cuts[cls]
        if s > box_cut and s > text_cut:
            boxes.append(Box(cls, max(int(x0), 0), max(int(y0), 0), min(int(round(x1)), w), min(int(round(y1)), h), s))
    return [b for b in boxes if b.x1 > b.x0 and b.y1 > b.y0]


def detect_queries(model: Any, processor: Any, image: np.ndarray, queries: list[ClassQuery],
                   device: torch.device) -> list[Box]:
    """Boxes for ``queries`` on one image: one forward pass per caption chunk, the image encoded once."""
    if not queries:
        return []
    tokenizer = processor.tokenizer
    tokens = phrase_tokens(tokenizer, {p for q in queries for p in q.phrases})
    chunks = chunk_queries(queries, tokens, text_limit(model, tokenizer))
    pixels = processor.image_processor(images=image, return_tensors="pt").to(device)
    pixel_values = pixels["pixel_values"]
    pixel_mask = pixels.get("pixel_mask")  # one tensor for all passes, so backbone_once recognises the image
    if pixel_mask is None:
        pixel_mask = torch.ones(pixel_values.shape[:1] + pixel_values.shape[2:], dtype=torch.long, device=device)
    cuts = {q.cls: (q.box_threshold, q.text_threshold) for q in queries}
    boxes: list[Box] = []
    reuse = backbone_once(model) if len(chunks) > 1 else contextlib.nullcontext()
    with torch.no_grad(), reuse:
        for chunk in chunks:
            text, spans = encode_caption(chunk, tokens, tokenizer, device)
            outputs = model(pixel_values=pixel_values, pixel_mask=pixel_mask, **text)
            boxes += boxes_from_outputs(outputs, spans, cuts, image.shape[:2])
    return boxes


def detect(model: Any, processor: Any, image: Any, phrases: dict[int, str], box_threshold: float,
           text_threshold: float, device: torch.device) -> list[Box]:
    """One phrase per class and one pair of thresholds for all (the simple form of :func:`detect_queries`)."""
    queries = [ClassQuery(c, (clean(p),), box_threshold, text_threshold) for c, p in phrases.items()]
    return detect_queries(model, processor, image, queries, device)


class GroundingDinoBoxes(BoxSource):
    """``boxes.name: grounding_dino``."""

    def __init__(self, params: GroundingDinoParams, resources: Resources) -> None:
        self.p = params
        self.device = resources.device
        dataset_names = list(resources.class_names[1:])
        names = params.class_names or dataset_names
        if len(names) != len(dataset_names):
            raise ValueError(f"boxes.grounding_dino.class_names has {len(names)} names for {len(dataset_names)} classes")
        check_class_keys("boxes.grounding_dino.ontology", params.ontology, dataset_names)
        self.queries: dict[int, ClassQuery] = {}
        for c, (key, name) in enumerate(zip(dataset_names, names), start=1):
            entry = params.ontology.get(key, GroundingDinoClassPrompt())
            box_cut = params.box_threshold if entry.box_threshold is None else entry.box_threshold
            text_cut = params.text_threshold if entry.text_threshold is None else entry.text_threshold
            self.queries[c] = ClassQuery(c, tuple(dict.fromkeys(entry.phrases(name))), box_cut, text_cut)
        self.model, self.processor = resources.get(f"grounding_dino:{params.model}",
                                                   lambda: load_grounding_dino(params.model, resources.device))

    def __call__(self, rec: Record) -> list[Box]:
        queries = [self.queries[c] for c in rec.classes]
        boxes = detect_queries(self.model, self.processor, rec.image, queries, self.device)
        out = []
        for q in queries:
            out += sorted((b for b in boxes if b.cls == q.cls), key=lambda b: -b.score)[: self.p.max_boxes_per_class]
        return out
