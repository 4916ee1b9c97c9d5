"""GRFormer: Grouped Residual Self-Attention for Lightweight Single Image Super-Resolution (2024).

Faithful to github.com/sisrformer/GRFormer @9e0c952 (``basicsr/archs/GRFormer_arch.py``, class ``GRFormer``).
Reading order: GRFormer → Group → GRSAB (block, post-norm) → GRSA (grouped residual attention with ES-RPB) and
the FFN with its depthwise-conv branch.

Quirks kept on purpose (each changes the output measurably):
- windows alternate 8×32 (blocks 0, 1, 4, 5, …) and 32×8 (blocks 2, 3, …): ``(i // 2) % 2``;
- odd blocks shift by (4, 16) — half the *configured* window, **not** swapped in the 32×8 blocks;
- the mask fill is −1e9; the input is reflect-padded to a multiple of 32 (bottom/right);
- the group residual wraps only the conv: ``y = blocks(x); out = y + conv(y)``;
- post-norm: ``x + norm1(attn(x))``, ``x + norm2(ffn(x))``.

State-dict keys are the official ones. The ES-RPB coordinate table (``attn.relative_position_bias_table``, a
constant buffer derived from the window size), ``relative_position_index`` and ``attn_mask`` are computed here
and accepted (checked, then discarded) when a checkpoint holds them.
"""

from __future__ import annotations

import math
import re

import torch
from torch import nn

from ..ops import ffn, policy
from ..ops.attention import window_geometry
from ..ops.derived import inference_weights
from ..ops.windows import relative_position_index
from .base import SRModel
from .blocks import PixelShuffleUpsampler, add_mean, pad_to_multiple
from .blocks import LayerNorm, official_window_buffers, subtract_mean
from .blocks import ConvFFN
from .registry import Architecture, CheckpointError, Variant, register_architecture, register_variant
from .statedict import mlp_ratio, nested_depths, pixel_shuffle_scale, require, rgb_input_width

PAPER = "GRFormer: Grouped Residual Self-Attention for Lightweight Single Image Super-Resolution, 2024"
MASK_FILL = -1e9
LOGIT_SCALE_MAX = math.log(1.0 / 0.01)
ESRPB_HIDDEN = 128


#: Window of the even block pairs (the odd pairs use it transposed): the published 8×32, read from the weights
#: when a checkpoint stores its ES-RPB tables, else this.
DEFAULT_WINDOW = (8, 32)

