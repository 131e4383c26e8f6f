"""rCAM parts on hand-computed cases: guided filter, variogram fit, dense CRF; rCAM over backbones."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from wsss.classifier.backbones import create_backbone, find_target_layer
from wsss.classifier.model import Classifier
from wsss.data.base import Sample
from wsss.masks.crf import crf_foreground
from wsss.masks.guided_filter import box_mean, empirical_variogram, fit_variogram, gaussian_variogram, guided_filter, variogram_radius
from wsss.masks.rcam import STAGES, RCam, RCamParams, RCamRefiner, pca_guide
from wsss.record import Box, Record, Resources


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


@pytest.mark.parametrize("backbone", ["test_resnet", "test_efficientnet", "resnet18"])
def test_rcam_stages_and_refiners(backbone: str) -> None:
    torch.manual_seed(0)
    model = create_backbone(backbone, 2, None, 32)
    clf = Classifier(model, 64, (0.5,) * 3, (0.5,) * 3, {1: [0], 2: [1]}, find_target_layer(model, 64), True,
                     torch.device("cpu"))
    res = Resources(None, ["background", "a", "b"], "/tmp", torch.device("cpu"))
    res.get("classifier", lambda: clf)
    image = np.random.default_rng(0).integers(0, 255, (50, 60, 3), dtype=np.uint8)
    maps = RCam(clf, RCamParams(scales=[64, 128])).maps(image, [1, 2])
    for c in (1, 2):
        assert set(maps[c]) == set(STAGES)
        for m in maps[c].values():
            assert m.shape == (50, 60) and np.isfinite(m).all() and m.min() >= 0 and m.max() <= 1 + 1e-6
    rec = Record(Sample("x", image), classes=[1, 2], boxes=[Box(1, 5, 5, 30, 40)])
    label = RCamRefiner(RCamParams(scales=[64, 128], threshold=0.5), res)(rec)
    assert label.shape == (50, 60) and set(np.unique(label)) <= {0, 1, 2}
    boxed = RCamRefiner(RCamParams(scales=[64, 128], scope="box", threshold=0.0), res)(rec)
    assert (boxed[:5] == 0).all() and (boxed[:, 30:] == 0).all()  # rCAM_Box stays inside its box
    assert (boxed[5:40, 5:30] == 1).all()
