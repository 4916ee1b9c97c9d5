"""Pixel conversions shared by reading, writing and the upscaler: between uint8/uint16 arrays, torch tensors and
PIL images, bit depths, and BT.601 luma as Pillow computes it."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``H×W×3`` → float ``1×3×H×W`` in [0, 1], channels-last (:func:`channels_last_batch`)."""
    if not img.flags.writeable:  # a read-only array (np.asarray of a PIL image): torch would warn about it
        img = np.array(img)
    return channels_last_batch(torch.from_numpy(np.ascontiguousarray(img))).float().div_(255.0)


def channels_last_batch(hwc: torch.Tensor) -> torch.Tensor:
    """A contiguous ``H×W×C`` tensor as the ``1×C×H×W`` view of its memory, with the strides PyTorch takes for
    channels-last. (``hwc.permute(2, 0, 1).unsqueeze(0)`` is the same view with a batch stride of C, which oneDNN's
    convolutions do not take for channels-last: every convolution after it then wrote NCHW maps, and PAN ran its
    20- and 24-channel convolutions in the slower layout.)"""
    return hwc.unsqueeze(0).permute(0, 3, 1, 2)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """float ``1×3×H×W`` (or ``3×H×W``) in [0, 1] → uint8 ``H×W×3``, clamped and rounded."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().float().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()


def to_bits(a: np.ndarray, deep: bool) -> np.ndarray:
    """uint8 or uint16 ``a`` at 16 bits (``deep``) or at 8: ``v * 257`` up, ``v / 257`` rounded (65535 ->
    255); an array already at that depth comes back as it is."""
    if a.dtype == np.uint16 and not deep:
        return ((a.astype(np.uint32) + 128) // 257).astype(np.uint8)  # v/257 rounded: 65535 -> 255
    if a.dtype == np.uint8 and deep:
        return a.astype(np.uint16) * 257
    return a


def luma(rgb: np.ndarray) -> np.ndarray:
    """BT.601 luma as Pillow's ``convert("L")`` computes it (16-bit fixed point, rounded), any bit depth."""
    r, g, b = (rgb[..., i].astype(np.int64) for i in range(3))
    return ((r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16).astype(rgb.dtype)


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None, grayscale: bool = False) -> Image.Image:
    """uint8 ``H×W×3`` (+ ``H×W`` alpha) → PIL image; ``grayscale`` keeps one channel (BT.601 luma)."""
    picture = Image.fromarray(rgb)
    if grayscale:
        picture = picture.convert("L")
    if alpha is not None:
        picture.putalpha(Image.fromarray(alpha))
    return picture
