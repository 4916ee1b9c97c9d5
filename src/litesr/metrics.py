"""PSNR and SSIM on the Y channel, exactly as the published SR tables compute them.

Convention (IMDN, PAN, SwinIR, ELAN, BasicSR; see ``shared/data/reference_scores.json`` → ``protocol``):

* inputs are uint8 images, SR already quantised; ``crop_border`` (= the scale) pixels go from every side;
* Y is ITU-R BT.601 studio swing, ``16 + (65.481 R + 128.553 G + 24.966 B) / 255``, in float64, not rounded;
* PSNR = ``10 log10(255² / MSE)``; SSIM is MATLAB's ``ssim_index``: 11×11 Gaussian window (σ = 1.5, normalised),
  C1 = (0.01·255)², C2 = (0.03·255)², valid filtering, mean of the SSIM map.

Grayscale HR images (Set14 ``bridge``) have two conventions, chosen with ``gray``; pass such an HR image as an
``H×W`` array (or keep it ``H×W×3`` to score it like any colour image):

* ``"rgb"`` (default, the model tables): the gray image is replicated to RGB and scored on studio Y like the rest;
* ``"raw"`` (the MATLAB-era bicubic tables): the HR's raw 8-bit intensities against the SR's full-range BT.601
  luma. Studio Y compresses the range by 219/255, so ``"rgb"`` scores such an image 20·log10(255/219) = 1.32 dB
  higher (+0.094 dB on the Set14 mean).
"""

from __future__ import annotations

import math

import numpy as np

from .errors import UsageError

__all__ = ["GRAY_CONVENTIONS", "psnr_y", "ssim_y", "studio_y"]

GRAY_CONVENTIONS = ("rgb", "raw")

_STUDIO = np.array([65.481, 128.553, 24.966]) / 255.0  # RGB → Y offset by 16, range 16..235
_FULL = np.array([0.299, 0.587, 0.114])  # RGB → full-range luma, range 0..255


def studio_y(img: np.ndarray) -> np.ndarray:
    """BT.601 studio-swing Y (float64, not rounded) of a uint8 RGB ``H×W×3`` or gray ``H×W`` image."""
    return 16.0 + _as_rgb(img) @ _STUDIO


def psnr_y(sr: np.ndarray, hr: np.ndarray, crop_border: int, *, gray: str = "rgb") -> float:
    """PSNR (dB) between the Y channels of ``sr`` and ``hr``; ``inf`` for identical images."""
    y_sr, y_hr = _y_pair(sr, hr, crop_border, gray)
    mse = np.mean((y_sr - y_hr) ** 2)
    return math.inf if mse == 0 else float(10.0 * np.log10(255.0**2 / mse))


def ssim_y(sr: np.ndarray, hr: np.ndarray, crop_border: int, *, gray: str = "rgb") -> float:
    """SSIM between the Y channels of ``sr`` and ``hr`` (MATLAB ``ssim_index``)."""
    y_sr, y_hr = _y_pair(sr, hr, crop_border, gray)
    if min(y_hr.shape) < _WINDOW.size:
        raise UsageError(f"SSIM needs at least {_WINDOW.size}×{_WINDOW.size} pixels after cropping, got {y_hr.shape}")
    return float(np.mean(_ssim_map(y_sr, y_hr)))


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float64)
    return np.repeat(img[..., None], 3, axis=-1) if img.ndim == 2 else img


def _y_pair(sr: np.ndarray, hr: np.ndarray, crop_border: int, gray: str) -> tuple[np.ndarray, np.ndarray]:
    if gray not in GRAY_CONVENTIONS:
        raise UsageError(f"gray convention must be one of {', '.join(GRAY_CONVENTIONS)}, not {gray!r}")
    if sr.shape[:2] != hr.shape[:2]:
        raise UsageError(f"SR is {sr.shape[1]}×{sr.shape[0]} but HR is {hr.shape[1]}×{hr.shape[0]}")
    if hr.ndim == 2 and gray == "raw":
        y_sr, y_hr = _as_rgb(sr) @ _FULL, hr.astype(np.float64)
    else:
        y_sr, y_hr = studio_y(sr), studio_y(hr)
    if crop_border:
        c = int(crop_border)
        y_sr, y_hr = y_sr[c:-c, c:-c], y_hr[c:-c, c:-c]
    return y_sr, y_hr


def _gaussian_window(size: int = 11, sigma: float = 1.5) -> np.ndarray:
    """1-D factor of MATLAB ``fspecial('gaussian', size, sigma)`` (the 2-D window is its outer product)."""
    x = np.arange(size, dtype=np.float64) - (size - 1) / 2
    g = np.exp(-(x * x) / (2 * sigma * sigma))
    return g / g.sum()


_WINDOW = _gaussian_window()
_C1 = (0.01 * 255) ** 2
_C2 = (0.03 * 255) ** 2


def _filter_valid(img: np.ndarray) -> np.ndarray:
    """Gaussian filtering with 'valid' borders, done as two 1-D passes (the window is separable)."""
    n = _WINDOW.size
    h, w = img.shape
    rows = sum(_WINDOW[k] * img[k : h - n + 1 + k] for k in range(n))
    return sum(_WINDOW[k] * rows[:, k : w - n + 1 + k] for k in range(n))


def _ssim_map(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    mu_a, mu_b = _filter_valid(a), _filter_valid(b)
    var_a = _filter_valid(a * a) - mu_a * mu_a
    var_b = _filter_valid(b * b) - mu_b * mu_b
    cov = _filter_valid(a * b) - mu_a * mu_b
    return ((2 * mu_a * mu_b + _C1) * (2 * cov + _C2)) / ((mu_a * mu_a + mu_b * mu_b + _C1) * (var_a + var_b + _C2))
