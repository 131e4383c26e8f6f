"""Test-time inference of trained models: whole image or sliding window, multi-scale and flip."""
from __future__ import annotations

import dataclasses

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@dataclasses.dataclass
class TestOptions:
    mode: str = "whole"  # 'whole' (padded to a multiple of 32) or 'slide'
    crop: int = 512  # sliding window size
    stride: int = 341  # sliding window step
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False


def _scores(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    return out if model.outputs_probabilities else out.softmax(1)


def _whole(model: nn.Module, x: torch.Tensor, multiple: int = 32) -> torch.Tensor:
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    x = F.pad(x, (0, pw, 0, ph), mode="reflect" if min(h, w) > max(ph, pw) else "constant")
    return _scores(model, x)[..., :h, :w]


def _slide(model: nn.Module, x: torch.Tensor, crop: int, stride: int) -> torch.Tensor:
    """Average of overlapping ``crop`` windows (each padded like a whole image when the image is smaller)."""
    h, w = x.shape[-2:]
    total, count = None, torch.zeros((1, 1, h, w), device=x.device)
    ys = list(range(0, max(h - crop, 0) + 1, stride)) + ([h - crop] if h > crop and (h - crop) % stride else [])
    xs = list(range(0, max(w - crop, 0) + 1, stride)) + ([w - crop] if w > crop and (w - crop) % stride else [])
    for y0 in ys:
        for x0 in xs:
            win = _whole(model, x[..., y0:y0 + crop, x0:x0 + crop])
            total = torch.zeros((1, win.shape[1], h, w), device=x.device) if total is None else total
            total[..., y0:y0 + win.shape[-2], x0:x0 + win.shape[-1]] += win
            count[..., y0:y0 + win.shape[-2], x0:x0 + win.shape[-1]] += 1
    return total / count


@torch.no_grad()
def predict_tta(model: nn.Module, image: np.ndarray, mean: tuple, std: tuple, device: torch.device,
                opts: TestOptions) -> tuple[np.ndarray, np.ndarray]:
    """Label map (HxW uint8) and class scores (CxHxW) averaged over scales and flips."""
    h, w = image.shape[:2]
    x = torch.from_numpy(np.array(image)).to(device).permute(2, 0, 1)[None].float() / 255.0
    x = (x - torch.tensor(mean, device=device).view(1, 3, 1, 1)) / torch.tensor(std, device=device).view(1, 3, 1, 1)
    acc = None
    for s in opts.scales:
        xs = x if s == 1.0 else F.interpolate(x, scale_factor=s, mode="bilinear", align_corners=False)
        for flip in ([False, True] if opts.flip else [False]):
            xi = xs.flip(-1) if flip else xs
            out = _slide(model, xi, opts.crop, opts.stride) if opts.mode == "slide" else _whole(model, xi)
            out = out.flip(-1) if flip else out
            out = F.interpolate(out, size=(h, w), mode="bilinear", align_corners=False) if out.shape[-2:] != (h, w) \
                else out
            acc = out if acc is None else acc + out
    scores = acc[0] / (len(opts.scales) * (2 if opts.flip else 1))
    return scores.argmax(0).byte().cpu().numpy(), scores.float().cpu().numpy()