class GRFormer(SRModel):
    arch_name = "grformer"

    def __init__(self, *, scale: int, embed_dim: int, depths: tuple[int, ...] | list[int],
                 num_heads: tuple[int, ...] | list[int], mlp_ratio: float,
                 window_size: tuple[int, int] | list[int] = DEFAULT_WINDOW, img_range: float = 1.0) -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        window_size = [int(w) for w in window_size]
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        if embed_dim % 2:
            raise ValueError(f"embed_dim {embed_dim} must be even (grouped residual layers split it in halves)")
        self.img_range = float(img_range)
        self.conv_first = nn.Conv2d(3, embed_dim, 3, 1, 1)
        self.layers = nn.ModuleList(
            Group(embed_dim, d, h, tuple(window_size), mlp_ratio) for d, h in zip(depths, num_heads)
        )
        self.norm = LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = PixelShuffleUpsampler(embed_dim, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = subtract_mean(pad_to_multiple(x, self.size_multiple), self.img_range)
        f = self.conv_first(x)
        t = f.permute(0, 2, 3, 1).contiguous()  # (B, H, W, C): tokens in row-major order, no patch norm
        for layer in self.layers:
            t = layer(t)
        t = self.norm(t)
        y = self.conv_after_body(t.permute(0, 3, 1, 2)) + f
        y = add_mean(self.upsample(y), self.img_range)
        return y[..., : h * self.scale, : w * self.scale]


def block_window(index: int, window: tuple[int, int] | list[int]) -> tuple[int, int]:
    """The window of block ``index`` of a group: the configured one for blocks 0, 1, 4, 5, …, transposed for
    blocks 2, 3, 6, 7, … (official ``(i // 2) % 2``)."""
    wh, ww = window
    return (wh, ww) if (index // 2) % 2 == 0 else (ww, wh)


class Group(nn.Module):
    """Official ``GRSAB_Group``: ``y = blocks(x); y + conv3×3(y)`` — no skip from the group input."""

    def __init__(self, dim: int, depth: int, num_heads: int, window: tuple[int, int], mlp_ratio: float) -> None:
        super().__init__()
        wh, ww = window
        self.blocks = nn.ModuleList(
            GRSAB(dim, num_heads,
                  window=block_window(i, window),
                  shift=(wh // 2, ww // 2) if i % 2 else None,  # from the configured window, never swapped
                  mlp_ratio=mlp_ratio)
            for i in range(depth)
        )
        self.conv = nn.Conv2d(dim, dim, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self.blocks:
            x = block(x)
        return x + self.conv(x.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)


class GRSAB(nn.Module):
    """Post-norm block: ``x + norm1(GRSA(x))`` over (shifted) windows, then ``x + norm2(FFN(x))``."""

    def __init__(self, dim: int, num_heads: int, window: tuple[int, int], shift: tuple[int, int] | None,
                 mlp_ratio: float) -> None:
        super().__init__()
        self.window, self.shift = window, shift
        self.attn = GRSA(dim, window, num_heads)
        self.norm1 = LayerNorm(dim)
        hidden = int(dim * mlp_ratio)  # ConvFFN: fc1 → GELU → h + (dwconv3×3 → GELU → dwconv3×3)(h) → fc2
        self.mlp = ConvFFN(dim, hidden, nn.Sequential(
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden), nn.GELU(),
            nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden),
        ))
        self.norm2 = LayerNorm(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        geom = window_geometry(h, w, self.window, self.shift, MASK_FILL, x.device)
        x = x + self.norm1(geom.reverse(self.attn(geom.partition(x), geom)))
        return x + self.norm2(self.mlp(x))


def esrpb_coordinates(wh: int, ww: int) -> torch.Tensor:
    """ES-RPB coordinate table (1, 2wh−1, 2ww−1, 2): relative offsets scaled to ±3.2, then
    t ↦ sign(t)·(1 − exp(−|t|)). Float32, divide before multiplying (bit-identical to the official buffer)."""
    dy = torch.arange(-(wh - 1), wh, dtype=torch.float32)
    dx = torch.arange(-(ww - 1), ww, dtype=torch.float32)
    table = torch.stack(torch.meshgrid(dy, dx, indexing="ij"), dim=-1).unsqueeze(0)
    table[..., 0] /= wh - 1
    table[..., 1] /= ww - 1
    table *= 3.2
    return torch.sign(table) * (1 - torch.exp(-table.abs()))


class GRSA(nn.Module):
    """Grouped residual self-attention.

    Q, K, V from grouped residual layers (``Q = [x0 + q1(x0), x1 + q2(x1)]`` over the channel halves), heads as
    contiguous channel blocks, cosine attention scaled by ``exp(min(logit_scale, ln 100))``, plus the ES-RPB bias
    ``16·sigmoid(MLP(coords)[index])`` (computed once per call, shared by all windows), mask, softmax, and the
    grouped output projection ``[proj1(o0), proj2(o1)]``.
    """

    fused_attention = True

    def __init__(self, dim: int, window: tuple[int, int], num_heads: int) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"width {dim} does not split into {num_heads} heads")
        self.num_heads = num_heads
        half = dim // 2
        self.logit_scale = nn.Parameter(torch.log(10 * torch.ones(num_heads, 1, 1)))
        self.ESRPB_MLP = nn.Sequential(nn.Linear(2, ESRPB_HIDDEN), nn.ReLU(inplace=True),
                                       nn.Linear(ESRPB_HIDDEN, num_heads, bias=False))
        self.register_buffer("relative_position_bias_table", esrpb_coordinates(*window), persistent=False)
        self.register_buffer("relative_position_index", relative_position_index(*window).clone(), persistent=False)
        for name in ("q1", "q2", "k1", "k2", "v1", "v2", "proj1", "proj2"):
            setattr(self, name, nn.Linear(half, half))

    def position_bias(self) -> torch.Tensor:
        """(nH, N, N) ES-RPB bias, 16·sigmoid(MLP(coords)[index])."""
        n = self.relative_position_index.shape[0]
        table = self.ESRPB_MLP(self.relative_position_bias_table).view(-1, self.num_heads)
        bias = table[self.relative_position_index.view(-1)].view(n, n, self.num_heads).permute(2, 0, 1)
        return 16 * torch.sigmoid(bias)

    def forward(self, x: torch.Tensor, geom) -> torch.Tensor:
        """x: (B·nW, N, C) windows of ``geom``."""
        b_, n, c = x.shape
        half, heads = c // 2, self.num_heads
        # the channel halves as 2-D strided views: F.linear then runs one addmm (bias fused) on each; on a 3-D
        # slice it ran a matmul plus a separate bias pass (GRFormer bf16 training step 1.6 s against 1.8 s)
        rows = x.reshape(b_ * n, c)
        folded = policy.choose("grformer projections", x.device, x.dtype) == "folded"
        if folded:  # one GEMM for Q, K and V: [x0 + q1(x0), x1 + q2(x1)] = x·(I + diag(q1, q2))ᵀ + b, …
            *qkv, (proj_weight, proj_bias) = inference_weights(self, "folded", x.dtype, self.folded)
            q, k, v = (ffn.linear_weights(rows, w, b).view(b_, n, heads, c // heads).transpose(1, 2)
                       for w, b in qkv)
        else:
            x0, x1 = rows[:, :half], rows[:, half:]

            def grl(first: nn.Linear, second: nn.Linear) -> torch.Tensor:  # [x0 + first(x0), x1 + second(x1)]
                t = torch.cat((x0 + first(x0), x1 + second(x1)), dim=-1)
                return t.view(b_, n, heads, c // heads).transpose(1, 2)

            # (six small GEMMs measured faster here than two concatenated-weight GEMMs)
            q, k, v = grl(self.q1, self.q2), grl(self.k1, self.k2), grl(self.v1, self.v2)
        scale = torch.clamp(self.logit_scale, max=LOGIT_SCALE_MAX).exp()
        # the bias depends on the weights alone: built once at inference (fp32 forward at LR 64² 0.195 against
        # 0.209 s, alternating A/B, medians of 10; -0.7 % at 128²)
        bias = inference_weights(self, "position_bias", x.dtype, self.position_bias)
        o = geom.attend(q, k, v, bias, fused=self.fused_attention, cosine=scale)
        o = o.transpose(1, 2).reshape(b_ * n, c)
        if folded:
            return ffn.linear_weights(o, proj_weight, proj_bias).view(b_, n, c)
        return torch.cat((self.proj1(o[:, :half]), self.proj2(o[:, half:])), dim=-1).view(b_, n, c)

    def folded(self) -> tuple[tuple[torch.Tensor, torch.Tensor], ...]:
        """The grouped residual layers as plain (C, C) linear layers, (weight, bias) each: Q, K and V, each weight
        ``I + diag(W1, W2)`` (block-diagonal, the residual on its diagonal), and the output projection
        ``diag(proj1, proj2)``. The same sums as the official layers, grouped otherwise: the
        identity added to the weight rounds ``1 + w`` instead of ``x + w·x``, a relative 6e-8 of the input."""
        eye = torch.eye(self.q1.in_features, dtype=self.q1.weight.dtype, device=self.q1.weight.device)

        def diag(first: nn.Linear, second: nn.Linear, residual: bool) -> tuple[torch.Tensor, torch.Tensor]:
            weight = torch.block_diag(first.weight + eye, second.weight + eye) if residual else torch.block_diag(
                first.weight, second.weight)
            return weight, torch.cat((first.bias, second.bias))

        return (diag(self.q1, self.q2, True), diag(self.k1, self.k2, True), diag(self.v1, self.v2, True),
                diag(self.proj1, self.proj2, False))


# --------------------------------------------------------------------------------------------- registry

_BLOCK = r"^layers\.(\d+)\.blocks\.(\d+)\."
FAMILY = "GRFormer"
_PREFIX = "layers.0.blocks.0."


def detect_config(state) -> dict | None:
    """Read width, depths, heads, window, MLP ratio and scale from an official-key GRFormer state dict (§4.10)."""
    if _PREFIX + "attn.q1.weight" not in state or "conv_first.weight" not in state:
        return None
    dim = rgb_input_width(state, "conv_first.weight", FAMILY)
    depths = nested_depths(state, _BLOCK, FAMILY)
    num_heads = []
    for g in range(len(depths)):
        key = f"layers.{g}.blocks.0.attn.logit_scale"
        scale_param = require(state, key, FAMILY)
        if scale_param.ndim != 3 or scale_param.shape[1:] != (1, 1):
            raise CheckpointError(f"{key} has shape {tuple(scale_param.shape)}, not (heads, 1, 1)")
        num_heads.append(int(scale_param.shape[0]))
    window = DEFAULT_WINDOW
    coords_key = _PREFIX + "attn.relative_position_bias_table"
    if coords_key in state:
        shape = tuple(state[coords_key].shape)
        if len(shape) != 4 or shape[0] != 1 or shape[3] != 2 or shape[1] % 2 == 0 or shape[2] % 2 == 0:
            raise CheckpointError(f"{coords_key} has shape {shape}, not the ES-RPB table (1, 2Wh−1, 2Ww−1, 2)")
        window = ((shape[1] + 1) // 2, (shape[2] + 1) // 2)
    ratio = mlp_ratio(state, _PREFIX + "mlp.fc1.weight", dim, FAMILY)
    scale = pixel_shuffle_scale(state, "upsample.0.weight", FAMILY)
    _check_constants(state, window)
    return {"scale": scale, "embed_dim": dim, "depths": depths, "num_heads": num_heads, "window_size": list(window),
            "mlp_ratio": ratio}


_CONST = re.compile(r"^layers\.\d+\.blocks\.(\d+)\.attn\.(relative_position_bias_table|relative_position_index)$")


def _check_constants(state, window: tuple[int, int]) -> None:
    """Stored ES-RPB coordinates / relative position indices must be the ones computed here (then discarded)."""
    for key, value in state.items():
        m = _CONST.match(key)
        if not m:
            continue
        wh, ww = block_window(int(m.group(1)), window)
        if m.group(2) == "relative_position_bias_table":
            expected = esrpb_coordinates(wh, ww)
            ok = value.shape == expected.shape and torch.allclose(value.float(), expected, atol=1e-3, rtol=0)
            what = f"the ES-RPB coordinate table of {wh}×{ww} windows {tuple(expected.shape)}"
        else:
            expected = relative_position_index(wh, ww)
            ok = value.shape == expected.shape and torch.equal(value.long(), expected)
            what = f"the relative position index of {wh}×{ww} windows"
        if not ok:
            raise CheckpointError(f"{key} (shape {tuple(value.shape)}) is not {what}")


def official_buffers(model: nn.Module, img_size: int = 64) -> dict[str, torch.Tensor]:
    """ES-RPB coordinates and ``relative_position_index`` of every block, ``attn_mask`` (−1e9) of the shifted ones."""
    return official_window_buffers(model, GRSAB, img_size, MASK_FILL,
                                   ("relative_position_bias_table", "relative_position_index"))


# cpu_bf16: bf16 autocast was 0.92x (slower) until its layer norms ran in float32 (blocks.LayerNorm); since then
# 0.538 against 0.618 s at LR 128² and 2.31 against 2.74 s at 256² for the shipped x4 (alternating order, medians
# of 6, 2-core AVX-512 BF16 EPYC, 2026-11-30), for Set5/Set14 PSNR -0.011/-0.005 dB (docs/performance.md §2.7).
register_architecture(Architecture(
    name="grformer", build=GRFormer, detect=detect_config, paper=PAPER, cpu_bf16=True,
    ignored_keys=r"\.attn\.relative_position_(index|bias_table)$|\.attn_mask$",
    official_buffers=official_buffers,
    # official: max(window_size) (= lcm for 8/32); lcm keeps both orientations valid for any window pair
    size_multiple=lambda config: math.lcm(*config["window_size"]),
))
register_variant(Variant(
    name="grformer", arch="grformer",
    config=dict(embed_dim=60, depths=[6, 6, 6, 6], num_heads=[3, 3, 3, 3], mlp_ratio=2.0),
    description="GRFormer (the paper's lightweight model): C=60, 4 groups × 6 blocks, 3 heads, windows 8×32/32×8",
))
