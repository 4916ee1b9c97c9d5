"""SPAN: Swift Parameter-free Attention Network (Wan et al., CVPR Workshops 2024), inference (folded) form.

Faithful to the NTIRE 2025 efficient-SR entry: github.com/Amazingren/NTIRE2025_ESR @b69fb66
(``models/team46_SPAN.py`` class ``SPAN``, built as ``SPAN(3, 3, upscale=4, feature_channels=28)``; MIT). The
2024 ``SPAN30`` files (ch28 and ch26) differ from it only in ``conv_cat``'s output width (C instead of 20), which
is read from the weights, so they fit this class too (their checkpoints are not in litesr's test data).
Reading order: SPAN → SPAB (block with parameter-free attention) → Conv3XC (one folded 3×3 conv).

What the official forward does, and litesr with it:

- input in [0, 1]; normalised as ``(x − mean) · 255`` with the DIV2K mean (not in the state dict); the output is
  **not** rescaled: the upsampler emits the [0, 1] image directly (no ÷255, no mean added back, no global skip).
- every block returns its activated first conv, ``SiLU(c1_r(x))`` (the official ``SiLU(inplace=True)``
  overwrites ``c1_r``'s output before the block returns it); the network concatenates that of the **last** block
  (the official variable ``out_b5_2`` is block 6's), in the order [conv_1, conv_2(block 6), block 1, that].
- ``conv_cat`` maps 4C to a fusion width F that the official file hard-codes to 20 (C for the 2024 files): F and
  every other size are read from the weights (:func:`detect_config`); the six blocks are hard-coded officially,
  read from the ``block_<n>`` keys here.
- the mean is the float32 tensor the official code keeps and casts to the input's dtype at each forward.

**Folded form only.** SPAN is trained with re-parameterised convolutions ("Conv3XC"; the training form is in the
sibling ``team44_SPAN.py`` and in the 2024 files): per Conv3XC, three branches summed, a 1×1 shortcut ``sk``
(c_in → c_out) on the input, and ``conv`` = 1×1 (c_in → 2c_in) → 3×3 without padding (2c_in → 2c_out) → 1×1
(2c_out → c_out) on the input zero-padded by one pixel, all with biases (keys ``<name>.sk.*`` and
``<name>.conv.{0,1,2}.*``). After training they fold exactly (borders included, since the padding comes before the
first 1×1) into one 3×3 conv with padding 1: W[o,i,u,v] = Σ_b Σ_a W3[o,b]·W2[b,a,u,v]·W1[a,i], plus Wsk on the
centre tap; bias = W3·(b2 + Σ_{a,u,v} W2·b1) + b3 + bsk. The released checkpoints hold only that folded conv
(``<name>.eval_conv.*``), and this module implements only it, for inference: training SPAN as published would need
the three-branch form and its fold, which litesr does not have, so ``litesr train`` refuses ``span``. A checkpoint
in the training form is refused with a message saying so.

Differences from the official class that change no number: the frozen ``requires_grad=False`` on ``eval_conv``
is dropped (litesr counts every weight, 146,328 for ch28, not the 10,948 the official flag leaves trainable); the
dead ``has_relu`` LeakyReLU branch and the unused attention maps are left out; SiLU is applied out of place.

The released ×4 file (``team46_span.pth``, trained on DIV2K + LSDIR; its ``params_ema`` copy, as the official test
loads it) scores with ``litesr eval`` in fp32 what the official code scores, to every decimal it gives: Set5
31.7359 / 0.8893, Set14 28.4029 / 0.7771, B100 27.4379 / 0.7312, Urban100 10-image subset 26.3403 / 0.7819 (PSNR /
SSIM on Y).
"""

from __future__ import annotations

import re

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.conv import as_channels_last, conv2d_act, fused_activations
from .base import SRModel
from .blocks import DIV2K_RGB_MEAN
from .registry import (CNN_OVERLAP, LARGE_TILE, Architecture, CheckpointError, Variant, register_architecture,
                       register_variant)
from .statedict import numbered_count, pixel_shuffle_scale, require, rgb_input_width

PAPER = "Wan et al., Swift Parameter-free Attention Network for Efficient Super-Resolution, CVPR Workshops 2024"
IMG_RANGE = 255.0  # the official constructor's default, not in the weights


class SPAN(SRModel):
    """conv_1 → num_blocks SPABs → conv_2; 1×1 fusion of [conv_1, conv_2, block 1, SiLU(last block's c1_r)] to F
    channels → 3×3 conv to 3·s² → PixelShuffle(s)."""

    arch_name = "span"

    def __init__(self, *, scale: int, feature_channels: int, fusion_channels: int, num_blocks: int) -> None:
        super().__init__()
        self.num_blocks = num_blocks
        self.register_buffer("mean", torch.tensor(DIV2K_RGB_MEAN, dtype=torch.float32).view(1, 3, 1, 1),
                             persistent=False)
        self.conv_1 = Conv3XC(3, feature_channels)
        for i in range(1, num_blocks + 1):  # attribute names block_1..block_n are the official keys
            self.add_module(f"block_{i}", SPAB(feature_channels))
        self.conv_cat = nn.Conv2d(feature_channels * 4, fusion_channels, 1)
        self.conv_2 = Conv3XC(feature_channels, feature_channels)
        self.upsampler = nn.Sequential(nn.Conv2d(fusion_channels, 3 * scale * scale, 3, padding=1),
                                       nn.PixelShuffle(scale))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean.to(x.dtype)) * IMG_RANGE
        f0 = self.conv_1(as_channels_last(x))  # channels-last: docs/performance.md §3.5
        out, first = f0, None
        block_1_out = None
        for i in range(1, self.num_blocks + 1):
            out, first = getattr(self, f"block_{i}")(out)  # first: SiLU(c1_r(input)) of this block
            if i == 1:
                block_1_out = out
        z = torch.cat([f0, self.conv_2(out), block_1_out, first], dim=1)
        return self.upsampler(self.conv_cat(z))


