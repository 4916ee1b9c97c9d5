"""PSNR/SSIM on Y: properties, MATLAB ssim_index semantics, and the classic Bicubic rows of the papers."""

from __future__ import annotations

import math

import numpy as np
import pytest

from litesr.evaluate import evaluate_bicubic
from litesr.metrics import psnr_y, ssim_y, studio_y

from conftest import BENCHMARKS

#: The published MATLAB-era Bicubic rows (grayscale Set14 bridge scored on raw intensities), x2/x3/x4.
PUBLISHED_BICUBIC = {
    "Set5": {2: (33.66, 0.9299), 3: (30.39, 0.8682), 4: (28.42, 0.8104)},
    "Set14": {2: (30.24, 0.8688), 3: (27.55, 0.7742), 4: (26.00, 0.7027)},
    "B100": {2: (29.56, 0.8431), 3: (27.21, 0.7385), 4: (25.96, 0.6675)},
}


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_bicubic_baseline_matches_published_tables(scale):
    if not (BENCHMARKS / "B100").is_dir():
        pytest.skip(f"benchmark data {BENCHMARKS} not available")
    results = evaluate_bicubic(BENCHMARKS, list(PUBLISHED_BICUBIC), scale, gray="raw", progress=False)
    for set_name, published in PUBLISHED_BICUBIC.items():
        psnr, ssim = published[scale]
        got = results[set_name]
        assert abs(got["psnr_y"] - psnr) < 0.02, f"{set_name} x{scale}: {got['psnr_y']:.4f} vs published {psnr}"
        assert abs(got["ssim_y"] - ssim) < 1e-3, f"{set_name} x{scale}: {got['ssim_y']:.4f} vs published {ssim}"


def _random_rgb(h=40, w=48, seed=0):
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def test_studio_y_range():
    assert studio_y(np.zeros((1, 1, 3), np.uint8))[0, 0] == pytest.approx(16.0)
    assert studio_y(np.full((1, 1, 3), 255, np.uint8))[0, 0] == pytest.approx(235.0)
    assert studio_y(np.full((2, 2), 255, np.uint8))[0, 0] == pytest.approx(235.0)  # 2-D gray: replicated


def test_psnr_identical_is_inf_and_ssim_is_one():
    img = _random_rgb()
    assert psnr_y(img, img, 4) == math.inf
    assert ssim_y(img, img, 4) == pytest.approx(1.0, abs=1e-12)


def test_psnr_of_a_uniform_offset():
    hr = np.full((20, 20, 3), 100, np.uint8)
    sr = hr + np.uint8(3)  # every channel +3 → Y moves by 3·219/255
    assert psnr_y(sr, hr, 2) == pytest.approx(20 * math.log10(255 / (3 * 219 / 255)), abs=1e-9)


def test_crop_border_ignores_the_border():
    hr = _random_rgb()
    sr = hr.copy()
    sr[:3] = 0
    sr[:, -3:] = 255
    assert psnr_y(sr, hr, 3) == math.inf
    assert psnr_y(sr, hr, 2) < 30


def test_gray_conventions_differ_by_the_studio_range():
    rng = np.random.default_rng(1)
    hr = rng.integers(0, 256, (32, 32), dtype=np.uint8)
    sr = np.clip(hr.astype(int) + rng.integers(-5, 6, hr.shape), 0, 255).astype(np.uint8)
    sr_rgb = np.repeat(sr[..., None], 3, axis=2)
    rgb, raw = psnr_y(sr_rgb, hr, 2, gray="rgb"), psnr_y(sr_rgb, hr, 2, gray="raw")
    assert rgb - raw == pytest.approx(20 * math.log10(255 / 219), abs=1e-6)
    # 'rgb' scores a gray HR exactly like its RGB replica; 'raw' only changes anything for a 2-D (gray) HR
    hr_rgb = np.repeat(hr[..., None], 3, axis=2)
    assert rgb == pytest.approx(psnr_y(sr_rgb, hr_rgb, 2), abs=1e-9)
    assert psnr_y(sr_rgb, hr_rgb, 2, gray="raw") == pytest.approx(rgb, abs=1e-9)
    assert ssim_y(sr_rgb, hr, 2, gray="raw") == pytest.approx(ssim_y(sr, hr, 2, gray="raw"), abs=1e-9)


def _ssim_brute_force(a: np.ndarray, b: np.ndarray) -> float:
    """MATLAB ssim_index written out: the 2-D window at every 'valid' position."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x[:, None] ** 2 + x[None, :] ** 2) / (2 * 1.5**2))
    g /= g.sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    values = []
    for i in range(a.shape[0] - 10):
        for j in range(a.shape[1] - 10):
            pa, pb = a[i:i + 11, j:j + 11], b[i:i + 11, j:j + 11]
            ma, mb = (g * pa).sum(), (g * pb).sum()
            va, vb = (g * pa * pa).sum() - ma * ma, (g * pb * pb).sum() - mb * mb
            cov = (g * pa * pb).sum() - ma * mb
            values.append(((2 * ma * mb + c1) * (2 * cov + c2)) / ((ma * ma + mb * mb + c1) * (va + vb + c2)))
    return float(np.mean(values))


def test_ssim_matches_matlab_ssim_index():
    hr = _random_rgb(26, 30, seed=2)
    sr = np.clip(hr.astype(int) + np.random.default_rng(3).integers(-40, 41, hr.shape), 0, 255).astype(np.uint8)
    expected = _ssim_brute_force(studio_y(sr)[2:-2, 2:-2], studio_y(hr)[2:-2, 2:-2])
    assert ssim_y(sr, hr, 2) == pytest.approx(expected, abs=1e-12)
    assert ssim_y(hr, sr, 2) == pytest.approx(expected, abs=1e-12)  # symmetric


def test_bad_arguments_are_explained():
    img = _random_rgb()
    with pytest.raises(ValueError, match="gray convention"):
        psnr_y(img, img, 2, gray="luma")
    with pytest.raises(ValueError, match="SR is 48×40 but HR is 48×39"):
        psnr_y(img, img[:39], 2)
    with pytest.raises(ValueError, match="at least 11×11"):
        ssim_y(img[:20, :20], img[:20, :20], 5)
