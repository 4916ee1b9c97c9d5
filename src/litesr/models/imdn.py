"""IMDN: Information Multi-Distillation Network (Hui et al., ACM MM 2019).

Faithful to github.com/Zheng222/IMDN @8f158e6 (``model/architecture.py`` class ``IMDN``, ``model/block.py``).
Reading order: IMDN → IMDModule (progressive distillation) → CCALayer (contrast-aware channel attention).

The official network already works on [0, 1] RGB (its test script divides uint8 by 255), so no rescaling is
needed. It is fully convolutional with no padding to a multiple: any input size >= 1 works. State-dict keys are
the official ones (released checkpoints carry a DataParallel ``module.`` prefix, which ``read_state_dict`` strips).
"""

from __future__ import annotations


import torch
from torch import nn

from ..ops.conv import as_channels_last
from .base import SRModel
from .blocks import PixelShuffleUpsampler, conv3x3
from .registry import (CNN_OVERLAP, Architecture, CheckpointError, Variant, register_architecture,
                       register_variant)
from .statedict import numbered_count, pixel_shuffle_scale, rgb_input_width

PAPER = "Hui et al., Lightweight Image Super-Resolution with Information Multi-distillation Network, ACM MM 2019"
DISTILLATION_RATE = 0.25
NEG_SLOPE = 0.05  # the official ``activation('lrelu')`` default


class IMDN(SRModel):
    arch_name = "imdn"

    def __init__(self, *, scale: int, nf: int, num_modules: int) -> None:
        super().__init__()
        self.num_modules = num_modules
        self.fea_conv = conv3x3(3, nf)
        for i in range(1, num_modules + 1):  # attribute names IMDB1..IMDBn are the official keys
            self.add_module(f"IMDB{i}", IMDModule(nf))
        self.c = nn.Sequential(nn.Conv2d(nf * num_modules, nf, 1), nn.LeakyReLU(NEG_SLOPE))
        self.LR_conv = conv3x3(nf, nf)
        self.upsampler = PixelShuffleUpsampler(nf, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        fea = self.fea_conv(as_channels_last(x))  # channels-last: docs/performance.md §3.5
        outs, out = [], fea
        for i in range(1, self.num_modules + 1):
            out = getattr(self, f"IMDB{i}")(out)
            outs.append(out)
        out_lr = self.LR_conv(self.c(torch.cat(outs, dim=1))) + fea
        return self.upsampler(out_lr)


class IMDModule(nn.Module):
    """Three 3×3 conv + LReLU steps each keep a quarter of the channels ("distilled") and refine the rest; a fourth
    conv turns the remainder into the last quarter. The four quarters, reweighted by CCA and fused by a 1×1 conv,
    are added to the input."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.distilled = int(channels * DISTILLATION_RATE)
        self.remaining = channels - self.distilled
        self.c1 = conv3x3(channels, channels)
        self.c2 = conv3x3(self.remaining, channels)
        self.c3 = conv3x3(self.remaining, channels)
        self.c4 = conv3x3(self.remaining, self.distilled)
        self.act = nn.LeakyReLU(NEG_SLOPE)
        self.c5 = nn.Conv2d(self.distilled * 4, channels, 1)
        self.cca = CCALayer(self.distilled * 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        split = (self.distilled, self.remaining)
        d1, r1 = torch.split(self.act(self.c1(x)), split, dim=1)
        d2, r2 = torch.split(self.act(self.c2(r1)), split, dim=1)
        d3, r3 = torch.split(self.act(self.c3(r2)), split, dim=1)
        d4 = self.c4(r3)
        return self.c5(self.cca(torch.cat([d1, d2, d3, d4], dim=1))) + x


class CCALayer(nn.Module):
    """Contrast-aware channel attention: per-channel (std + mean) → 1×1 squeeze (÷16) → ReLU → 1×1 → sigmoid."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1),
            nn.ReLU(),
            nn.Conv2d(channels // reduction, channels, 1),
            nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=(2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(2, 3), keepdim=True).sqrt()  # population std, as the official code
        return x * self.conv_du(std + mean)


# --------------------------------------------------------------------------------------------- registry

_MODULE_KEY = r"^IMDB(\d+)\.c1\.weight$"
FAMILY = "IMDN"


def detect_config(state) -> dict | None:
    """Read width, module count and scale from an (official-key) IMDN state dict."""
    if not {"fea_conv.weight", "IMDB1.c1.weight", "LR_conv.weight", "upsampler.0.weight"} <= state.keys():
        return None
    nf = rgb_input_width(state, "fea_conv.weight", FAMILY)
    num_modules = numbered_count(state, _MODULE_KEY, FAMILY, first=1)
    distilled = int(state["IMDB1.c4.weight"].shape[0]) if "IMDB1.c4.weight" in state else None
    if distilled != int(nf * DISTILLATION_RATE):
        raise CheckpointError(f"IMDB1.c4.weight has {distilled} outputs; an IMDN of width {nf} distils "
                              f"{int(nf * DISTILLATION_RATE)} channels")
    scale = pixel_shuffle_scale(state, "upsampler.0.weight", FAMILY)
    return {"scale": scale, "nf": nf, "num_modules": num_modules}


# cpu_bf16: bf16 autocast measured faster on a 2-core AVX-512 BF16 EPYC: IMDN x4 1.83x at LR 128², random weights
# (benchmarks/precision_speed.py --arch imdn --sizes 128).
register_architecture(Architecture(name="imdn", build=IMDN, detect=detect_config, paper=PAPER, cpu_bf16=True,
                                   tile_overlap=lambda config: CNN_OVERLAP))
register_variant(Variant(
    name="imdn", arch="imdn", config=dict(nf=64, num_modules=6),
    description="IMDN: 64 channels, 6 information multi-distillation modules with contrast-aware attention",
))
