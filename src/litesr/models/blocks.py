"""Building blocks shared by several architectures, written once. Window layout, window attention and the other
fast paths they run on are in :mod:`litesr.ops`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import ffn, norm
from ..ops.policy import is_exporting
from ..ops.windows import shifted_window_mask

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
    if is_exporting():  # one pad computed from the traced size, so the graph pads whatever size it is given
        return F.pad(x, (0, pw, 0, ph), mode=mode)
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


class LayerNorm(nn.LayerNorm):
    """``nn.LayerNorm`` (same parameters and keys) computed by ``ops.norm.layer_norm``: at inference on a CPU a
    bf16/fp16 input is normalised in float32 and rounded back (the reason and figures: ``POLICY["layer norm"]``)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return norm.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)


class PatchEmbedNorm(nn.Module):
    """The official Swin-type ``patch_embed`` with patch_norm=True and patch size 1 (SwinIR, HiT-SRF): only its
    LayerNorm has weights (``patch_embed.norm``)."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.norm = LayerNorm(dim)


def conv3x3(in_channels: int, out_channels: int) -> nn.Conv2d:
    """3×3 convolution with 'same' zero padding and a bias (ESRT's ``default_conv``, IMDN's ``conv_layer``)."""
    return nn.Conv2d(in_channels, out_channels, 3, 1, 1)


class PixelShuffleUpsampler(nn.Sequential):
    """conv3×3 C→out·s², then PixelShuffle(s): the one-step tail of ELAN, SwinIR-light, GRFormer and IMDN."""

    def __init__(self, channels: int, scale: int, out_channels: int = 3) -> None:
        super().__init__(nn.Conv2d(channels, out_channels * scale * scale, 3, 1, 1), nn.PixelShuffle(scale))


def scale_from_pixel_shuffle_channels(out_channels: int, colors: int = 3) -> int | None:
    """Inverse of ``colors · s²``: the scale a pixel-shuffle conv with ``out_channels`` outputs implements."""
    s = math.isqrt(out_channels // colors) if out_channels % colors == 0 else 0
    return s if s >= 1 and colors * s * s == out_channels else None


def official_window_buffers(model: nn.Module, block_type: type, img_size: int, fill: float,
                            attn_buffers: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The computed buffers a Swin-style official model keeps in its state_dict, for every ``block_type`` block
    (which has ``.window``, ``.shift`` and ``.attn``): ``attn.<buffer>`` for each name in ``attn_buffers``, and the
    ``attn_mask`` of shifted blocks at the constructor's ``img_size``×``img_size`` — so that the official
    ``load_state_dict(strict=True)`` accepts a litesr-saved file."""
    out: dict[str, torch.Tensor] = {}
    for name, block in model.named_modules():
        if not isinstance(block, block_type):
            continue
        if img_size <= max(block.window):
            raise ValueError(f"img_size {img_size} must exceed the window {block.window} (the official model "
                             "changes its windows below that)")
        for buffer in attn_buffers:
            out[f"{name}.attn.{buffer}"] = getattr(block.attn, buffer).detach().cpu().clone()
        if block.shift is not None:
            out[f"{name}.attn_mask"] = shifted_window_mask(img_size, img_size, block.window, block.shift, fill)
    return out


# --------------------------------------------------------------------------------------------- mean shift
# SwinIR and GRFormer keep the mean as a plain attribute (not a weight): x → (x − mean)·img_range on the way in,
# y → y / img_range + mean on the way out.


def _rgb_mean_like(x: torch.Tensor, mean) -> torch.Tensor:
    return torch.tensor(mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)


def subtract_mean(x: torch.Tensor, img_range: float = 1.0, mean=DIV2K_RGB_MEAN) -> torch.Tensor:
    """``(x − mean)·img_range`` on an NCHW image, the mean a constant (1, C, 1, 1) tensor."""
    x = x - _rgb_mean_like(x, mean)
    return x if img_range == 1.0 else x * img_range


def add_mean(x: torch.Tensor, img_range: float = 1.0, mean=DIV2K_RGB_MEAN) -> torch.Tensor:
    """Inverse of :func:`subtract_mean`: ``x / img_range + mean``."""
    if img_range != 1.0:
        x = x / img_range
    return x + _rgb_mean_like(x, mean)

def swin_trunk(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The trunk SwinIR and HiT-SRF share, under their official attribute names: ``conv_first`` → tokens (the
    patch-embedding norm) → every residual group of ``layers`` → ``norm`` → ``conv_after_body``, plus the shallow
    features (the long skip). ``x``: the mean-subtracted input; returns the map the upsampler takes."""
    f = net.conv_first(x)
    t = net.patch_embed.norm(f.permute(0, 2, 3, 1))  # (B, H, W, C): tokens in row-major order
    for layer in net.layers:
        t = layer(t)
    t = net.norm(t)
    return net.conv_after_body(t.permute(0, 3, 1, 2)) + f


class ResidualGroup(nn.Module):
    """A residual group of transformer blocks in SwinIR's shape (SwinIR's RSTB, HiT-SRF's RHTB): ``x +
    conv3×3(blocks(x))`` on (B, H, W, C) tokens, under the official keys ``residual_group.blocks.<i>`` and ``conv``."""

    def __init__(self, dim: int, blocks) -> None:
        super().__init__()
        self.residual_group = _BlockList(blocks)
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = x
        for block in self.residual_group.blocks:
            y = block(y)
        return self.conv(y.permute(0, 3, 1, 2)).permute(0, 2, 3, 1) + x


class _BlockList(nn.Module):
    """The official ``BasicLayer`` (``residual_group``): only its ``blocks`` have weights."""

    def __init__(self, blocks) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)


class ConvFFN(nn.Module):
    """``h = GELU(fc1(x)); h = h + dw(h); fc2(h)`` on (B, H, W, C) tokens, ``dw`` a depthwise stack run on the image
    (keys ``fc1``, ``dwconv.depthwise_conv.<i>``, ``fc2``): the feed-forward of GRFormer and HiT-SRF, which differ
    only in ``depthwise``."""

    def __init__(self, dim: int, hidden: int, depthwise: nn.Sequential) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.dwconv = _DWConv(depthwise)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ffn.conv_ffn(x, self.fc1, self.act, self.dwconv.depthwise_conv, self.fc2, owner=self)

    def plus_normed(self, x: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
        """``x + norm(self(x))`` (a post-norm block's second half), in one pass of the compiled kernel where it
        runs (:func:`litesr.ops.ffn.post_norm_fused`)."""
        branch = self.dwconv.depthwise_conv
        if ffn.post_norm_fused(x, self.fc1, self.act, branch, norm):
            return ffn.conv_ffn(x, self.fc1, self.act, branch, self.fc2, owner=self, norm=norm)
        return x + norm(self(x))


class _DWConv(nn.Module):
    """The official ``dwconv`` wrapper: its one child is ``depthwise_conv``."""

    def __init__(self, depthwise: nn.Sequential) -> None:
        super().__init__()
        self.depthwise_conv = depthwise
