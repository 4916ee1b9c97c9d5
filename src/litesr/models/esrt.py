"""ESRT: Efficient Super-Resolution Transformer (Lu et al., CVPRW 2022).

Faithful to github.com/luissen/ESRT @311c6b3 (``model/esrt.py``, ``model/common.py``, ``util/transformer.py``,
``util/tools.py``). Reading order, top-down:

    ESRT ─ head → body.0 (``Un``: LCB = 3 × HPB, then LTB) → reduce → tail       + up (a skip branch on the head)
    HPB (``Updownblock``) ─ ARFB encoder, high-frequency split, ARFB decoders, CA, ARFB out
    ARFB (``one_module``) ─ 2 × RU (``one_conv``), CA
    LTB (``MLABlock``) ─ 3×3 unfold to tokens, EMHA (``EffAttention``), MLP, fold back by summing

The official network works on [0, 1] images with no mean shift, which is litesr's convention, so ours(x) equals
official(x). State-dict keys are the official ones (``up.*``, ``head.*``, ``body.0.encoder1.*`` …).

Two changes that do not alter any result the official code produces:

* **Attention memory.** The official EMHA materialises an 8 × (N/4)² score matrix per token segment: a 256×256
  input needs 8 GiB per segment. ``attention="sdpa"`` or ``"chunked"`` compute the same softmax(QKᵀ/6)V
  without it (memory linear in the image area); ``"naive"`` keeps the official computation for reference.
* **Tiny inputs.** The official code fails on a side of 1 pixel (AvgPool2d(2) gives size 0). Such sides are
  replicate-padded to 2 pixels and the output is cropped back; every input the official code accepts
  (both sides ≥ 2) is computed exactly as it does, with no padding.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.conv import as_channels_last
from ..ops.policy import is_exporting
from ..ops.segments import ATTENTION_MODES, split_attention
from .base import SRModel
from .blocks import LayerNorm, conv3x3
from .registry import Architecture, CheckpointError, Variant, register_architecture, register_variant

PAPER = "Lu et al., Transformer for Single Image Super-Resolution, CVPR Workshops (NTIRE) 2022"

#: The attention mode EMHA uses unless told (``ops.segments.ATTENTION_MODES``), picked by measurement on a
#: 2-core CPU (benchmarks/esrt_memory.py): SDPA's fused CPU kernel is both faster and leaner than chunking queries
#: by hand.
DEFAULT_ATTENTION = "sdpa"

NUM_HEADS = 8
PATCH = 3  # the LTB unfolds 3×3 neighbourhoods into tokens


class ESRT(SRModel):
    """The whole network (official ``ESRT``): output = up(h) + tail(reduce(body(h))) with h = head(x).

    ``attention`` picks how EMHA computes attention (:data:`ATTENTION_MODES`); it changes memory and speed, not
    the result, so it is not part of the saved config. It can also be set later: ``model.attention = "naive"``.
    """

    arch_name = "esrt"
    runtime_options = ("attention",)

    def __init__(self, *, scale: int, n_feats: int, attention: str = DEFAULT_ATTENTION) -> None:
        super().__init__()
        if n_feats % 16:
            raise ValueError(f"n_feats={n_feats} must be a multiple of 16 (CA reduction 16; 8 heads on 9·n_feats/2)")
        # Attribute order = the official state-dict order (`up` first, `reduce` last).
        self.up = nn.Sequential(Upsampler(scale, n_feats), BasicConv(n_feats, 3, 3))
        self.head = nn.Sequential(conv3x3(3, n_feats))
        self.body = nn.Sequential(LCBWithLTB(n_feats))
        self.tail = nn.Sequential(Upsampler(scale, n_feats), conv3x3(n_feats, 3))
        self.reduce = conv3x3(n_feats, n_feats)  # official: n_feats·n_blocks → n_feats with n_blocks = 1
        self.attention = attention

    @property
    def attention(self) -> str:
        """Attention computation of every EMHA: ``"sdpa"``, ``"chunked"`` (both memory-bounded) or ``"naive"``."""
        return self.body[0].attention.atten.mode

    @attention.setter
    def attention(self, mode: str) -> None:
        if mode not in ATTENTION_MODES:
            raise ValueError(f"attention={mode!r}; choose one of {', '.join(ATTENTION_MODES)}")
        for module in self.modules():
            if isinstance(module, EMHA):
                module.mode = mode

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if h < 2 or w < 2:  # the official code needs both sides >= 2 (AvgPool2d(2) in every HPB)
            x = F.pad(x, (0, max(0, 2 - w), 0, max(0, 2 - h)), mode="replicate")
        feat = self.head(as_channels_last(x))  # channels-last: docs/performance.md §3.5
        out = self.up(feat) + self.tail(self.reduce(self.body(feat)))
        return out[..., : h * self.scale, : w * self.scale]


class Upsampler(nn.Sequential):
    """EDSR ``common.Upsampler``: (conv3×3 C→4C, PixelShuffle(2)) per factor 2, or conv3×3 C→9C, PixelShuffle(3)."""

    def __init__(self, scale: int, n_feats: int) -> None:
        layers: list[nn.Module] = []
        for factor in upsampler_factors(scale):
            layers += [conv3x3(n_feats, factor * factor * n_feats), nn.PixelShuffle(factor)]
        super().__init__(*layers)


def upsampler_factors(scale: int) -> list[int]:
    if scale == 3:
        return [3]
    if scale >= 2 and scale & (scale - 1) == 0:
        return [2] * (scale.bit_length() - 1)
    raise ValueError(f"ESRT's upsampler supports scales 3 and powers of 2, not {scale}")


class BasicConv(nn.Module):
    """Official ``BasicConv`` with its defaults: a bias-free conv followed by ReLU (keys ``….conv.weight``)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.conv(x))


