"""Box source ``grounding_dino`` (paper 003): boxes for the image's labelled classes from class-name prompts.

Uses transformers' GroundingDinoForObjectDetection and its processor, loaded from a local folder
(offline) or a hub id such as IDEA-Research/grounding-dino-tiny (online, cached by transformers).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import torch

from wsss.boxes.base import BoxSource
from wsss.data.base import Box
from wsss.models.weights import PUBLISHED
from wsss.record import Record, Resources


@dataclasses.dataclass
class GroundingDinoParams:
    model: str = "checkpoints/grounding-dino-tiny"  # local folder, or a hub id when online
    box_threshold: float = 0.35
    text_threshold: float = 0.25
    class_names: list[str] | None = None  # prompt phrases for classes 1..K; null = the data set's names
    max_boxes_per_class: int = 10


def load_grounding_dino(model_id: str, device: torch.device) -> tuple[Any, Any]:
    """(model, processor); a path-like id must be an existing folder, anything else is a hub id (online)."""
    from transformers import AutoProcessor, GroundingDinoForObjectDetection

    if (model_id.startswith((".", "/", "~")) or model_id.count("/") != 1) and not Path(model_id).expanduser().is_dir():
        raise FileNotFoundError(f"boxes.grounding_dino.model: no Grounding-DINO folder at '{Path(model_id).resolve()}'. "
                                f"Save one there ({PUBLISHED['grounding_dino']}) or give a hub id when online.")
    try:
        model = GroundingDinoForObjectDetection.from_pretrained(model_id).to(device).eval()
        processor = AutoProcessor.from_pretrained(model_id)
    except OSError as e:  # offline hub id or incomplete folder: Hugging Face's message names neither key nor fix
        reason = (str(e).strip().splitlines() or [""])[0][:200]
        raise OSError(f"boxes.grounding_dino.model: cannot load Grounding-DINO '{model_id}' ({reason}). Offline, point "
                      f"it at a local copy: a folder written by model.save_pretrained(DIR) and "
                      f"processor.save_pretrained(DIR) from {PUBLISHED['grounding_dino']}, e.g. "
                      f"--set boxes.grounding_dino.model=/path/to/grounding-dino-tiny") from e
    return model, processor


def detect(model: Any, processor: Any, image: Any, phrases: dict[int, str], box_threshold: float,
           text_threshold: float, device: torch.device) -> list[Box]:
    """One forward pass with all phrases in one prompt ('cat. dog.'); each box goes to the phrase it names."""
    if not phrases:
        return []
    prompt = " ".join(f"{p.lower().strip()}." for p in phrases.values())
    inputs = processor(images=image, text=prompt, return_tensors="pt").to(device)
    with torch.no_grad():
        outputs = model(**inputs)
    h, w = image.shape[:2]
    result = processor.post_process_grounded_object_detection(
        outputs, inputs["input_ids"], threshold=box_threshold, text_threshold=text_threshold, target_sizes=[(h, w)])[0]
    labels = result["text_labels"] if "text_labels" in result else result["labels"]
    boxes = []
    for (x0, y0, x1, y1), score, text in zip(result["boxes"].tolist(), result["scores"].tolist(), labels):
        # the decoded label is the span of prompt tokens above text_threshold: match it to a class phrase
        hits = [c for c, p in phrases.items() if p.lower().strip() in str(text) or str(text) in p.lower()]
        if not hits or not str(text).strip():
            continue
        boxes.append(Box(hits[0], max(int(x0), 0), max(int(y0), 0), min(int(round(x1)), w), min(int(round(y1)), h),
                         float(score)))
    return [b for b in boxes if b.x1 > b.x0 and b.y1 > b.y0]


class GroundingDinoBoxes(BoxSource):
    def __init__(self, params: GroundingDinoParams, resources: Resources) -> None:
        self.p = params
        self.device = resources.device
        self.names = params.class_names or list(resources.class_names[1:])
        self.model, self.processor = resources.get(f"grounding_dino:{params.model}",
                                                   lambda: load_grounding_dino(params.model, resources.device))

    def __call__(self, rec: Record) -> list[Box]:
        phrases = {c: self.names[c - 1] for c in rec.classes}
        boxes = detect(self.model, self.processor, rec.image, phrases, self.p.box_threshold, self.p.text_threshold,
                       self.device)
        out = []
        for c in phrases:
            out += sorted((b for b in boxes if b.cls == c), key=lambda b: -b.score)[: self.p.max_boxes_per_class]
        return out
