"""Building any pytorch-grad-cam method by name, with the care a few of them need.

- FullGrad ignores the target layer and uses every Conv2d / BatchNorm2d with a bias, matched by
  exact type: timm's ``BatchNormAct2d`` and bias-free convolutions leave it with no layer at all
  on EfficientNets. :class:`FullGradAnyNorm` matches subclasses too.
- AblationCAM on a ViT needs the token-aware ablation layer.
- ScoreCAM and AblationCAM run one forward pass per channel; ``batch_size`` bounds the memory.
- ShapleyCAM works on CNN layers only; on a ViT it is refused with a clear error.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytorch_grad_cam
import torch
from pytorch_grad_cam.ablation_layer import AblationLayerVit
from pytorch_grad_cam.base_cam import BaseCAM
from pytorch_grad_cam.utils.find_layers import find_layer_predicate_recursive
from torch import nn


def cam_method_names() -> list[str]:
    """Every CAM class pytorch-grad-cam exports (GradCAM, ScoreCAM, EigenCAM, ...)."""
    return sorted(n for n in dir(pytorch_grad_cam)
                  if isinstance(getattr(pytorch_grad_cam, n), type) and issubclass(getattr(pytorch_grad_cam, n), BaseCAM))


def _has_2d_bias(layer: nn.Module) -> bool:
    return isinstance(layer, (nn.Conv2d, nn.BatchNorm2d)) and getattr(layer, "bias", None) is not None


class FullGradAnyNorm(pytorch_grad_cam.FullGrad):
    """FullGrad over every bias-carrying Conv2d / BatchNorm2d, subclasses included."""

    def __init__(self, model: nn.Module, target_layers: list[nn.Module], reshape_transform: Callable | None = None) -> None:
        layers = find_layer_predicate_recursive(model, _has_2d_bias)
        if not layers:
            raise ValueError(f"FullGrad: {type(model).__name__} has no Conv2d/BatchNorm2d with a bias; choose another method")
        BaseCAM.__init__(self, model, layers, reshape_transform, compute_input_gradient=True)
        self.bias_data = [self.get_bias_data(layer).cpu().numpy() for layer in layers]


def build_cam(method: str, model: nn.Module, layer: nn.Module, reshape_transform: Callable | None = None,
              kind: str = "cnn", batch_size: int = 16) -> BaseCAM:
    """A pytorch-grad-cam object for ``method`` on ``layer``."""
    names = cam_method_names()
    if method not in names:
        raise ValueError(f"unknown CAM method '{method}'; pytorch-grad-cam has {names}")
    if method == "ShapleyCAM" and kind == "vit":
        raise ValueError("ShapleyCAM: pytorch-grad-cam supports it on CNN layers only (its weights need 4D "
                         "activations, and CPU flash attention has no second-order gradient); choose another method")
    if method == "FullGrad":
        return FullGradAnyNorm(model, [], reshape_transform)
    if method == "AblationCAM":
        kwargs = {"batch_size": batch_size}
        if kind == "vit":
            kwargs["ablation_layer"] = AblationLayerVit()
        return pytorch_grad_cam.AblationCAM(model, [layer], reshape_transform, **kwargs)
    cam = getattr(pytorch_grad_cam, method)(model=model, target_layers=[layer], reshape_transform=reshape_transform)
    if method == "ScoreCAM":
        cam.batch_size = batch_size  # read by ScoreCAM.get_cam_weights
    return cam


def run_cam(cam: BaseCAM, x: torch.Tensor, targets: list[Callable], aug_smooth: bool = False,
            eigen_smooth: bool = False) -> np.ndarray:
    """``(N, H, W)`` maps at the input size; FullGrad's per-layer buffers are fine with any batch."""
    return cam(input_tensor=x, targets=targets, aug_smooth=aug_smooth, eigen_smooth=eigen_smooth)
