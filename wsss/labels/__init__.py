"""Labels stage: which classes an image contains, chosen by ``labels.name``.

Interface: ``source(record) -> (classes, scores)`` with foreground class indices (1..K).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import torch

from wsss.classifier import get_classifier
from wsss.classifier.model import Classifier, cached_output_probabilities
from wsss.labels.base import LabelSource
from wsss.labels.clip import ClipLabelParams, ClipLabels
from wsss.record import Record, Resources
from wsss.registry import Registry

LABEL_SOURCES = Registry("labels")


def class_probabilities(classifier: Classifier, rec: Record) -> dict[int, float]:
    """Each data-set class's probability for ``rec``'s image (the forward pass is kept in ``rec.cache``:
    the CAM stage of an object class reuses it)."""
    out = cached_output_probabilities(classifier, rec.image, rec.cache)
    return {c: classifier.class_probability(out, c) for c in classifier.class_groups}


class GivenLabels(LabelSource):
    """The data set's own image-level labels."""

    def __init__(self, params: None, resources: Resources) -> None:
        pass

    def __call__(self, rec: Record) -> tuple[list[int], dict[int, float]]:
        if rec.sample.labels is None:
            raise ValueError(f"image '{rec.sample.id}' has no image-level labels; add them to the data set "
                             "or set labels.name: classifier")
        return list(rec.sample.labels), {c: 1.0 for c in rec.sample.labels}


@dataclasses.dataclass
class ClassifierLabelParams:
    threshold: float = 0.5
    at_least_one: bool = True  # keep the top class when none passes the threshold
    top_k: int = 0  # 0 = no limit
    # an image whose best class probability is below this is labelled but flagged `low_confidence`
    # in the manifest (and counted in the summary): check those first. 0 = never flag
    min_confidence: float = 0.0


class ClassifierLabels(LabelSource):
    """Classes whose classifier probability passes a threshold (at most ``top_k``, most probable first)."""

    autocast_safe = True  # a forward pass only; the probabilities come out of softmax in float32

    def __init__(self, params: ClassifierLabelParams, resources: Resources) -> None:
        self.p = params
        self.classifier = get_classifier(resources)
        self.network: torch.nn.Module = self.classifier.model  # the batched forward's (compile() swaps it)

    def batch(self, recs: Sequence[Record], fuse: bool | None = None) -> list[tuple[list[int], dict[int, float]]]:
        """Labels of several images from one forward pass (``fuse``; default: when the classifier is not on
        the CPU; on the CPU each image keeps its own pass: MKL picks its matrix kernel by batch size, so a
        fused batch would change the last bits of the probabilities, and it is no faster there). The
        probabilities go to each record's cache, where ``__call__`` and the CAM stage of an object class
        find them. Every input is resized to the one square input size, so any images batch together."""
        fuse = torch.device(self.classifier.device).type != "cpu" if fuse is None else fuse
        size = self.classifier.input_size
        key = ("output_probs", size)  # cached_output_probabilities' key for the default input size
        todo = [r for r in recs if key not in r.cache]
        if fuse and len(todo) > 1:
            with torch.no_grad():
                logits = self.network(self.classifier.preprocess([r.image for r in todo], size))
            for rec, probs in zip(todo, self.classifier.probabilities(logits.float()).cpu()):
                rec.cache[key] = probs
        return [self(rec) for rec in recs]

    def compile(self) -> None:
        """``torch.compile`` the network of the batched forward (the CAM stage keeps the eager one: its
        hooks and backward pass)."""
        self.network = torch.compile(self.classifier.model)

    def __call__(self, rec: Record) -> tuple[list[int], dict[int, float]]:
        probs = class_probabilities(self.classifier, rec)
        ranked = sorted(probs, key=probs.get, reverse=True)
        keep = [c for c in ranked if probs[c] >= self.p.threshold]
        if not keep and self.p.at_least_one:
            keep = ranked[:1]
        if self.p.top_k:
            keep = keep[: self.p.top_k]
        best = probs[ranked[0]] if ranked else 0.0
        if best < self.p.min_confidence:
            rec.extras["low_confidence"] = {"best": round(float(best), 4), "min_confidence": self.p.min_confidence}
        return sorted(keep), probs


LABEL_SOURCES.register("given")(GivenLabels)
LABEL_SOURCES.register("classifier", params=ClassifierLabelParams)(ClassifierLabels)

LABEL_SOURCES.register("clip", params=ClipLabelParams)(ClipLabels)
