"""wsss: weakly-supervised semantic segmentation and auto-annotation.

Stage one turns image-level knowledge into pixel pseudo-labels
(data -> labels -> cam -> boxes -> masks -> pseudo); stage two trains a segmentation model on
them (train) and everything is scored against ground truth where it exists (evaluation).

    import wsss
    labeler = wsss.Labeler.from_config("photos", classes=["cat", "dog"])
    result = labeler(image)   # .label_map, .classes, .scores, .boxes, .masks(), .overlay()

The API names load on first use, so ``import wsss`` (and ``wsss --help``) stays fast.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"
__all__ = ["LabelResult", "Labeler", "evaluate", "export"]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from wsss import api

        return getattr(api, name)
    raise AttributeError(f"module 'wsss' has no attribute '{name}'")