class SPAB(nn.Module):
    """Swift parameter-free attention block: three Conv3XC (SiLU after the first two); the third's output o3 gives
    both the residual and the attention: (o3 + x) · (sigmoid(o3) − 0.5). Returns that and SiLU(c1_r(x))."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.c1_r = Conv3XC(channels, channels)
        self.c2_r = Conv3XC(channels, channels)
        self.c3_r = Conv3XC(channels, channels)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if fused_activations(x, ("swish",)):  # the SiLUs inside oneDNN's convs, the attention in place
            a1 = conv2d_act(x, self.c1_r.eval_conv, "swish")
            o3 = self.c3_r(conv2d_act(a1, self.c2_r.eval_conv, "swish"))
            gate = torch.sigmoid(o3).sub_(0.5)
            return o3.add_(x).mul_(gate), a1
        a1 = F.silu(self.c1_r(x))
        o3 = self.c3_r(F.silu(self.c2_r(a1)))
        return (o3 + x) * (torch.sigmoid(o3) - 0.5), a1


class Conv3XC(nn.Module):
    """The folded form of SPAN's re-parameterised conv: one 3×3 conv, zero padding 1, with bias, under the official
    key ``eval_conv`` (the training branches and their fold are described in the module docstring)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        self.eval_conv = nn.Conv2d(c_in, c_out, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.eval_conv(x)


# --------------------------------------------------------------------------------------------- registry

_BLOCK_KEY = r"^block_(\d+)\."
_TRAINING_FORM_KEY = r"^(conv_1|conv_2|block_\d+\.c[123]_r)\.(sk|conv\.\d+)\.weight$"
FAMILY = "SPAN"


def detect_config(state) -> dict | None:
    """Read width, fusion width, block count and scale from an (official-key, folded) SPAN state dict."""
    if not {"conv_cat.weight", "upsampler.0.weight"} <= state.keys() or not any(k.startswith("block_1.c1_r.")
                                                                               for k in state):
        return None
    training_form = sorted(k for k in state if re.match(_TRAINING_FORM_KEY, k))
    if training_form:
        raise CheckpointError(f"{FAMILY} checkpoint in the training form of Conv3XC ({training_form[0]}, ...): "
                              "litesr loads only the folded form (<name>.eval_conv.*) that released checkpoints "
                              "hold; fold the branches into eval_conv first (see litesr.models.span)")
    channels = rgb_input_width(state, "conv_1.eval_conv.weight", FAMILY)
    num_blocks = numbered_count(state, _BLOCK_KEY, FAMILY, first=1)
    conv_cat = require(state, "conv_cat.weight", FAMILY)
    if conv_cat.ndim != 4 or tuple(conv_cat.shape[1:]) != (4 * channels, 1, 1):
        raise CheckpointError(f"conv_cat.weight has shape {tuple(conv_cat.shape)}; a {FAMILY} of width {channels} "
                              f"fuses {4 * channels} channels with a 1×1 conv")
    fusion = int(conv_cat.shape[0])
    upsampler = state["upsampler.0.weight"]
    if upsampler.ndim != 4 or int(upsampler.shape[1]) != fusion:
        raise CheckpointError(f"upsampler.0.weight has shape {tuple(upsampler.shape)}; conv_cat gives {fusion} "
                              "channels")
    scale = pixel_shuffle_scale(state, "upsampler.0.weight", FAMILY)
    return {"scale": scale, "feature_channels": channels, "fusion_channels": fusion, "num_blocks": num_blocks}


# cpu_bf16: bf16 autocast measured 1.95x faster than fp32 on a 2-core AVX-512 BF16 EPYC (LR 128², 0.038 against
# 0.075 s; `python benchmarks/precision_speed.py --arch span --sizes 128`, 2026-12-06). What it costs, measured:
# team46_span.pth, `litesr eval --precision bf16` against fp32, Set5 31.6866 against 31.7359 dB (-0.049), Set14
# 28.3874 against 28.4029 (-0.015); SSIM 0.8881 / 0.7764 against 0.8893 / 0.7771 — more than the other models lose
# (the x255 input scale leaves bf16 little room; the first conv alone in fp32 recovers 0.016 dB on Set5), for twice
# the speed; `--precision fp32` gives the official numbers.
register_architecture(Architecture(
    name="span", build=SPAN, detect=detect_config, paper=PAPER, cpu_bf16=True, large_tile=lambda config: LARGE_TILE,
    tile_overlap=lambda config: CNN_OVERLAP,
    inference_only="litesr implements SPAN's folded (inference) form only; training it needs the re-parameterised "
                   "three-branch Conv3XC form, which litesr does not have (see litesr/models/span.py)",
))
register_variant(Variant(
    name="span", arch="span", config=dict(feature_channels=28, fusion_channels=20, num_blocks=6),
    description="SPAN (NTIRE 2025 ESR entry): 28 channels, 6 SPABs, fusion to 20 channels; folded convs, inference",
))
