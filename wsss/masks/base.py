"""The masks-stage interface: a refiner turns localisation (CAMs, boxes) into one label map."""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Protocol

import numpy as np

from wsss.cam.base import CamMethod
from wsss.record import Record, Resources

StageImage = tuple[str, np.ndarray]  # (caption, RGB uint8 picture or HxW mask, or a stack of masks)


class Refiner(Protocol):
    """Built as ``Refiner(params, resources)``; called per image after the boxes stage.

    Optional capabilities, declared here with defaults (subclass this protocol to inherit them):

    * ``stage_images``: a refiner that has intermediate results worth seeing (GrabCut's seed, SAM's
      candidate masks) returns them, and the demo and overlays show them (default: no pictures).
    * ``reads_cams`` / ``uses_cam_stage``: whether the label map depends on the CAM stage. The pipeline
      skips the CAM stage when neither the refiner nor the boxes stage needs it (default: it does).
    * ``pool_safe``: ``__call__`` runs no model and touches no shared state, so the batched stage one
      may call it from a worker pool, threads or processes (``pseudo.workers``; default: main thread).
    * ``prepare_batch``: per-image work for several images at once before ``__call__`` runs on each
      (the seam for batched image encoders such as SAM's; default: nothing).
    * ``autocast_safe``: ``prepare_batch`` and ``__call__`` may run under bf16 ``torch.autocast`` on CUDA
      (``pseudo.autocast``) when the batched path calls them in the main thread (default: float32).
    * ``compile``: ``torch.compile`` the refiner's encoder (``pseudo.compile``; default: nothing).
    """

    reads_cams: ClassVar[bool] = True
    pool_safe: ClassVar[bool] = False
    autocast_safe: ClassVar[bool] = False

    def __init__(self, params: Any, resources: Resources) -> None: ...

    def __call__(self, rec: Record) -> np.ndarray:
        """HxW uint8 label map: 0 background, 1..K classes, 255 uncertain."""
        ...

    def stage_images(self, rec: Record) -> list[StageImage]:
        """Pictures of the refiner's intermediate steps for ``rec`` (after ``__call__`` ran on it)."""
        return []

    def uses_cam_stage(self, cam: CamMethod) -> bool:
        """True when the label map depends on what ``cam`` computes: ``rec.cams`` (``reads_cams``) or work
        it left in ``rec.cache`` for this refiner. False lets the pipeline skip the CAM stage."""
        return self.reads_cams

    def prepare_batch(self, recs: Sequence[Record]) -> None:
        """Precompute per-image work for ``recs`` (e.g. image embeddings into ``rec.cache``), in the main
        process, before ``__call__`` runs on each record (default: nothing)."""

    def compile(self) -> None:
        """Compile the refiner's network for the batched path (default: nothing to compile)."""
