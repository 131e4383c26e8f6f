"""rCAM parts on hand-computed cases: guided filter, variogram fit, dense CRF; rCAM over backbones.

The pipeline tests rebuild paper 002's equations by hand from the module's own pieces (``RCam.scale``,
``guided_filter``) so a swapped filter order, swapped fusion weights or an ignored variogram radius fail.
"""
from __future__ import annotations

import cv2
import numpy as np
import pytest
import timm
import torch
from torch import nn

from wsss.cam import rcam as rcam_module
from wsss.cam.crf import crf_foreground
from wsss.cam.guided_filter import box_mean, empirical_variogram, fit_variogram, gaussian_variogram, guided_filter, variogram_radius
from wsss.cam.rcam import STAGES, RCam, RCamParams, pca_guide, stack_guide_maps
from wsss.classifier.model import Classifier
from wsss.data.base import Box, Sample
from wsss.masks.rcam import RCamRefiner
from wsss.models.backbones import create_backbone, find_target_layer
from wsss.models.layers import find_guide_layers
from wsss.record import Record, Resources


def test_box_mean_hand_computed() -> None:
    x = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    # radius 1, windows clipped at the border: corner (0,0) averages 1,2,4,5
    expected = np.array([[3.0, 3.5, 4.0], [3.0, 3.5, 4.0]])
    np.testing.assert_allclose(box_mean(x, 1), expected)


def test_guided_filter_hand_computed() -> None:
    # a constant guide has no variance: a = 0, b = window mean of p, output = mean of the b's
    p = np.array([[0.0, 3.0, 6.0]])
    out = guided_filter(np.ones((1, 3)), p, radius=1, eps=0.1)
    b = np.array([1.5, 3.0, 4.5])  # window means of p
    np.testing.assert_allclose(out[0], [b[:2].mean(), b.mean(), b[1:].mean()])
    # guide == source with eps -> 0: the filter reproduces the source (gray and 3-channel guides)
    rng = np.random.default_rng(0)
    g = rng.random((9, 11))
    np.testing.assert_allclose(guided_filter(g, g, 2, 1e-9), g, atol=1e-5)
    g3 = np.stack([g, rng.random((9, 11)), rng.random((9, 11))], -1)
    np.testing.assert_allclose(guided_filter(g3, g, 2, 1e-9), g, atol=1e-4)


def test_guided_filter_keeps_the_guides_edge() -> None:
    guide = np.zeros((20, 20))
    guide[:, 10:] = 1.0
    blurry = np.clip(np.linspace(-0.5, 1.5, 20), 0, 1)[None].repeat(20, 0)  # a ramp across the edge
    out = guided_filter(guide, blurry, radius=4, eps=1e-4)
    step = np.abs(out[:, 10] - out[:, 9]).mean()
    assert step > 2 * np.abs(blurry[:, 10] - blurry[:, 9]).mean()


def test_empirical_variogram_hand_computed() -> None:
    s = np.array([[0.0, 1.0, 2.0, 3.0]])
    lags, gamma = empirical_variogram(s, 2)
    # lag 1: differences 1,1,1 -> 1/2; lag 2: differences 2,2 -> 4/2 (no vertical pairs in one row)
    np.testing.assert_allclose(gamma, [0.5, 2.0])
    np.testing.assert_allclose(lags, [1, 2])


@pytest.mark.parametrize("sigma", [1.5, 3.0, 5.0])
def test_variogram_fit_recovers_sigma(sigma: float) -> None:
    lags = np.arange(1, 16, dtype=float)
    gamma = gaussian_variogram(lags, -2.0, 2.5, sigma)
    c1, c2, s = fit_variogram(lags, gamma)
    assert abs(s - sigma) < 1e-3 and abs(c1 + 2.0) < 1e-3 and abs(c2 - 2.5) < 1e-3


def test_variogram_radius_grows_with_blob_size() -> None:
    yy, xx = np.mgrid[:48, :48]
    radii = []
    for period in (6, 24):
        field = np.sin(2 * np.pi * xx / period) * np.sin(2 * np.pi * yy / period)
        radii.append(variogram_radius(field))
    assert radii[0] < radii[1]


