"""SwinIR-light: Image Restoration Using Swin Transformer (Liang et al., ICCVW 2021), lightweight SR variant.

Faithful to github.com/JingyunLiang/SwinIR @6545850 (``models/network_swinir.py``, upsampler
``pixelshuffledirect``, ``resi_connection='1conv'``).
Reading order: SwinIR → RSTB (group) → SwinBlock (pre-norm) → WindowAttention.

State-dict keys are the official ones, so public SwinIR-light checkpoints load unchanged. The computed buffers
of the official code (``relative_position_index``, ``attn_mask``) are not required: the index is a
non-persistent buffer, the masks are built once per padded runtime size (``ops.attention.window_geometry``), and both
are accepted and discarded when a checkpoint contains them.

Differences from the official code that change nothing in the output (beyond fp32 rounding):
features are kept channels-last (B, H, W, C) instead of tokens (B, H·W, C) (same memory order); attention runs
through ``scaled_dot_product_attention``, or at inference on a CPU through litesr's compiled kernel (where it
runs) or as the official arithmetic a cache-sized chunk of windows at a time (which one:
``ops.policy.POLICY["swin attention"]``; the explicit path: ``ops.attention.set_fused_attention``); any
input size ≥ 1×1 works (the official code needs H, W ≥ 5).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..ops import ffn
from ..ops.attention import window_geometry
from ..ops.windows import relative_position_index
from .base import SRModel
from .blocks import PixelShuffleUpsampler, add_mean, pad_to_multiple
from .blocks import LayerNorm, PatchEmbedNorm, official_window_buffers, subtract_mean
from .blocks import ResidualGroup, swin_trunk
from .registry import LARGE_TILE, Architecture, CheckpointError, Variant, register_architecture, register_variant
from .statedict import mlp_ratio, nested_depths, pixel_shuffle_scale, refuse_other_swin_options, require
from .statedict import rgb_input_width

PAPER = "Liang et al., SwinIR: Image Restoration Using Swin Transformer, ICCV Workshops 2021"
MASK_FILL = -100.0


class SwinIR(SRModel):
    """SwinIR with the one-step pixel-shuffle head (the lightweight-SR configuration of the paper)."""

    arch_name = "swinir"

    def __init__(self, *, scale: int, embed_dim: int, depths: tuple[int, ...] | list[int],
                 num_heads: tuple[int, ...] | list[int], window_size: int, mlp_ratio: float,
                 img_range: float = 1.0) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        self.img_range = float(img_range)
        self.window_size = int(window_size)
        self.conv_first = nn.Conv2d(3, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbedNorm(embed_dim)
        self.layers = nn.ModuleList(
            RSTB(embed_dim, d, h, self.window_size, mlp_ratio) for d, h in zip(depths, num_heads)
        )
        self.norm = LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = PixelShuffleUpsampler(embed_dim, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        y = swin_trunk(self, subtract_mean(pad_to_multiple(x, self.size_multiple), self.img_range))
        y = add_mean(self.upsample(y), self.img_range)
        return y[..., : h * self.scale, : w * self.scale]


class RSTB(ResidualGroup):
    """Residual Swin Transformer block: ``x + conv3×3(blocks(x))`` (skip from the group input)."""

    def __init__(self, dim: int, depth: int, num_heads: int, window_size: int, mlp_ratio: float) -> None:
        super().__init__(dim, (
            SwinBlock(dim, num_heads, window_size, shift=window_size // 2 if i % 2 else 0, mlp_ratio=mlp_ratio)
            for i in range(depth)
        ))


class SwinBlock(nn.Module):
    """Pre-norm Swin block: ``x + WA(norm1(x))`` (shifted by window/2 in odd blocks), ``x + MLP(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, window_size: int, shift: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = (window_size, window_size)
        self.shift = (shift, shift) if shift else None
        self.norm1 = LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size, num_heads)
        self.norm2 = LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        geom = window_geometry(h, w, self.window, self.shift, MASK_FILL, x.device)
        x = x + geom.reverse(self.attn(geom.partition(self.norm1(x)), geom))
        return x + self.mlp(self.norm2(x))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ffn.mlp(x, self.fc1, self.act, self.fc2)


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window with a learned relative position bias table.

    ``qkv`` → q·d^−½ · kᵀ + table[index] (+ mask −100 in shifted blocks) → softmax → ·v → ``proj``.
    """

    fused_attention = True

    def __init__(self, dim: int, window_size: int | tuple[int, int], num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} does not split into {num_heads} heads")
        wh, ww = (window_size, window_size) if isinstance(window_size, int) else window_size
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * wh - 1) * (2 * ww - 1), num_heads))
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)
        self.register_buffer("relative_position_index", relative_position_index(wh, ww).clone(), persistent=False)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, geom) -> torch.Tensor:
        """x: (B·nW, N, C) windows of ``geom``."""
        b_, n, c = x.shape
        qkv = ffn.linear(x, self.qkv)
        q, k, v = qkv.reshape(b_, n, 3, self.num_heads, c // self.num_heads).permute(2, 0, 3, 1, 4)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        bias = bias.view(n, n, self.num_heads).permute(2, 0, 1)
        out = geom.attend(q * self.scale, k, v, bias, fused=self.fused_attention)
        return ffn.linear(out.transpose(1, 2).reshape(b_, n, c), self.proj)


# --------------------------------------------------------------------------------------------- registry

_BLOCK = r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\."
FAMILY = "SwinIR"
_PREFIX = "layers.0.residual_group.blocks.0."


def detect_config(state) -> dict | None:
    """Read width, depths, heads, window, MLP ratio and scale from an official-key SwinIR state dict."""
    if _PREFIX + "attn.qkv.weight" not in state or "conv_first.weight" not in state:
        return None
    unsupported = [k for k in ("conv_before_upsample.0.weight", "conv_last.weight", "absolute_pos_embed",
                               "layers.0.conv.0.weight") if k in state]
    refuse_other_swin_options(state, FAMILY, unsupported, "SwinIR-light: ")
    dim = rgb_input_width(state, "conv_first.weight", FAMILY)
    depths = nested_depths(state, _BLOCK, FAMILY)
    num_heads, window = [], None
    for g in range(len(depths)):
        key = f"layers.{g}.residual_group.blocks.0.attn.relative_position_bias_table"
        table = require(state, key, FAMILY)
        side = math.isqrt(int(table.shape[0]))
        if table.ndim != 2 or side * side != table.shape[0] or side % 2 == 0:
            raise CheckpointError(f"{key} has shape {tuple(table.shape)}, not ((2·window−1)², heads)")
        ws = (side + 1) // 2
        if window is not None and ws != window:
            raise CheckpointError(f"{key}: window {ws} differs from group 0's window {window}")
        window = ws
        num_heads.append(int(table.shape[1]))
    ratio = mlp_ratio(state, _PREFIX + "mlp.fc1.weight", dim, FAMILY)
    scale = pixel_shuffle_scale(state, "upsample.0.weight", FAMILY)
    _check_index(state, window)
    return {"scale": scale, "embed_dim": dim, "depths": depths, "num_heads": num_heads, "window_size": window,
            "mlp_ratio": ratio}


def _check_index(state, window: int) -> None:
    """A stored relative_position_index must be the one this implementation computes (it is then discarded)."""
    expected = relative_position_index(window, window)
    for key, value in state.items():
        if key.endswith(".attn.relative_position_index") and not (
                value.shape == expected.shape and torch.equal(value.long(), expected)):
            raise CheckpointError(f"{key}: not the relative position index of {window}×{window} windows")


def official_buffers(model: nn.Module, img_size: int = 64) -> dict[str, torch.Tensor]:
    """``relative_position_index`` of every block and ``attn_mask`` (−100) of the shifted ones at ``img_size``."""
    return official_window_buffers(model, SwinBlock, img_size, MASK_FILL, ("relative_position_index",))


# cpu_bf16: bf16 autocast 1.2-1.4x faster than fp32 for SwinIR-light x4 at LR 128² on a 2-core AVX-512 BF16 EPYC
# (benchmarks/precision_speed.py --arch swinir-light; 49 dB from fp32 with random weights; 1.07-1.14x when
# re-measured 2026-11-30, 0.41 against 0.44 s with freed blocks reused, 0.37 against 0.42 s without). With litesr's
# cpu291_x4 weights, bf16 moves Set5/Set14 PSNR by -0.0086/-0.0037 dB (30.6177 -> 30.6092, 27.5546 -> 27.5509).
register_architecture(Architecture(
    name="swinir", build=SwinIR, detect=detect_config, paper=PAPER,
    ignored_keys=r"\.attn\.relative_position_index$|\.attn_mask$", official_buffers=official_buffers,
    cpu_bf16=True, size_multiple=lambda config: int(config["window_size"]),
    large_tile=lambda config: LARGE_TILE if config["embed_dim"] <= 60 else 0,  # the light one: docs/performance.md §2.3
))
register_variant(Variant(
    name="swinir-light", arch="swinir",
    config=dict(embed_dim=60, depths=[6, 6, 6, 6], num_heads=[6, 6, 6, 6], window_size=8, mlp_ratio=2.0),
    description="SwinIR-light: C=60, 4 RSTBs × 6 blocks, 6 heads, window 8, pixel-shuffle-direct head",
))
