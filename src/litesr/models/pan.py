"""PAN: Pixel Attention Network (Zhao et al., ECCV Workshops 2020).

Faithful to github.com/zhaohengyuan1/PAN @4d045d1 (``codes/models/archs/PAN_arch.py`` class ``PAN`` with
in_nc=out_nc=3, nf=40, unf=24, nb=16). Reading order: PAN → SCPA (trunk block) → PAConv / PA (pixel attention).

The official network works on [0, 1] RGB (its test pipeline divides uint8 by 255), so no rescaling is needed.
It is fully convolutional and upsamples by interpolation: any input size >= 1 works. State-dict keys are the
official ones.
"""

from __future__ import annotations


import torch
import torch.nn.functional as F
from torch import nn

from ..ops.conv import (as_channels_last, attended_upsampling, attended_upsampling_compiled, conv2d_act,
                        fused_activations, nearest_upsample_conv3x3, scpa_trunk, scpa_trunk_compiled)
from .base import SRModel
from .registry import (CNN_OVERLAP, SCALES, Architecture, CheckpointError, Variant, register_architecture,
                       register_variant)
from .statedict import numbered_count, rgb_input_width

PAPER = "Zhao et al., Efficient Image Super-Resolution Using Pixel Attention, ECCV Workshops 2020"
NEG_SLOPE = 0.2


