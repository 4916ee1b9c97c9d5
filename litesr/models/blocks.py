"""Building blocks shared by several architectures, written once.

Window helpers follow the Swin/SwinIR layout that ELAN, SwinIR and GRFormer all use: windows ordered
batch-major, then window-row, then window-column; tokens inside a window row-major; channels last.
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

#: RGB mean of DIV2K, used by ELAN, SwinIR and GRFormer for their mean shift.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def pad_to_multiple(x: torch.Tensor, multiple: int | tuple[int, int], mode: str = "reflect") -> torch.Tensor:
    """Pad an NCHW tensor at the bottom/right so H and W become multiples of ``multiple``.

    Identical to ``F.pad(x, (0, pw, 0, ph), mode='reflect')`` wherever that works (pad < size). For smaller
    images, where the official code raises, reflection is repeated (and a 1-pixel side is replicated), so any
    size >= 1 works.
    """
    mh, mw = (multiple, multiple) if isinstance(multiple, int) else multiple
    h, w = x.shape[-2:]
    ph, pw = (-h) % mh, (-w) % mw
    if ph == 0 and pw == 0:
        return x
    if mode != "reflect":
        return F.pad(x, (0, pw, 0, ph), mode=mode)
    while ph > 0 or pw > 0:
        h, w = x.shape[-2:]
        step_h = min(ph, h - 1) if h > 1 else 0
        step_w = min(pw, w - 1) if w > 1 else 0
        if step_h == 0 and step_w == 0:  # a side of one pixel: nothing to reflect, replicate it
            step_h, step_w = (ph if h == 1 else 0), (pw if w == 1 else 0)
            x = F.pad(x, (0, step_w, 0, step_h), mode="replicate")
        else:
            x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        ph, pw = ph - step_h, pw - step_w
    return x


class MeanShift(nn.Conv2d):
    """Fixed 1×1 conv that subtracts (sign=-1) or adds (sign=+1) ``rgb_range · mean`` per channel.

    Kept as a conv (weights in the state dict, not trained) because official EDSR-family checkpoints store it.
    """

    def __init__(self, rgb_range: float = 255.0, mean=DIV2K_RGB_MEAN, sign: int = -1) -> None:
        super().__init__(3, 3, kernel_size=1)
        with torch.no_grad():
            self.weight.copy_(torch.eye(3).view(3, 3, 1, 1))
            self.bias.copy_(sign * rgb_range * torch.tensor(mean))
        self.weight.requires_grad_(False)
        self.bias.requires_grad_(False)


class PixelShuffleUpsampler(nn.Sequential):
    """conv3×3 C→out·s², then PixelShuffle(s): the one-step tail of ELAN, SwinIR-light and GRFormer."""

    def __init__(self, channels: int, scale: int, out_channels: int = 3) -> None:
        super().__init__(nn.Conv2d(channels, out_channels * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))


def scale_from_pixel_shuffle_channels(out_channels: int, colors: int = 3) -> int | None:
    """Inverse of ``colors · s²``: the scale a pixel-shuffle conv with ``out_channels`` outputs implements."""
    s = math.isqrt(out_channels // colors) if out_channels % colors == 0 else 0
    return s if s >= 1 and colors * s * s == out_channels else None


def window_partition(x: torch.Tensor, wh: int, ww: int) -> torch.Tensor:
    """(B, H, W, C) → (B·nW, wh·ww, C)."""
    b, h, w, c = x.shape
    x = x.reshape(b, h // wh, wh, w // ww, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, wh * ww, c)


def window_reverse(windows: torch.Tensor, wh: int, ww: int, h: int, w: int) -> torch.Tensor:
    """(B·nW, wh·ww, C) → (B, H, W, C); exact inverse of :func:`window_partition`."""
    c = windows.shape[-1]
    x = windows.reshape(-1, h // wh, w // ww, wh, ww, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


@lru_cache(maxsize=32)
def relative_position_index(wh: int, ww: int) -> torch.Tensor:
    """(N, N) int64 index into a ((2wh−1)(2ww−1))-row bias table; row = query token, column = key token."""
    coords = torch.stack(torch.meshgrid(torch.arange(wh), torch.arange(ww), indexing="ij")).flatten(1)
    rel = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0)
    return (rel[..., 0] + wh - 1) * (2 * ww - 1) + (rel[..., 1] + ww - 1)


def shifted_window_mask(
    h: int, w: int, window: tuple[int, int], shift: tuple[int, int], fill: float
) -> torch.Tensor:
    """Swin attention mask (nW, N, N) for a cyclically shifted H×W map: ``fill`` between tokens that were not
    neighbours before the roll, 0 elsewhere. Label slices follow the official code exactly, empty ones included."""
    wh, ww = window
    sh, sw = shift
    labels = torch.zeros(1, h, w, 1)
    count = 0
    for hs in (slice(0, -wh), slice(-wh, -sh), slice(-sh, None)):
        for ws in (slice(0, -ww), slice(-ww, -sw), slice(-sw, None)):
            labels[:, hs, ws, :] = count
            count += 1
    windows = window_partition(labels, wh, ww).squeeze(-1)
    diff = windows[:, None, :] - windows[:, :, None]
    return diff.ne(0).float() * fill
