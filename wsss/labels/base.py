"""The labels-stage interface: which foreground classes an image shows, with a score per class."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

from wsss.record import Record, Resources


class LabelSource(Protocol):
    """Built as ``Source(params, resources)`` (params is None for a source without any); called per image.

    Optional capabilities, declared here with defaults (subclass this protocol to inherit them):
    ``batch`` labels several images at once (the batched stage one, ``pseudo.batch_size > 1``);
    ``autocast_safe`` says ``batch`` may run under bf16 ``torch.autocast`` on CUDA (``pseudo.autocast``);
    ``compile`` puts the source's network through ``torch.compile`` (``pseudo.compile``).
    """

    autocast_safe: ClassVar[bool] = False

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> tuple[list[int], dict[int, float]]:
        """(present classes 1..K sorted, score per class) for ``rec``; may add JSON-able notes to ``rec.extras``."""
        ...

    def batch(self, recs: Sequence[Record]) -> list[tuple[list[int], dict[int, float]]]:
        """What ``__call__`` gives each record, for several records (default: one call per record).

        The batched pipeline seeds once per batch, not per image: a source that draws random numbers
        keeps this default so its results never depend on which images share a batch.
        """
        return [self(rec) for rec in recs]

    def compile(self) -> None:
        """Compile the source's network for the batched path (default: nothing to compile)."""
