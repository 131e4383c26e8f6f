"""CAM stage: every pytorch-grad-cam method by name, over CNN and ViT backbones; ROAD per image."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from wsss.cam.gradcam import GradCamParams, GradCamStage
from wsss.cam.methods import cam_method_names
from wsss.classifier.model import Classifier
from wsss.data.base import Sample
from wsss.models.backbones import create_backbone, find_target_layer
from wsss.models.layers import find_guide_layer, resolve_target_layer
from wsss.record import Record, Resources

CPU = torch.device("cpu")
SIZES = {"test_resnet": 64, "test_vit": 32}
# ScoreCAM / AblationCAM run one pass per channel: small, but the slowest of the lot on 2 cores
METHODS = cam_method_names()


def _resources(model: nn.Module, size: int, k: int = 2, multilabel: bool = True) -> Resources:
    clf = Classifier(model, size, (0.5,) * 3, (0.5,) * 3, {c: [c - 1] for c in range(1, k + 1)},
                     find_target_layer(model, size), multilabel, CPU)
    res = Resources(None, ["background"] + [f"c{i}" for i in range(1, k + 1)], "/tmp", CPU)
    res.get("classifier", lambda: clf)
    return res


@pytest.fixture(scope="module")
def backbones() -> dict[str, Resources]:
    torch.manual_seed(0)
    return {n: _resources(create_backbone(n, 2, None, 32, s), s) for n, s in SIZES.items()}


@pytest.mark.parametrize("backbone", list(SIZES))
@pytest.mark.parametrize("method", METHODS)
def test_every_method_runs_on_cnn_and_vit(backbones: dict, backbone: str, method: str) -> None:
    rng = np.random.default_rng(0)
    rec = Record(Sample("x", rng.integers(0, 255, (30, 41, 3), dtype=np.uint8)), classes=[2])
    if method == "ShapleyCAM" and backbone == "test_vit":
        with pytest.raises(ValueError, match="CNN layers only"):
            GradCamStage(GradCamParams(method=method), backbones[backbone])
        return
    stage = GradCamStage(GradCamParams(method=method, batch_size=64), backbones[backbone])
    cams = stage(rec)
    assert set(cams) == {2}
    m = cams[2]
    assert m.shape == (30, 41) and m.dtype == np.float32
    assert np.isfinite(m).all() and m.min() >= 0.0 and m.max() <= 1.0


class RedDetector(nn.Module):
    """Class 1's logit is the mean redness: the evidence is exactly where the red pixels are."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Conv2d(3, 4, 1)
        with torch.no_grad():
            self.features.weight.zero_()
            self.features.bias.zero_()
            self.features.weight[0, 0] = 1.0  # red minus green/blue
            self.features.weight[0, 1] = -1.0
            self.features.weight[1, 2] = 1.0
        self.act = nn.ReLU()
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.fc.weight.zero_()
            self.fc.bias.zero_()
            self.fc.weight[0, 0] = 1.0
            self.fc.weight[1, 1] = 1.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.act(self.features(x)).mean((2, 3)))


@pytest.mark.parametrize("method", ["GradCAM", "HiResCAM", "XGradCAM", "GradCAMPlusPlus", "LayerCAM", "ScoreCAM",
                                    "AblationCAM", "GradCAMElementWise", "EigenGradCAM"])
def test_cam_peaks_on_the_evidence(method: str) -> None:
    image = np.full((32, 32, 3), 40, np.uint8)
    image[8:20, 12:26] = (230, 20, 20)
    model = RedDetector()
    res = Resources(None, ["background", "red", "blue"], "/tmp", CPU)
    res.get("classifier", lambda: Classifier(model, 32, (0.0,) * 3, (1.0,) * 3, {1: [0], 2: [1]}, "features", True, CPU))
    cam = GradCamStage(GradCamParams(method=method, batch_size=4), res)(Record(Sample("r", image), classes=[1]))[1]
    inside = np.zeros((32, 32), bool)
    inside[8:20, 12:26] = True
    assert cam[inside].mean() > 0.5 > cam[~inside].mean() + 0.2


def test_road_score_recorded_per_class(backbones: dict) -> None:
    rng = np.random.default_rng(1)
    rec = Record(Sample("x", rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)), classes=[1, 2])
    GradCamStage(GradCamParams(road=True, road_percentiles=[50]), backbones["test_resnet"])(rec)
    assert set(rec.extras["road"]) == {"1", "2"}
    assert all(np.isfinite(v) for v in rec.extras["road"].values())
    assert rec.cache["road"] == rec.extras["road"]


@pytest.mark.parametrize("name,size,layer,kind", [
    ("test_resnet", 64, "layer4", "cnn"), ("test_efficientnet", 64, "bn2", "cnn"),
    ("test_convnext", 64, "norm_pre", "cnn"), ("test_vit", 32, "blocks.5.norm1", "vit")])
def test_target_layer_found_for_timm(name: str, size: int, layer: str, kind: str) -> None:
    model = create_backbone(name, 3, None, 32, size)
    found, transform, k = resolve_target_layer(model, None, size)
    assert (found, k) == (layer, kind)
    assert (transform is not None) == (kind == "vit")
    assert resolve_target_layer(model, "stem" if "convnext" in name else found, size)[0] in ("stem", found)


@pytest.mark.parametrize("builder,layer,guide", [("resnet18", "layer4", "layer2"), ("densenet121", "features", None),
                                                 ("mobilenet_v3_small", "features", None)])
def test_target_layer_found_for_torchvision(builder: str, layer: str, guide: str | None) -> None:
    import torchvision

    model = getattr(torchvision.models, builder)(weights=None, num_classes=3)
    assert resolve_target_layer(model, None, 64)[0] == layer
    g = find_guide_layer(model, 64)
    assert guide is None or g == guide
    assert g.startswith(("layer", "features"))


def test_unknown_target_layer_is_a_clear_error(backbones: dict) -> None:
    with pytest.raises(ValueError, match="not a submodule"):
        GradCamStage(GradCamParams(target_layer="no.such.layer"), backbones["test_resnet"])
