"""ELAN: Efficient Long-Range Attention Network (Zhang et al., ECCV 2022).

Faithful to github.com/xindongzhang/ELAN @97ab3fa (``models/elan_network.py``, ``models/elan_block.py``).
Reading order: ELAN → ELAB (block) → LFE (shift-convs) → GMSA (attention).

The official network works on 0..255 images; litesr's convention is [0, 1], so ``ours(x) = official(255·x) / 255``.
State-dict keys are the official ones, fixed constants included (mean-shift convs, one-hot shift kernels).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from ..ops.attention import elan_window_attention
from ..ops.conv import as_channels_last, depthwise_shift, one_hot_shift_kernel, shift_convs_relu
from ..ops.derived import inference_weights
from .base import SRModel
from .blocks import MeanShift, PixelShuffleUpsampler, pad_to_multiple
from .registry import LARGE_TILE, Architecture, CheckpointError, Variant, register_architecture, register_variant
from .statedict import nested_depths, pixel_shuffle_scale, rgb_input_width

PAPER = "Zhang et al., Efficient Long-Range Attention Network for Image Super-resolution, ECCV 2022"
RGB_RANGE = 255.0


#: The window sizes of the three channel groups: the same in every published ELAN, and not in the weights.
WINDOW_SIZES = (4, 8, 16)

class ELAN(SRModel):
    arch_name = "elan"

    def __init__(self, *, scale: int, c_elan: int, m_elan: int, n_share: int, r_expand: int,
                 window_sizes: tuple[int, ...] | list[int] = WINDOW_SIZES) -> None:
        window_sizes = [int(w) for w in window_sizes]
        super().__init__()
        if m_elan % (1 + n_share):
            raise ValueError(f"m_elan={m_elan} must be a multiple of n_share+1={1 + n_share}")
        if c_elan % len(window_sizes):
            raise ValueError(f"c_elan={c_elan} must split into {len(window_sizes)} window groups")
        self.window_sizes = window_sizes
        self.sub_mean = MeanShift(RGB_RANGE, sign=-1)
        self.add_mean = MeanShift(RGB_RANGE, sign=1)
        self.head = nn.Sequential(nn.Conv2d(3, c_elan, 3, 1, 1))
        self.body = nn.Sequential(*[
            ELAB(c_elan, r_expand, shifted=i % 2 == 1, window_sizes=window_sizes, n_share=n_share)
            for i in range(m_elan // (1 + n_share))
        ])
        self.tail = PixelShuffleUpsampler(c_elan, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        x = pad_to_multiple(x * RGB_RANGE, self.size_multiple)
        # channels-last through the body: the 1×1 convs read and write the token layout the attention gathers from
        x = self.head(as_channels_last(self.sub_mean(x)))
        x = self.tail(self.body(x) + x)
        x = self.add_mean(x)
        return x[..., : h * self.scale, : w * self.scale] / RGB_RANGE


class ELAB(nn.Module):
    """Efficient long-range attention block: (n_share+1) × [LFE, GMSA]; GMSA_0's attention maps are reused by the
    later GMSAs of the same block (shared attention), never across blocks."""

    def __init__(self, channels: int, r_expand: int, shifted: bool, window_sizes: list[int], n_share: int) -> None:
        super().__init__()
        self.modules_lfe = nn.ModuleDict({f"lfe_{j}": LFE(channels, r_expand) for j in range(n_share + 1)})
        self.modules_gmsa = nn.ModuleDict({
            f"gmsa_{j}": GMSA(channels, shifted, window_sizes, calc_attn=j == 0) for j in range(n_share + 1)
        })

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = None
        for lfe, gmsa in zip(self.modules_lfe.values(), self.modules_gmsa.values()):
            x = lfe.plus_input(x)
            y, attn = gmsa(x, attn)
            x = y.add_(x)
        return x


class LFE(nn.Module):
    """Local feature extraction: shift-conv C→rC, ReLU, shift-conv rC→C."""

    def __init__(self, channels: int, r_expand: int) -> None:
        super().__init__()
        self.conv0 = ShiftConv(channels, channels * r_expand)
        self.conv1 = ShiftConv(channels * r_expand, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.training:
            return self.conv1(F.relu(self.conv0(x), inplace=True))
        # inference: both shift-convs in litesr's compiled kernel, or the ReLU inside the first 1×1 conv where oneDNN
        # fuses it (ops.conv.shift_convs_relu)
        return shift_convs_relu(self, x, self.conv0.shift_conv, self.conv1.shift_conv)

    def plus_input(self, x: torch.Tensor) -> torch.Tensor:
        """``self(x) + x``: the add in place into the fresh output (no new allocation per add), or inside the
        compiled kernel."""
        if self.training:
            return self(x).add_(x)
        return shift_convs_relu(self, x, self.conv0.shift_conv, self.conv1.shift_conv, residual=True)


class ShiftConv(nn.Module):
    """Official ``ShiftConv2d`` wrapper: keeps the ``conv0.shift_conv.*`` key nesting of the official code."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shift_conv = _ShiftThen1x1(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_conv(x)


class _ShiftThen1x1(nn.Module):
    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.register_buffer("weight", one_hot_shift_kernel(in_channels))
        self.conv1x1 = nn.Conv2d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv1x1(self.shift(x))

    def shift(self, x: torch.Tensor) -> torch.Tensor:
        return depthwise_shift(x, self.weight)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs):
        key = prefix + "weight"
        if key in state_dict and state_dict[key].shape == self.weight.shape:
            if not torch.equal(state_dict[key].to(self.weight), one_hot_shift_kernel(self.weight.shape[0])):
                error_msgs.append(f"{key}: not the fixed one-hot shift kernel of the official ShiftConv2d1")
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)


