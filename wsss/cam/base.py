"""The CAM-stage interface: one activation map in [0, 1] per class the labels stage found."""
from __future__ import annotations

from typing import Any, Protocol

import numpy as np

from wsss.record import Record, Resources


class CamMethod(Protocol):
    """Built as ``Method(params, resources)``; called per image.

    ``release`` is an optional capability with a default: a method that hooks a shared model (the
    classifier) removes its hooks there, so another method can be built on the same model (the demo).
    """

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        """{class: HxW float32 map in [0, 1] at image resolution} for ``rec.classes``."""
        ...

    def release(self) -> None:
        """Undo what building the method did to shared models (default: nothing)."""