class Scale(nn.Module):
    """Official ``common.Scale``: one learnable scalar multiplier (key ``….scale``, shape [1])."""

    def __init__(self, init: float = 1.0) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor([init]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.scale


class ChannelAttention(nn.Module):
    """CA (official ``CALayer``): x · sigmoid(conv1×1(ReLU(conv1×1(mean over H, W of x)))), reduction 16."""

    def __init__(self, channels: int, reduction: int = 16) -> None:
        super().__init__()
        self.conv_du = nn.Sequential(
            nn.Conv2d(channels, channels // reduction, 1), nn.ReLU(inplace=True),
            nn.Conv2d(channels // reduction, channels, 1), nn.Sigmoid(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.conv_du(x.mean(dim=(-2, -1), keepdim=True))


# --------------------------------------------------------------------------------------------- LCB


class LCBWithLTB(nn.Module):
    """Official ``Un`` (``body.0``): the lightweight CNN backbone (three HPBs in a chain, their outputs fused by a
    3×3 conv) followed by the lightweight transformer backbone; returns λ1·x + λ2·alise(LTB(…))."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.encoder1 = HPB(n_feats)
        self.encoder2 = HPB(n_feats)
        self.encoder3 = HPB(n_feats)
        self.reduce = conv3x3(3 * n_feats, n_feats)
        self.weight2 = Scale()
        self.weight1 = Scale()
        self.attention = LTB(n_feats)
        self.alise = conv3x3(n_feats, n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.encoder1(x)
        x2 = self.encoder2(x1)
        x3 = self.encoder3(x2)
        t = self.attention(self.reduce(torch.cat([x1, x2, x3], dim=1)))
        return self.weight1(x) + self.weight2(self.alise(t))


class HPB(nn.Module):
    """High-preserving block (official ``Updownblock``).

    The high-frequency filtering module splits the ARFB-encoded features into a half-resolution low-frequency
    part (AvgPool2d(2), flooring odd sides) and the high-frequency residual against its bilinear
    (align_corners=True) upsampling. The low part goes through ``decoder_low`` five times (one module, shared
    weights), the high part through ``decoder_high``; both are fused, channel-attended and refined.
    """

    LOW_ITERATIONS = 5

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.encoder = ARFB(n_feats)
        self.decoder_low = ARFB(n_feats)
        self.decoder_high = ARFB(n_feats)
        self.alise = ARFB(n_feats)
        self.alise2 = BasicConv(2 * n_feats, n_feats, 1)
        self.att = ChannelAttention(n_feats)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        x1 = self.encoder(x)
        low = F.avg_pool2d(x1, 2)
        high = x1 - F.interpolate(low, size=size, mode="bilinear", align_corners=True)
        for _ in range(self.LOW_ITERATIONS):
            low = self.decoder_low(low)
        high = self.decoder_high(high)
        low = F.interpolate(low, size=size, mode="bilinear", align_corners=True)
        return self.alise(self.att(self.alise2(torch.cat([low, high], dim=1)))) + x


class ARFB(nn.Module):
    """Adaptive residual feature block (official ``one_module``): two chained RUs, their outputs re-weighted and
    fused (1×1 conv + ReLU), CA, a 3×3 conv + ReLU, and a re-weighted residual. ``weight1`` is unused, as in the
    official forward, but is part of the state dict."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.layer1 = RU(n_feats)
        self.layer2 = RU(n_feats)
        self.layer4 = BasicConv(n_feats, n_feats, 3)
        self.alise = BasicConv(2 * n_feats, n_feats, 1)
        self.atten = ChannelAttention(n_feats)
        self.weight1 = Scale()
        self.weight2 = Scale()
        self.weight3 = Scale()
        self.weight4 = Scale()
        self.weight5 = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1 = self.layer1(x)
        x2 = self.layer2(x1)
        fused = self.alise(torch.cat([self.weight2(x2), self.weight3(x1)], dim=1))
        return self.weight4(x) + self.weight5(self.layer4(self.atten(fused)))


class RU(nn.Module):
    """Residual unit (official ``one_conv``): λa·x + λb·conv3×3(PReLU(conv3×3(x))), halving then restoring width."""

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        self.conv = conv3x3(n_feats, n_feats // 2)
        self.conv1 = conv3x3(n_feats // 2, n_feats)
        self.relu = nn.PReLU(n_feats // 2)
        self.weight1 = Scale()
        self.weight2 = Scale()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.weight1(x) + self.weight2(self.conv1(self.relu(self.conv(x))))


# --------------------------------------------------------------------------------------------- LTB


class LTB(nn.Module):
    """Lightweight transformer backbone (official ``MLABlock``, key ``body.0.attention``).

    Every pixel becomes a token holding its 3×3 neighbourhood (zero padding; feature c·9 + ki·3 + kj), one
    pre-norm transformer layer (EMHA, then an MLP 9C→9C/4→9C) runs over the raster-ordered tokens, and the
    tokens are folded back. Fold **sums** the up to 9 overlapping contributions per pixel (no averaging).
    """

    def __init__(self, n_feats: int) -> None:
        super().__init__()
        dim = n_feats * PATCH * PATCH
        self.atten = EMHA(dim, NUM_HEADS)
        self.norm1 = LayerNorm(dim)
        self.mlp = MLP(dim, dim // 4)
        self.norm2 = LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        size = x.shape[-2:]
        tokens = F.unfold(x, PATCH, padding=PATCH // 2).transpose(1, 2)  # B, N, 9C
        tokens = tokens + self.atten(self.norm1(tokens))
        tokens = tokens + self.mlp(self.norm2(tokens))
        if is_exporting():
            return fold_as_shifted_sum(tokens.transpose(1, 2), size)
        return F.fold(tokens.transpose(1, 2), size, PATCH, padding=PATCH // 2)


def fold_as_shifted_sum(cols: torch.Tensor, size) -> torch.Tensor:
    """``F.fold(cols, size, 3, padding=1)`` as the sum of 9 shifted slices: the ONNX exporters cannot express
    col2im with a size known only at run time. Pixel (y, x) sums tap (a, b) of the token at (y+1−a, x+1−b);
    the same terms as col2im, summed in another order (float rounding only)."""
    h, w = size
    b = cols.shape[0]
    taps = F.pad(cols.reshape(b, -1, PATCH, PATCH, h, w), (1, 1, 1, 1))
    out = None
    for a in range(PATCH):
        for c in range(PATCH):
            term = taps[:, :, a, c, 2 - a:2 - a + h, 2 - c:2 - c + w]
            out = term if out is None else out + term
    return out


class MLP(nn.Module):
    """Official ``Mlp``: fc1, ReLU, fc2 (dropout 0)."""

    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.relu(self.fc1(x)))


class EMHA(nn.Module):
    """Efficient multi-head attention (official ``EffAttention``, key ``….attention.atten``).

    Tokens are reduced to half the width (no bias), projected to Q, K, V (no bias; channel index
    which·D/2 + head·d + i with d = D/16), and attention runs *within* consecutive segments of N//4 tokens in
    raster order (the paper's "feature split"), plus a 5th segment of the N mod 4 leftover tokens. The scale is
    (D/heads)^−½ = 1/6 for D = 288, although a head is only 18 wide: the official code's choice, kept.
    """

    def __init__(self, dim: int, num_heads: int = NUM_HEADS, mode: str = DEFAULT_ATTENTION) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.mode = mode
        self.reduce = nn.Linear(dim, dim // 2, bias=False)
        self.qkv = nn.Linear(dim // 2, dim // 2 * 3, bias=False)
        self.proj = nn.Linear(dim // 2, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.reduce(x)
        b, n, c = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        out = split_attention(q, k, v, self.scale, self.mode)  # B, heads, N, d
        return self.proj(out.transpose(1, 2).reshape(b, n, c))


# --------------------------------------------------------------------------------------------- registry

_ESRT_KEYS = ("up.1.conv.weight", "head.0.weight", "body.0.attention.atten.qkv.weight", "tail.1.weight")


def detect_config(state) -> dict | None:
    """Read the scale (from the tail upsampler) and the width n_feats (from the head) of an official ESRT state
    dict; ``None`` when the keys are not ESRT's."""
    if not all(key in state for key in _ESRT_KEYS):
        return None
    n_feats = int(state["head.0.weight"].shape[0])
    factors = []
    for index in range(0, 16, 2):
        key = f"tail.0.{index}.weight"
        if key not in state:
            break
        ratio, rest = divmod(int(state[key].shape[0]), n_feats)
        factor = math.isqrt(ratio)
        if rest or factor * factor != ratio or factor not in (2, 3):
            raise CheckpointError(f"{key} has {state[key].shape[0]} outputs, not 4 or 9 × n_feats={n_feats}")
        factors.append(factor)
    scale = math.prod(factors)
    try:
        supported = bool(factors) and upsampler_factors(scale) == factors
    except ValueError:
        supported = False
    if not supported:
        raise CheckpointError(f"ESRT tail upsampler stages {factors} do not form a supported scale")
    if n_feats % 16:
        raise CheckpointError(f"head.0.weight has {n_feats} outputs; ESRT needs a multiple of 16")
    return {"scale": scale, "n_feats": n_feats}


# cpu_bf16 stays off: bf16 autocast ran the shipped x4 only 3-5 % faster than fp32 at LR 128² (0.524-0.544 against
# 0.542-0.575 s, 2-core AVX-512 BF16 EPYC, 2026-11-30): CPU SDPA gains little from bf16 on its 18-wide heads (the
# query-chunked official arithmetic with oneDNN's softmax, 0.498 s, did not change that), and a channels-last input
# changed nothing there in bf16 (0.521 s); an NCHW tensor runs 1.12x faster in fp32 made channels-last first
# (docs/performance.md §3.5; pictures from upscale and eval arrive channels-last), so the head takes it. auto runs
# ESRT in fp32 on CPU.
#: ESRT's tile on the command line. Its attention runs within quarters of all the tile's tokens, so its cost per
#: pixel grows with the tile's area: a whole-picture forward cost 0.61× per pixel at LR 160², 1.24× at 288², against
#: 256² (``benchmarks/tile_rate.py``). Tiles of 128 with 16 pixels of context upscaled the Urban100 subset x4 in
#: 30.2 against 45.0 s for tiles of 256, for 25.3099 against 25.3068 dB (Set14 27.7407 against 27.7414);
#: the official test.py chops its inputs into tiles below 60,000 pixels as well (docs/performance.md §2.3).
BASE_TILE = 128

register_architecture(Architecture(name="esrt", build=ESRT, detect=detect_config, paper=PAPER,
                                   base_tile=lambda config: BASE_TILE))
register_variant(Variant(
    name="esrt", arch="esrt", config=dict(n_feats=32),
    description="ESRT: 32 features, LCB of 3 HPBs + one LTB (288-d 3×3 tokens, 8 heads, attention in N/4 segments)",
))
