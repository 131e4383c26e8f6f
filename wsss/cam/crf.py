"""Dense CRF (Krähenbühl & Koltun) over class probabilities, through pydensecrf2.

pydensecrf2 wants C-contiguous float32 unaries and a C-contiguous uint8 RGB image.
"""
from __future__ import annotations

import dataclasses

import numpy as np


@dataclasses.dataclass
class CrfParams:
    iterations: int = 5
    gaussian_sxy: float = 3.0  # smoothness kernel: spatial scale (px)
    gaussian_compat: float = 3.0
    bilateral_sxy: float = 50.0  # appearance kernel: spatial scale (px)
    bilateral_srgb: float = 13.0  # appearance kernel: colour scale
    bilateral_compat: float = 10.0


def dense_crf(image: np.ndarray, probs: np.ndarray, p: CrfParams | None = None) -> np.ndarray:
    """Mean-field marginals ``(K, H, W)`` for an RGB uint8 image and ``(K, H, W)`` probabilities."""
    import pydensecrf.densecrf as dcrf

    p = p or CrfParams()
    k, h, w = probs.shape
    if image.shape[:2] != (h, w):
        raise ValueError(f"dense_crf: image {image.shape[:2]} and probabilities {(h, w)} differ in size")
    probs = np.clip(np.asarray(probs, np.float32), 1e-5, 1.0)
    probs = probs / probs.sum(0, keepdims=True)
    crf = dcrf.DenseCRF2D(w, h, k)
    crf.setUnaryEnergy(np.ascontiguousarray(-np.log(probs).reshape(k, -1), dtype=np.float32))
    crf.addPairwiseGaussian(sxy=p.gaussian_sxy, compat=p.gaussian_compat)
    crf.addPairwiseBilateral(sxy=p.bilateral_sxy, srgb=p.bilateral_srgb,
                             rgbim=np.require(image[..., :3], np.uint8, ["C", "W"]), compat=p.bilateral_compat)
    q = crf.inference(p.iterations)
    return np.asarray(q, np.float32).reshape(k, h, w)


def crf_foreground(image: np.ndarray, fg: np.ndarray, p: CrfParams | None = None) -> np.ndarray:
    """Paper 002's refinement: a [0, 1] foreground map and its complement through the CRF; returns P(fg)."""
    fg = np.clip(np.asarray(fg, np.float32), 0.0, 1.0)
    return dense_crf(image, np.stack([1.0 - fg, fg]), p)[1]