def test_dense_crf_improves_agreement() -> None:
    rng = np.random.default_rng(0)
    image = np.zeros((40, 40, 3), np.uint8)
    image[8:32, 10:30] = (200, 180, 60)
    gt = image[..., 0] > 0
    noisy = np.clip(np.where(gt, 0.62, 0.38) + rng.normal(0, 0.25, gt.shape), 0, 1)
    refined = crf_foreground(image, noisy)
    assert ((refined > 0.5) == gt).mean() > ((noisy > 0.5) == gt).mean() + 0.1


def test_pca_guide_separates_two_regions() -> None:
    f = torch.zeros(8, 6, 6)
    f[:, :, 3:] = torch.arange(8.0)[:, None, None]  # right half differs along one direction
    g = pca_guide(f)
    assert g.shape == (6, 6, 3) and g.min() >= 0 and g.max() <= 1
    assert abs(g[:, :3, 0].mean() - g[:, 3:, 0].mean()) > 0.9


def _backbone(name: str) -> nn.Module:
    torch.manual_seed(0)
    if name == "tiny_densenet":  # timm's DenseNet class, two layers per block
        model = timm.models.densenet.DenseNet(growth_rate=8, block_config=(2, 2, 2, 2), num_classes=2)
    else:
        model = create_backbone(name, 2, None, 32)
    for m in model.modules():  # timm zero-inits each residual block's last BN: a fresh block would copy its input
        if isinstance(m, nn.BatchNorm2d):
            nn.init.uniform_(m.weight, 0.5, 1.5)
    return model


def _classifier(model: nn.Module, size: int = 64) -> Classifier:
    return Classifier(model, size, (0.5,) * 3, (0.5,) * 3, {1: [0], 2: [1]}, find_target_layer(model, size), True,
                      torch.device("cpu"))


def _resources(clf: Classifier) -> Resources:
    res = Resources(None, ["background", "a", "b"], "/tmp", torch.device("cpu"))
    res.get("classifier", lambda: clf)
    return res


def _outputs(model: nn.Module, names: list[str], x: torch.Tensor) -> dict[str, torch.Tensor]:
    """Each named module's output for input ``x``, hooked independently of rcam.py."""
    out: dict[str, torch.Tensor] = {}
    hooks = [model.get_submodule(n).register_forward_hook(lambda _m, _i, o, n=n: out.setdefault(n, o.detach().clone()))
             for n in names]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in hooks:
            h.remove()
    return out


def _image() -> np.ndarray:
    """Smooth blobs, so the tiny networks give non-trivial CAMs and guides."""
    rng = np.random.default_rng(0)
    image = cv2.GaussianBlur(rng.integers(0, 255, (50, 60, 3), dtype=np.uint8), (0, 0), 3)
    cv2.circle(image, (20, 25), 10, (230, 40, 40), -1)
    cv2.rectangle(image, (38, 8), (55, 30), (30, 200, 90), -1)
    return image


@pytest.mark.parametrize("backbone,size,expected", [
    ("test_resnet", 64, ["layer2.0"]),
    ("resnet18", 64, ["layer2.0", "layer2.1"]),
    ("test_efficientnet", 64, ["blocks.2.0"]),
    ("tf_efficientnet_lite0", 224, ["blocks.2.0", "blocks.2.1"]),  # the bundled real model: 2 x 40 channels at 28x28
    ("tiny_densenet", 64, ["features.transition1.pool", "features.denseblock2.denselayer1",
                           "features.denseblock2.denselayer2"])])
