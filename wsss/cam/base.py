"""The CAM-stage interface: one activation map in [0, 1] per class the labels stage found."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from wsss.record import Record, Resources


class CamMethod(Protocol):
    """Built as ``Method(params, resources)``; called per image.

    Optional capabilities, declared here with defaults (subclass this protocol to inherit them):
    ``release``: a method that hooks a shared model (the classifier) removes its hooks there, so another
    method can be built on the same model (the demo); ``batch``: the maps of several images at once (the
    batched stage one, ``pseudo.batch_size > 1``); ``autocast_safe``: ``batch`` may run under bf16
    ``torch.autocast`` on CUDA (``pseudo.autocast``).
    """

    autocast_safe: ClassVar[bool] = False

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> dict[int, np.ndarray]:
        """{class: HxW float32 map in [0, 1] at image resolution} for ``rec.classes``."""
        ...

    def batch(self, recs: Sequence[Record]) -> list[dict[int, np.ndarray]]:
        """What ``__call__`` gives each record, for several records (default: one call per record).

        The batched pipeline seeds once per batch, not per image: a method that draws random numbers
        keeps this default so its maps never depend on which images share a batch.
        """
        return [self(rec) for rec in recs]

    def release(self) -> None:
        """Undo what building the method did to shared models (default: nothing)."""
