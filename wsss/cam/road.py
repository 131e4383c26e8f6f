"""ROAD (remove and debias) score of a CAM: how much the class score drops when the most relevant
pixels are imputed away, against when the least relevant ones are (pytorch-grad-cam's ROADCombined).

Higher is better: a faithful CAM points at the pixels the classifier needs.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch
from pytorch_grad_cam.metrics.road import ROADCombined
from torch import nn


def road_scores(model: nn.Module, x: torch.Tensor, cams: np.ndarray, targets: list[Callable],
                percentiles: list[int] | tuple[int, ...] = (20, 40, 60, 80)) -> np.ndarray:
    """One ROAD score per ``(x[i], cams[i], targets[i])``; ``cams`` are at the input size of ``x``."""
    if cams.shape[0] != x.shape[0] or cams.shape[1:] != tuple(x.shape[2:]):
        raise ValueError(f"ROAD: cams {cams.shape} do not match inputs {tuple(x.shape)}")
    metric = ROADCombined(percentiles=list(percentiles))
    with torch.no_grad():
        return np.asarray(metric(x, cams.astype(np.float32), targets, model), np.float64).reshape(-1)
