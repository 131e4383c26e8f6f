"""The labels-stage interface: which foreground classes an image shows, with a score per class."""
from __future__ import annotations

from typing import Any, Protocol

from wsss.record import Record, Resources


class LabelSource(Protocol):
    """Built as ``Source(params, resources)`` (params is None for a source without any); called per image."""

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> tuple[list[int], dict[int, float]]:
        """(present classes 1..K sorted, score per class) for ``rec``; may add JSON-able notes to ``rec.extras``."""
        ...