class PAN(SRModel):
    """conv → nb SCPA blocks → conv (+ skip) → U-PA upsampling (nearest ×s, or ×2 twice for ×4, each followed by
    conv, PA, conv) → conv, plus the bilinearly upsampled input."""

    arch_name = "pan"

    def __init__(self, *, scale: int, nf: int, unf: int, nb: int) -> None:
        super().__init__()
        if scale not in SCALES:
            raise ValueError(f"PAN is defined for scales 2, 3 and 4, not {scale}")
        self.conv_first = nn.Conv2d(3, nf, 3, 1, 1)
        self.SCPA_trunk = nn.Sequential(*[SCPA(nf) for _ in range(nb)])
        self.trunk_conv = nn.Conv2d(nf, nf, 3, 1, 1)
        self.upconv1 = nn.Conv2d(nf, unf, 3, 1, 1)
        self.att1 = PA(unf)
        self.HRconv1 = nn.Conv2d(unf, unf, 3, 1, 1)
        if scale == 4:
            self.upconv2 = nn.Conv2d(unf, unf, 3, 1, 1)
            self.att2 = PA(unf)
            self.HRconv2 = nn.Conv2d(unf, unf, 3, 1, 1)
        self.conv_last = nn.Conv2d(unf, 3, 3, 1, 1)
        self.lrelu = nn.LeakyReLU(NEG_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # channels-last end to end: oneDNN runs PAN's 20- and 24-channel convolutions about twice as fast so
        # (docs/performance.md §3.5)
        fea = self.conv_first(as_channels_last(x))
        if scpa_trunk_compiled(fea, self.SCPA_trunk[0].k1[0].in_channels):
            trunk = scpa_trunk(self.SCPA_trunk, fea)  # every block in litesr's kernel (POLICY["pan trunk"])
        else:
            trunk = self.SCPA_trunk(fea)
        fea = fea + self.trunk_conv(trunk)
        image = F.interpolate(x, scale_factor=self.scale, mode="bilinear", align_corners=False)
        if self.scale == 4:
            fea = self._upsample(fea, 2, 1)
            return self._upsample(fea, 2, 2, image)
        return self._upsample(fea, self.scale, 1, image)

    def _upsample(self, fea: torch.Tensor, factor: int, stage: int, image: torch.Tensor | None = None) -> torch.Tensor:
        """Stage 1 or 2: nearest ×factor, upconv, PA, HRconv; the last (given the bilinear ``image``) ends with
        ``conv_last(...) + image``."""
        upconv, att, hrconv = (getattr(self, f"{name}{stage}") for name in ("upconv", "att", "HRconv"))
        if attended_upsampling_compiled(fea, upconv.out_channels):
            # everything at the high resolution in one pass of litesr's kernel (POLICY["pan upsampling"])
            return attended_upsampling(self, f"upsampling {stage}", fea, factor, upconv, att.conv, hrconv,
                                       self.conv_last if image is not None else None, image)
        fea = self._attended(nearest_upsample_conv3x3(fea, upconv.weight, upconv.bias, factor), att, hrconv)
        return fea if image is None else self.conv_last(fea) + image

    def _attended(self, fea: torch.Tensor, att: PA, hrconv: nn.Conv2d) -> torch.Tensor:
        if fused_activations(fea):
            # the sigmoid and HRconv's LeakyReLU inside oneDNN's convolutions, the product and the LeakyReLU between
            # in place: at the high resolution each pass over the features costs ~40 ms at LR 256² x4
            gate = conv2d_act(fea, att.conv, "sigmoid")
            fea = F.leaky_relu_(gate.mul_(fea), NEG_SLOPE)
            return conv2d_act(fea, hrconv, "leaky_relu", NEG_SLOPE)
        fea = self.lrelu(att(fea))
        return self.lrelu(hrconv(fea))


class SCPA(nn.Module):
    """Self-calibrated block with pixel attention: two 1×1 halves, one through a plain 3×3 conv, the other through
    PAConv, concatenated, fused by a 1×1 conv and added to the input. Convs have no bias except PAConv's 1×1."""

    def __init__(self, nf: int, reduction: int = 2) -> None:
        super().__init__()
        width = nf // reduction
        self.conv1_a = nn.Conv2d(nf, width, 1, bias=False)
        self.conv1_b = nn.Conv2d(nf, width, 1, bias=False)
        self.k1 = nn.Sequential(nn.Conv2d(width, width, 3, 1, 1, bias=False))
        self.PAConv = PAConv(width)
        self.conv3 = nn.Conv2d(width * reduction, nf, 1, bias=False)
        self.lrelu = nn.LeakyReLU(NEG_SLOPE)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if fused_activations(x):
            a = conv2d_act(conv2d_act(x, self.conv1_a, "leaky_relu", NEG_SLOPE), self.k1[0], "leaky_relu", NEG_SLOPE)
            b = conv2d_act(x, self.conv1_b, "leaky_relu", NEG_SLOPE)
            b = conv2d_act(self.PAConv.gated(b), self.PAConv.k4, "leaky_relu", NEG_SLOPE)
            return self.conv3(torch.cat([a, b], dim=1)).add_(x)
        a = self.lrelu(self.k1(self.lrelu(self.conv1_a(x))))
        b = self.lrelu(self.PAConv(self.lrelu(self.conv1_b(x))))
        return self.conv3(torch.cat([a, b], dim=1)) + x


class PAConv(nn.Module):
    """3×3 conv gated by a pixel-attention map (sigmoid of a 1×1 conv of the input), then another 3×3 conv."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.k2 = nn.Conv2d(nf, nf, 1)
        self.k3 = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)
        self.k4 = nn.Conv2d(nf, nf, 3, 1, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.k4(self.k3(x) * torch.sigmoid(self.k2(x)))

    def gated(self, x: torch.Tensor) -> torch.Tensor:
        """``k3(x) · sigmoid(k2(x))`` at inference, the sigmoid and the product in place. (oneDNN's sigmoid inside
        k2's convolution changed the published x4 weights' output by 1.7e-4 of its range at LR 256²: not less exact,
        both fp32 forwards are 1.7e-3 from a float64 one, but outside the tolerance against the official order.)"""
        return self.k3(x).mul_(torch.sigmoid_(self.k2(x)))


class PA(nn.Module):
    """Pixel attention: x · sigmoid(conv1×1(x)), one weight per pixel and channel."""

    def __init__(self, nf: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(nf, nf, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.conv(x))


# --------------------------------------------------------------------------------------------- registry

_BLOCK_KEY = r"^SCPA_trunk\.(\d+)\.conv1_a\.weight$"
FAMILY = "PAN"


def detect_config(state) -> dict | None:
    """Read width, upsampling width, depth and scale from an (official-key) PAN state dict.

    A second upsampling stage (``upconv2``) means x4. x2 and x3 checkpoints have identical keys and shapes (one
    nearest ×s step either way), so for them the scale is ``None`` and must be given by the caller.
    """
    if not {"conv_first.weight", "SCPA_trunk.0.conv1_a.weight", "upconv1.weight", "conv_last.weight"} <= state.keys():
        return None
    nf = rgb_input_width(state, "conv_first.weight", FAMILY)
    unf = int(state["upconv1.weight"].shape[0])
    nb = numbered_count(state, _BLOCK_KEY, FAMILY)
    if int(state["conv_last.weight"].shape[1]) != unf:
        raise CheckpointError(
            f"conv_last.weight takes {state['conv_last.weight'].shape[1]} channels but upconv1 gives {unf}"
        )
    return {"scale": 4 if "upconv2.weight" in state else None, "nf": nf, "unf": unf, "nb": nb}


# cpu_bf16: bf16 autocast measured faster on a 2-core AVX-512 BF16 EPYC: PAN x4 2.80x at LR 128², random weights
# (benchmarks/precision_speed.py --arch pan --sizes 128).
# large_tile: with 8 pixels of context (CNN_OVERLAP) a 512 core computes (528/512)² = 1.06× its pixels, a 256 one
# 1.13×, and the compiled SCPA kernel ran a 528² forward at 0.94× a 256² one's time per pixel (272²: 1.13×;
# `benchmarks/tile_rate.py --weights pan-x4-official --sizes 256 272 400 528`). An LR 2048×1536 x4 upscale then took
# 1.00× the 256² picture's time per output pixel (1.21× with 256 tiles; `benchmarks/efficient_sr.py`), and a
# 4000×3000 x4 one peaked at 1868 MiB resident (`benchmarks/upscale_memory.py --size 4000x3000`); Xeon, 2026-12-07.
LARGE_TILE = 512
register_architecture(Architecture(name="pan", build=PAN, detect=detect_config, paper=PAPER, cpu_bf16=True,
                                   tile_overlap=lambda config: CNN_OVERLAP, large_tile=lambda config: LARGE_TILE))
register_variant(Variant(
    name="pan", arch="pan", config=dict(nf=40, unf=24, nb=16),
    description="PAN: 40 channels, 16 SCPA blocks, U-PA upsampling with 24 channels",
))
