"""The guided filter (He, Sun, Tang 2013) and the variogram fit that sets its window (paper 002).

Inside each (2r+1)^2 window the output is a linear function of the guide, ``q = a . I + b``; a
multi-channel guide uses the per-window channel covariance. Borders are handled by averaging only
over pixels inside the image (box sums divided by the true window counts).
"""
from __future__ import annotations

import numpy as np
from scipy.optimize import curve_fit


def box_mean(x: np.ndarray, r: int) -> np.ndarray:
    """Mean over the (2r+1)x(2r+1) window around each pixel, clipped at the borders; works per channel."""
    x = np.asarray(x, np.float64)
    h, w = x.shape[:2]
    pad = ((1, 0), (1, 0)) + ((0, 0),) * (x.ndim - 2)
    ii = np.pad(x, pad).cumsum(0).cumsum(1)  # integral image with a zero first row / column
    y0, y1 = np.clip(np.arange(h) - r, 0, h), np.clip(np.arange(h) + r + 1, 0, h)
    x0, x1 = np.clip(np.arange(w) - r, 0, w), np.clip(np.arange(w) + r + 1, 0, w)
    s = ii[y1][:, x1] - ii[y0][:, x1] - ii[y1][:, x0] + ii[y0][:, x0]
    n = ((y1 - y0)[:, None] * (x1 - x0)[None, :]).astype(np.float64)
    return s / n.reshape(h, w, *([1] * (x.ndim - 2)))


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = 1e-3) -> np.ndarray:
    """Filter ``src`` (HxW) with ``guide`` (HxW or HxWxC) over windows of radius ``radius``."""
    p = np.asarray(src, np.float64)
    g = np.asarray(guide, np.float64)
    if g.shape[:2] != p.shape:
        raise ValueError(f"guided_filter: guide {g.shape[:2]} and source {p.shape} differ in size")
    r = int(radius)
    if g.ndim == 2:
        mean_i, mean_p = box_mean(g, r), box_mean(p, r)
        cov_ip = box_mean(g * p, r) - mean_i * mean_p
        var_i = box_mean(g * g, r) - mean_i ** 2
        a = cov_ip / (var_i + eps)
        b = mean_p - a * mean_i
        return box_mean(a, r) * g + box_mean(b, r)
    c = g.shape[2]
    mean_i, mean_p = box_mean(g, r), box_mean(p, r)
    cov_ip = box_mean(g * p[..., None], r) - mean_i * mean_p[..., None]
    sigma = box_mean(g[..., :, None] * g[..., None, :], r) - mean_i[..., :, None] * mean_i[..., None, :]
    a = np.linalg.solve(sigma + eps * np.eye(c), cov_ip[..., None])[..., 0]  # HxWxC
    b = mean_p - (a * mean_i).sum(-1)
    return (box_mean(a, r) * g).sum(-1) + box_mean(b, r)


def empirical_variogram(field: np.ndarray, max_lag: int) -> tuple[np.ndarray, np.ndarray]:
    """``(lags, gamma)``: gamma(h) = mean over pairs at distance h of (S(x_i) - S(x_j))^2 / 2.

    Pairs are taken along rows and columns (the field is assumed isotropic); a multi-channel field
    sums the squared differences over channels.
    """
    s = np.asarray(field, np.float64)
    if s.ndim == 2:
        s = s[..., None]
    lags = np.arange(1, max_lag + 1)
    gamma = []
    for h in lags:
        d = [((s[h:] - s[:-h]) ** 2).sum(-1).ravel(), ((s[:, h:] - s[:, :-h]) ** 2).sum(-1).ravel()]
        d = np.concatenate(d)
        gamma.append(0.5 * d.mean() if d.size else np.nan)
    return lags.astype(np.float64), np.asarray(gamma)


def gaussian_variogram(h: np.ndarray, c1: float, c2: float, sigma: float) -> np.ndarray:
    """Paper 002's model ``c1 * exp(-h^2 / (2 sigma^2)) + c2`` (c1 < 0 for a rising variogram)."""
    return c1 * np.exp(-np.asarray(h, np.float64) ** 2 / (2.0 * sigma ** 2)) + c2


def fit_variogram(lags: np.ndarray, gamma: np.ndarray) -> tuple[float, float, float]:
    """Least-squares ``(c1, c2, sigma)`` of :func:`gaussian_variogram` to an empirical variogram."""
    ok = np.isfinite(gamma)
    lags, gamma = lags[ok], gamma[ok]
    if lags.size < 3 or np.ptp(gamma) < 1e-12:
        return 0.0, float(gamma.mean()) if gamma.size else 0.0, 1.0
    sill = float(gamma.max())
    p0 = (-sill, sill, float(lags[np.argmax(gamma >= 0.63 * sill)]) or 1.0)
    try:
        (c1, c2, sigma), _ = curve_fit(gaussian_variogram, lags, gamma, p0=p0, maxfev=5000,
                                       bounds=([-np.inf, -np.inf, 1e-3], [np.inf, np.inf, 10.0 * lags.max()]))
    except RuntimeError:  # no convergence: fall back to the initial guess, which is already sensible
        c1, c2, sigma = p0
    return float(c1), float(c2), float(abs(sigma))


def variogram_radius(guide: np.ndarray, max_lag: int | None = None, min_radius: int = 1,
                     max_radius: int | None = None) -> int:
    """The guided filter's window radius for ``guide``: the fitted variogram's sigma, rounded.

    Paper 002: "we use sigma as the size of the filter"; He et al. size the window by its radius
    r ((2r+1)^2 pixels), so sigma is taken as r, clipped to [min_radius, min(h, w) // 4].
    """
    h, w = guide.shape[:2]
    max_lag = max_lag or max(3, min(h, w) // 2)
    lags, gamma = empirical_variogram(guide, max_lag)
    sigma = fit_variogram(lags, gamma)[2]
    max_radius = max_radius or max(min_radius, min(h, w) // 4)
    return int(np.clip(round(sigma), min_radius, max_radius))
