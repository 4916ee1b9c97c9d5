"""The MATLAB-compatible bicubic resize reproduces the official benchmark LR files bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from litesr.data.imresize import imresize, modcrop

from conftest import BENCHMARKS


def _official_pairs(set_name: str, scale: int):
    hr_dir = BENCHMARKS / set_name / "HR"
    if not hr_dir.is_dir():
        pytest.skip(f"benchmark data {hr_dir} not available")
    for hr_path in sorted(hr_dir.glob("*.png")):
        lr_path = BENCHMARKS / set_name / "LR_bicubic" / f"X{scale}" / f"{hr_path.stem}x{scale}.png"
        yield hr_path.stem, np.asarray(Image.open(hr_path)), np.asarray(Image.open(lr_path))


@pytest.mark.parametrize("scale", [2, 3, 4])
@pytest.mark.parametrize("set_name", ["Set5", "Set14"])
def test_reproduces_official_lr_files(set_name, scale):
    checked = 0
    for name, hr, lr in _official_pairs(set_name, scale):  # bridge stays 2-D: the gray path is covered too
        out = imresize(modcrop(hr, scale), 1 / scale)
        assert out.dtype == np.uint8 and out.shape == lr.shape, name
        diff = np.abs(out.astype(int) - lr.astype(int))
        assert diff.max() == 0, f"{name}: {np.count_nonzero(diff)} pixels differ (max {diff.max()})"
        checked += 1
    assert checked == {"Set5": 5, "Set14": 14}[set_name]


def test_gray_and_colour_agree():
    rng = np.random.default_rng(0)
    gray = rng.integers(0, 256, (37, 29), dtype=np.uint8)
    out = imresize(gray, 1 / 3)
    assert out.shape == (13, 10)
    colour = imresize(np.repeat(gray[..., None], 3, axis=2), 1 / 3)
    np.testing.assert_array_equal(colour, np.repeat(out[..., None], 3, axis=2))


def test_float_in_float_out_and_constant_preserved():
    img = np.full((12, 9, 3), 0.25, dtype=np.float32)
    out = imresize(img, 2)
    assert out.shape == (24, 18, 3) and out.dtype == np.float64
    np.testing.assert_allclose(out, 0.25, atol=1e-12)  # weights are normalised, borders mirrored


def test_uint8_output_saturates_instead_of_wrapping():
    img = np.zeros((8, 8), dtype=np.uint8)
    img[:, 4:] = 255  # a hard edge: bicubic overshoots below 0 and above 255
    out = imresize(img, 2)
    assert out.min() == 0 and out.max() == 255
    assert np.array_equal(out[:, :6], np.zeros_like(out[:, :6])) and np.all(out[:, -6:] == 255)


def test_modcrop_keeps_top_left():
    img = np.arange(7 * 10).reshape(7, 10)
    np.testing.assert_array_equal(modcrop(img, 3), img[:6, :9])
    assert modcrop(img, 1).shape == (7, 10)


def test_rejects_bad_input():
    with pytest.raises(ValueError, match="uint8 or float"):
        imresize(np.zeros((4, 4), dtype=np.int32), 2)
    with pytest.raises(ValueError, match="positive"):
        imresize(np.zeros((4, 4), dtype=np.uint8), 0)
