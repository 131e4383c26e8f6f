"""Labels stage: which classes an image contains, chosen by ``labels.name``.

Interface: ``source(record) -> (classes, scores)`` with foreground class indices (1..K).
"""
from __future__ import annotations

import dataclasses

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

    def __init__(self, params: ClassifierLabelParams, resources: Resources) -> None:
        self.p = params
        self.classifier = get_classifier(resources)

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
