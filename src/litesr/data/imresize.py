"""MATLAB-compatible bicubic ``imresize``: the resize that made every SR benchmark's LR images.

Why not PIL or torch: their bicubic kernels (a = -0.75 / no antialiasing) and border rules differ, so LR images
made with them are not the benchmarks' LR images and scores drift by tenths of a dB. This follows MATLAB's
``imresize(img, scale, 'bicubic')`` step by step:

* kernel: Keys cubic with a = -0.5; when downscaling it is stretched by 1/scale (antialiasing);
* taps: ``ceil(kernel width) + 2`` input samples per output sample, out-of-range indices mirrored
  symmetrically (``1..n, n..1``), weights normalised to sum to one;
* one dimension at a time, rows first, each pass accumulating the taps in order in float64;
* uint8 input: every pass rounds half away from zero and saturates to uint8, as MATLAB's ``imresizemex`` returns
  the input's class. Float input stays float.

It reproduces the official ``LR_bicubic`` files of Set5 and Set14 bit for bit (``tests/test_imresize.py``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["imresize", "modcrop"]

KERNEL_WIDTH = 4.0  # support of the cubic kernel, in input samples


def modcrop(img: np.ndarray, scale: int) -> np.ndarray:
    """Crop H and W down to multiples of ``scale``, keeping the top-left corner (the benchmarks' convention)."""
    h, w = img.shape[:2]
    return img[: h - h % scale, : w - w % scale, ...]


def imresize(img: np.ndarray, scale: float) -> np.ndarray:
    """Resize ``H×W`` or ``H×W×C`` by ``scale`` exactly like MATLAB ``imresize(img, scale, 'bicubic')``.

    The output side is ``ceil(scale · side)``. uint8 in → uint8 out (rounded per pass, as MATLAB does);
    any float dtype in → float64 out.
    """
    if scale <= 0:
        raise ValueError(f"imresize scale must be positive, got {scale}")
    if img.ndim not in (2, 3):
        raise ValueError(f"imresize expects an H×W or H×W×C array, got shape {img.shape}")
    is_uint8 = img.dtype == np.uint8
    if not is_uint8 and not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"imresize supports uint8 or float images, got {img.dtype}")
    out = img if is_uint8 else img.astype(np.float64)
    for axis in (0, 1):  # MATLAB resizes the dimension with the smaller scale first; equal scales: rows first
        out = _resize_along(out, axis, scale, is_uint8)
    return out


def _output_length(length: int, scale: float) -> int:
    """MATLAB's ``ceil(scale · length)``, immune to 1/3·255 = 85.00000000000001-style float noise."""
    exact = scale * length
    nearest = round(exact)
    return int(nearest) if abs(exact - nearest) < 1e-9 else math.ceil(exact)


def _cubic(x: np.ndarray) -> np.ndarray:
    """Keys cubic convolution kernel with a = -0.5 (MATLAB's ``cubic``)."""
    absx = np.abs(x)
    absx2 = absx * absx
    absx3 = absx2 * absx
    return (1.5 * absx3 - 2.5 * absx2 + 1) * (absx <= 1) + (
        -0.5 * absx3 + 2.5 * absx2 - 4 * absx + 2
    ) * ((absx > 1) & (absx <= 2))


def _contributions(in_length: int, out_length: int, scale: float) -> tuple[np.ndarray, np.ndarray]:
    """(weights, 0-based indices), both ``out_length × taps``: MATLAB's ``contributions``."""
    antialias = scale < 1
    width = KERNEL_WIDTH / scale if antialias else KERNEL_WIDTH
    x = np.arange(1, out_length + 1, dtype=np.float64)
    u = x / scale + 0.5 * (1 - 1 / scale)  # output sample centre, in 1-based input coordinates
    left = np.floor(u - width / 2)
    taps = int(math.ceil(width)) + 2
    indices = left[:, None] + np.arange(taps, dtype=np.float64)[None, :]
    distance = u[:, None] - indices
    weights = scale * _cubic(distance * scale) if antialias else _cubic(distance)
    weights = weights / _sum_in_order(weights)[:, None]
    mirror = np.concatenate([np.arange(in_length), np.arange(in_length - 1, -1, -1)])
    indices = mirror[np.mod(indices.astype(np.int64) - 1, 2 * in_length)]
    used = np.any(weights != 0, axis=0)  # MATLAB drops taps that are zero for every output sample
    return weights[:, used], indices[:, used]


def _sum_in_order(weights: np.ndarray) -> np.ndarray:
    """Row sums accumulated left to right (numpy's pairwise sum would differ from MATLAB in the last bit)."""
    total = np.zeros(weights.shape[0])
    for k in range(weights.shape[1]):
        total += weights[:, k]
    return total


def _resize_along(img: np.ndarray, axis: int, scale: float, is_uint8: bool) -> np.ndarray:
    in_length = img.shape[axis]
    weights, indices = _contributions(in_length, _output_length(in_length, scale), scale)
    src = np.moveaxis(img, axis, 0)
    trailing = (1,) * (src.ndim - 1)
    acc = np.zeros((weights.shape[0], *src.shape[1:]))
    for k in range(weights.shape[1]):  # taps in order, in float64, like imresizemex
        acc += weights[:, k].reshape(-1, *trailing) * src[indices[:, k]]
    if is_uint8:
        acc = np.clip(np.floor(acc + 0.5), 0, 255).astype(np.uint8)  # round half away from zero, saturate
    return np.ascontiguousarray(np.moveaxis(acc, 0, axis))