class GMSA(nn.Module):
    """Group-wise multi-scale self-attention with the ASA simplifications.

    Channels split into one group per window size. With ``calc_attn`` the projection gives Q|V per group and
    A = softmax(Q Qᵀ) (K = Q, no scaling, BN instead of LN); otherwise it gives V only and reuses the A passed in.
    Shifted blocks roll each group by half its window, cyclically and without a mask.

    Inference path (same arithmetic, fewer passes over memory): BatchNorm folded into the 1×1 projection; roll and
    window partition as one gather of the token rows (:func:`~litesr.ops.windows.window_order`), window reverse and
    roll back as one gather; the projection read and written channels-last when the block runs channels-last; each
    group's attention on the path :func:`~litesr.ops.attention.elan_window_attention` takes (where litesr's compiled
    kernel runs, in one call and, in bf16, with its rows written straight into the output).
    """

    def __init__(self, channels: int, shifted: bool, window_sizes: list[int], calc_attn: bool) -> None:
        super().__init__()
        self.shifted = shifted
        self.window_sizes = window_sizes
        self.calc_attn = calc_attn
        inner = channels * 2 if calc_attn else channels
        self.project_inp = nn.Sequential(nn.Conv2d(channels, inner, 1), nn.BatchNorm2d(inner))
        self.project_out = nn.Conv2d(channels, channels, 1)

    def projection(self, x: torch.Tensor) -> torch.Tensor:
        """conv1×1 then BatchNorm; at inference one conv with BN folded into its weight and bias."""
        conv, bn = self.project_inp
        if self.training:
            return bn(conv(x))
        return F.conv2d(x, *inference_weights(self.project_inp, "bn_folded", x.dtype, lambda: self._folded(x.dtype)))

    def _folded(self, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
        """Weight and bias of the 1×1 projection with the (eval-mode) BatchNorm after it folded in, in ``dtype``."""
        conv, bn = self.project_inp
        scale = bn.weight * torch.rsqrt(bn.running_var + bn.eps)
        weight = conv.weight * scale[:, None, None, None]
        bias = (conv.bias - bn.running_mean) * scale + bn.bias
        return weight.to(dtype), bias.to(dtype)

    def forward(self, x: torch.Tensor, attns: list[torch.Tensor] | None = None):
        b, c, h, w = x.shape
        t = self.projection(x).permute(0, 2, 3, 1).reshape(b, h * w, -1)  # B, H·W, C' (a view if channels-last)
        y, new_attns = elan_window_attention(t, x.shape, self.window_sizes, self.shifted, self.calc_attn, attns)
        return self.project_out(y.view(b, h, w, c).permute(0, 3, 1, 2)), new_attns  # a channels-last NCHW view


# --------------------------------------------------------------------------------------------- registry

_LFE = r"^body\.(\d+)\.modules_lfe\.lfe_(\d+)\.conv0\.shift_conv\.conv1x1\.weight$"
FAMILY = "ELAN"


def detect_config(state) -> dict | None:
    """Read C, depth, sharing, expansion and scale from an (official-key) ELAN state dict."""
    if "body.0.modules_lfe.lfe_0.conv0.shift_conv.conv1x1.weight" not in state or "tail.0.weight" not in state:
        return None
    c_elan = rgb_input_width(state, "head.0.weight", FAMILY)
    lfes_per_block = nested_depths(state, _LFE, FAMILY)
    if len(set(lfes_per_block)) != 1:
        raise CheckpointError(f"ELAN blocks hold different numbers of LFE/GMSA pairs: {lfes_per_block}")
    expand = state["body.0.modules_lfe.lfe_0.conv0.shift_conv.conv1x1.weight"].shape[0]
    return {
        "scale": pixel_shuffle_scale(state, "tail.0.weight", FAMILY),
        "c_elan": c_elan,
        "m_elan": sum(lfes_per_block),
        "n_share": lfes_per_block[0] - 1,
        "r_expand": int(expand) // c_elan,
        "window_sizes": list(WINDOW_SIZES),
    }


# cpu_bf16: bf16 autocast 1.4-1.5x faster than the fp32 fast path for ELAN-light at LR 128-256² on a 2-core
# AVX-512 BF16 EPYC (benchmarks/floor.py).
# large_tile: ELAN-light x4 of an LR 2048×1536 picture as `litesr upscale` runs it took 1.07× the 256² picture's time
# per output pixel with 384 tiles, 1.23× with 256 (docs/performance.md §2.3); the C=180 ELAN keeps the default.
register_architecture(Architecture(name="elan", build=ELAN, detect=detect_config, paper=PAPER, cpu_bf16=True,
                                   size_multiple=lambda config: math.lcm(*config["window_sizes"]),
                                   large_tile=lambda config: LARGE_TILE if config["c_elan"] <= 60 else 0))
register_variant(Variant(
    name="elan-light", arch="elan", config=dict(c_elan=60, m_elan=24, n_share=1, r_expand=2),
    description="ELAN-light: C=60, 24 LFE/GMSA pairs in 12 blocks, attention shared by pairs, windows 4/8/16",
))
register_variant(Variant(
    name="elan", arch="elan", config=dict(c_elan=180, m_elan=36, n_share=0, r_expand=2),
    description="ELAN: C=180, 36 blocks, no sharing, windows 4/8/16",
))
