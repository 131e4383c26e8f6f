"""The masks-stage interface: a refiner turns localisation (CAMs, boxes) into one label map."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from wsss.record import Record, Resources

StageImage = tuple[str, np.ndarray]  # (caption, RGB uint8 picture or HxW mask, or a stack of masks)


class Refiner(Protocol):
    """Built as ``Refiner(params, resources)``; called per image after the boxes stage.

    ``stage_images`` is an optional capability with a default (no pictures): a refiner that has
    intermediate results worth seeing (GrabCut's seed, SAM's candidate masks) returns them, and the
    demo and overlays show them. Subclass this protocol to inherit the default.
    """

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> np.ndarray:
        """HxW uint8 label map: 0 background, 1..K classes, 255 uncertain."""
        ...

    def stage_images(self, rec: Record) -> list[StageImage]:
        """Pictures of the refiner's intermediate steps for ``rec`` (after ``__call__`` ran on it)."""
        return []
