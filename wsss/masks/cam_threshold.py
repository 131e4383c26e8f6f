"""The CAM-alone baseline: a pixel belongs to its strongest class when that CAM passes t."""
from __future__ import annotations

import dataclasses

import numpy as np

from wsss.masks.base import Refiner
from wsss.masks.compose import compose_label_map
from wsss.record import Record, Resources


@dataclasses.dataclass
class CamThresholdParams:
    threshold: float = 0.3


class CamThreshold(Refiner):
    pool_safe = True  # numpy only

    def __init__(self, params: CamThresholdParams, resources: Resources) -> None:
        self.p = params

    def __call__(self, rec: Record) -> np.ndarray:
        masks = {c: cam >= self.p.threshold for c, cam in rec.cams.items()}
        return compose_label_map(rec.image.shape[:2], masks, rec.cams)