def test_guide_is_every_stride8_block(backbone: str, size: int, expected: list[str]) -> None:
    model = _backbone(backbone)
    assert find_guide_layers(model, size) == expected
    outs = _outputs(model, expected, torch.zeros(1, 3, size, size))
    assert all(o.shape[-2:] == (size // 8, size // 8) for o in outs.values())
    if backbone == "tiny_densenet":  # the pieces are exactly the dense block's concatenated output, nothing twice
        x = torch.randn(1, 3, size, size)
        whole = _outputs(model, ["features.denseblock2"], x)["features.denseblock2"][0]
        parts = _outputs(model, expected, x)
        torch.testing.assert_close(stack_guide_maps([parts[n][0] for n in expected]), whole)


@pytest.mark.parametrize("backbone", ["resnet18", "tiny_densenet"])
def test_guide_is_pca_of_the_concatenated_stride8_maps(backbone: str) -> None:
    model = _backbone(backbone)
    clf = _classifier(model)
    image = _image()
    rc = RCam(clf, RCamParams(scales=[64, 128], crf=False))
    assert rc.guide_layers == find_guide_layers(model, 64) and len(rc.guide_layers) >= 2
    for size in (64, 128):
        _, _, guide = rc.scale(image, [1], size)
        outs = _outputs(model, rc.guide_layers, clf.preprocess([image], size))
        expected = pca_guide(torch.cat([outs[n][0] for n in rc.guide_layers], 0))
        assert guide.shape == (size // 8, size // 8, 3)
        np.testing.assert_allclose(guide, expected, atol=1e-5)
        last_only = pca_guide(outs[rc.guide_layers[-1]][0])  # the old guide: the last stride-8 module alone
        assert not np.allclose(guide, last_only, atol=1e-3)


def test_guide_layer_option_names_one_or_several_layers() -> None:
    model = _backbone("resnet18")
    clf = _classifier(model)
    image = _image()
    one = RCam(clf, RCamParams(scales=[64, 128], guide_layer="layer2"))
    several = RCam(clf, RCamParams(scales=[64, 128], guide_layer=["layer1", "layer2"]))
    assert one.guide_layers == ["layer2"] and several.guide_layers == ["layer1", "layer2"]
    outs = _outputs(model, ["layer1", "layer2"], clf.preprocess([image], 64))
    np.testing.assert_allclose(one.scale(image, [1], 64)[2], pca_guide(outs["layer2"][0]), atol=1e-5)
    # layer1 (stride 4) is resized to layer2's grid before the concatenation
    np.testing.assert_allclose(several.scale(image, [1], 64)[2],
                               pca_guide(stack_guide_maps([outs["layer1"][0], outs["layer2"][0]])), atol=1e-5)
    with pytest.raises(ValueError, match="not a submodule"):
        RCam(clf, RCamParams(scales=[64, 128], guide_layer=["layer2", "no.such"]))


@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet", "resnet18", "tiny_densenet"])
def test_rcam_stages_and_refiners(backbone: str) -> None:
    clf = _classifier(_backbone(backbone))
    image = _image()
    maps = RCam(clf, RCamParams(scales=[64, 128])).maps(image, [1, 2])
    for c in (1, 2):
        assert set(maps[c]) == set(STAGES)
        for m in maps[c].values():
            assert m.shape == (50, 60) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 + 1e-6
    rec = Record(Sample("x", image), classes=[1, 2])
    label = RCamRefiner(RCamParams(scales=[64, 128], threshold=0.5), _resources(clf))(rec)
    assert label.shape == (50, 60) and set(np.unique(label)) <= {0, 1, 2}
    expected = np.zeros((50, 60), np.uint8)  # the refiner thresholds the final rCAM; the higher one wins overlaps
    on1, on2 = maps[1]["rcam"] >= 0.5, maps[2]["rcam"] >= 0.5
    expected[on1], expected[on2] = 1, 2
    both = on1 & on2
    expected[both] = np.where(maps[1]["rcam"][both] >= maps[2]["rcam"][both], 1, 2)
    np.testing.assert_array_equal(label, expected)


def _hand_upsample(cam: np.ndarray, guide: np.ndarray, radius: int, eps: float) -> np.ndarray:
    """G^f(U(cam), S) written out: bilinear resize to the guide's grid, guided filter, clip and scale to [0, 1]."""
    up = cv2.resize(cam.astype(np.float32), guide.shape[1::-1], interpolation=cv2.INTER_LINEAR)
    out = np.clip(guided_filter(guide, up, radius, eps), 0, None)
    return out / max(out.max(), 1e-8)


def _unit_resize(m: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    m = np.clip(cv2.resize(m.astype(np.float32), hw[::-1], interpolation=cv2.INTER_LINEAR), 0, None)
    return m / max(m.max(), 1e-8)


def _unit(m: np.ndarray) -> np.ndarray:
    m = np.clip(m, 0, None)
    return m / max(m.max(), 1e-8)


@pytest.fixture(scope="module")
def resnet_rcam() -> tuple[RCam, np.ndarray]:
    return RCam(_classifier(_backbone("resnet18")), RCamParams(scales=[64, 128], crf=False)), _image()


def test_rcam1_is_two_guided_filters_in_paper_order(resnet_rcam: tuple) -> None:
    rc, image = resnet_rcam
    h, w = image.shape[:2]
    (cam1,), _, s1 = rc.scale(image, [1], 64)
    (cam2,), _, s2 = rc.scale(image, [1], 128)
    assert np.ptp(cam1) > 0.1 and np.ptp(cam2) > 0.1  # non-trivial CAMs, or every order would agree
    assert s1.shape[:2] == (8, 8) and s2.shape[:2] == (16, 16) and cam1.shape == (2, 2) and cam2.shape == (4, 4)
    r1, r2, eps = variogram_radius(s1), variogram_radius(s2), rc.p.eps
    maps = rc.maps(image, [1])[1]
    # eqs. 2-3: rCAM_1 = GF(U(GF(U(CAM_1), S_1)), S_2); eq. 4: rCAM_2 = GF(U(CAM_2), S_2)
    rcam1 = _unit_resize(_hand_upsample(_hand_upsample(cam1, s1, r1, eps), s2, r2, eps), (h, w))
    rcam2 = _unit_resize(_hand_upsample(cam2, s2, r2, eps), (h, w))
    np.testing.assert_allclose(maps["rcam1"], rcam1, atol=1e-5)
    np.testing.assert_allclose(maps["rcam2"], rcam2, atol=1e-5)
    swapped = _unit_resize(_hand_upsample(_hand_upsample(cam1, s2, r2, eps), s1, r1, eps), (h, w))
    only_s2 = _unit_resize(_hand_upsample(cam1, s2, r2, eps), (h, w))
    plain = _unit_resize(cam1, (h, w))
    for wrong in (swapped, only_s2, plain):
        assert np.abs(maps["rcam1"] - wrong).max() > 1e-2


def test_rcam3_fuses_with_each_scales_class_probability(resnet_rcam: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, image = resnet_rcam
    classes = [1, 2]
    real = {s: rc.scale(image, classes, s)[1] for s in (64, 128)}
    maps = rc.maps(image, classes)
    for i, c in enumerate(classes):  # eq. 5 with the network's own P_1(c), P_2(c); no CRF: rCAM = rCAM_3
        fused = _unit(maps[c]["rcam1"] * real[64][i] + maps[c]["rcam2"] * real[128][i])
        np.testing.assert_allclose(maps[c]["rcam3"], fused, atol=1e-6)
        np.testing.assert_array_equal(maps[c]["rcam"], maps[c]["rcam3"])
    # a constructed case with very different probabilities at the two scales
    forced = {64: np.array([0.9, 0.15]), 128: np.array([0.1, 0.8])}
    original = rc.scale
    monkeypatch.setattr(rc, "scale", lambda im, cl, size: (lambda r: (r[0], forced[size], r[2]))(original(im, cl, size)))
    maps = rc.maps(image, classes)
    for i, c in enumerate(classes):
        r1, r2 = maps[c]["rcam1"], maps[c]["rcam2"]
        assert np.abs(r1 - r2).max() > 0.1  # two different maps, so the weights matter
        p1, p2 = forced[64][i], forced[128][i]
        np.testing.assert_allclose(maps[c]["rcam3"], _unit(r1 * p1 + r2 * p2), atol=1e-6)
        assert np.abs(maps[c]["rcam3"] - _unit(r1 * p2 + r2 * p1)).max() > 1e-2  # swapped weights
        assert np.abs(maps[c]["rcam3"] - _unit(r1 + r2)).max() > 1e-2  # unweighted


def test_variogram_radius_is_fitted_per_guide(resnet_rcam: tuple, monkeypatch: pytest.MonkeyPatch) -> None:
    rc, image = resnet_rcam
    s1, s2 = rc.scale(image, [1], 64)[2], rc.scale(image, [1], 128)[2]
    fitted = {s1.shape[:2]: variogram_radius(s1), s2.shape[:2]: variogram_radius(s2)}
    calls: list[tuple[tuple[int, int], int]] = []

    def spy(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
        calls.append((guide.shape[:2], radius))
        return guided_filter(guide, src, radius, eps)

    monkeypatch.setattr(rcam_module, "guided_filter", spy)
    default = rc.maps(image, [1])[1]
    # rCAM_1 filters with S_1 then S_2, rCAM_2 with S_2: each call gets its own guide's fitted sigma
    assert calls == [((8, 8), fitted[(8, 8)]), ((16, 16), fitted[(16, 16)]), ((16, 16), fitted[(16, 16)])]
    monkeypatch.undo()
    r2 = fitted[(16, 16)]
    clf = rc.clf
    same = RCam(clf, RCamParams(scales=[64, 128], crf=False, radius=r2)).maps(image, [1])[1]
    other = RCam(clf, RCamParams(scales=[64, 128], crf=False, radius=r2 + 2)).maps(image, [1])[1]
    np.testing.assert_array_equal(same["rcam2"], default["rcam2"])  # rCAM_2 depends on S_2's radius only
    assert np.abs(other["rcam2"] - default["rcam2"]).max() > 1e-2


class _BrightNet(nn.Module):
    """A hand-set CNN whose class-1 score is the mean brightness: its CAM is the bright object."""

    def __init__(self) -> None:
        super().__init__()
        self.stage8 = nn.Sequential(nn.Conv2d(3, 4, 1), nn.AvgPool2d(8))  # R, G, B, brightness at stride 8
        self.stage16 = nn.AvgPool2d(2)  # the CAM layer, stride 16
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.stage8[0].weight.zero_()
            self.stage8[0].bias.zero_()
            for k in range(3):
                self.stage8[0].weight[k, k] = 1.0
            self.stage8[0].weight[3] = 1.0 / 3
            self.fc.weight.copy_(torch.tensor([[0.0, 0.0, 0.0, 4.0], [0.0, 0.0, 0.0, -4.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.stage16(self.stage8(x)).mean((2, 3)))


def test_rcam_box_keeps_the_object_inside_its_box_at_threshold_half() -> None:
    clf = _classifier(_BrightNet())
    assert clf.target_layer == "stage16" and find_guide_layers(clf.model, 64) == ["stage8.1"]
    rng = np.random.default_rng(0)
    image = rng.integers(0, 40, (96, 120, 3), dtype=np.uint8)
    inside, outside = np.zeros((96, 120), np.uint8), np.zeros((96, 120), np.uint8)
    cv2.circle(inside, (35, 45), 14, 1, -1)
    cv2.circle(outside, (98, 30), 12, 1, -1)  # an equally bright object that no box covers
    image[(inside | outside) > 0] = (235, 225, 215)
    box = Box(1, 15, 25, 56, 66)
    rec = Record(Sample("x", image), classes=[1], boxes=[box])
    res = _resources(clf)
    boxed = RCamRefiner(RCamParams(scales=[64, 128], scope="box", threshold=0.5), res)(rec)
    in_box = np.zeros((96, 120), bool)
    in_box[box.y0:box.y1, box.x0:box.x1] = True
    assert (boxed[~in_box] == 0).all()  # nothing outside the box, not even the other bright object
    assert (boxed[inside > 0] == 1).mean() > 0.9  # the object inside the box is the class
    assert (boxed[in_box & (inside == 0)] == 0).mean() > 0.8  # and the box's background is not
    whole = RCamRefiner(RCamParams(scales=[64, 128], scope="image", threshold=0.5), res)(rec)
    assert (whole[outside > 0] == 1).mean() > 0.9  # rCAM without boxes does find the other object
