"""What travels through the stage-one pipeline for one image, and the shared model cache."""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
import torch

from wsss.data.base import Box, Sample


@dataclasses.dataclass
class Record:
    """One image on its way through labels -> cam -> boxes -> masks.

    Each stage reads what it needs and the pipeline stores what it returns; ``cache`` lets stages
    share per-image work (an image embedding computed once, for instance).
    """

    sample: Sample
    classes: list[int] = dataclasses.field(default_factory=list)
    scores: dict[int, float] = dataclasses.field(default_factory=dict)
    cams: dict[int, np.ndarray] = dataclasses.field(default_factory=dict)  # HxW float32 in [0, 1]
    boxes: list[Box] = dataclasses.field(default_factory=list)
    label_map: np.ndarray | None = None  # HxW uint8, 255 = ignore
    timings: dict[str, float] = dataclasses.field(default_factory=dict)
    cache: dict[str, Any] = dataclasses.field(default_factory=dict)
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)  # small JSON-able stage outputs for the manifest (e.g. ROAD)

    @property
    def image(self) -> np.ndarray:
        return self.sample.image


class Resources:
    """Models shared by the stages of one process, each loaded once on first use."""

    def __init__(self, cfg: Any, class_names: list[str], work_dir: str | Path, device: torch.device) -> None:
        self.cfg = cfg
        self.class_names = class_names
        self.work_dir = Path(work_dir)
        self.device = device
        self._models: dict[str, Any] = {}

    def get(self, key: str, loader: Any) -> Any:
        if key not in self._models:
            self._models[key] = loader()
        return self._models[key]
