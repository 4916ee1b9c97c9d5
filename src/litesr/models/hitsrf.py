"""HiT-SRF: Hierarchical Transformer for efficient image super-resolution (Zhang et al., ECCV 2024).

Faithful to the NTIRE 2025 efficient-SR entry of team 54: github.com/Amazingren/NTIRE2025_ESR @b69fb66
(``models/team54_HITSR.py``, class ``HiT_SRF``, MIT), whose real ×4 checkpoint (``model_zoo/team54_HITSR.pth``,
``{"params": state_dict}``, trained on DIV2K + LSDIR) loads here unchanged. The spec this module follows layer by
layer is ``specs/hitsrf.md`` of the project's shared data.
Reading order: HiTSRF → RHTB (group) → HierarchicalBlock (post-norm) → SCC (spatial and channel
self-correlation, with its DFE projection and DynamicPosBias) and ConvFFN.

Quirks kept on purpose (each changes the output measurably):
- block j of every group works on windows of ``base_win_size · hier_win_ratios[j]`` (4, 8, 16, 32, 48, 64 for the
  published 8 and [0.5, 1, 2, 4, 6, 8]); each block pads its map to its window at the bottom/right and crops back;
- post-norm residuals: ``x + norm1(SCC(x))``, ``x + norm2(ConvFFN(x))``;
- the DFE projection (1×1 → LeakyReLU → 3×3 → LeakyReLU → 1×1, times a 1×1 branch) runs on the padded map and
  yields q (first C/2 channels) and v (last C/2); there are no keys;
- spatial self-correlation: v compressed per r×r cell of the window (r = window / base) by ``spatial_linear``,
  a learned weighted sum plus bias — applied even where r = 1; scores ``q·v̂ᵀ / head_dim`` (not √head_dim) plus a
  position bias, **no softmax**; channel self-correlation ``v·(qᵀv / L)ᵀ`` with L the window's pixel count
  (padded pixels included), no softmax, on the uncompressed v;
- position bias: a 3-wide non-residual MLP (``DynamicPosBias``) on raw integer offsets (query − key), averaged
  over each cell's key pixels;
- ConvFFN: ``fc1 → GELU → h + GELU(dwconv5×5(h)) → fc2`` (exact GELU), on the unpadded map;
- LayerNorm after ``conv_first``, before ``conv_after_body``; the global residual adds ``conv_first``'s output;
- the constructor's ``expansion_factor=2`` of the official test script is swallowed by ``**kwargs``: the MLP ratio
  stays at 2.0 (read here from ``mlp.fc1``).

Padding, and inputs of any size: the official blocks reflect-pad (in two steps where one does not reach), which
equals the mirror-periodic extension of the map (index i reads i mod (2n − 2), folded; the edge not repeated), and
raise for sides below 17 pixels (every group has a 64-pixel window). litesr pads by that same mirror-periodic rule
(``blocks.pad_to_multiple`` repeats the reflection as often as needed, and replicates a side of one pixel, whose
period is 0), so any input of at least 1×1 works, identical to the official output wherever that exists.

Differences from the official code that change nothing beyond fp32 rounding (the conformance vectors pass either
way; ``ops.attention.set_fused_attention(model, False)`` runs the official order):
- the position bias of each block depends only on its weights and window, so at inference it is built once and
  reused (``ops.derived.inference_weights``: rebuilt when a parameter changes, every call in training); it is built as
  a box filter over the MLP's offset table (one (2w−1)² table, r×r means, an L×M gather) instead of the official
  L×L gather and mean (≈1e8 values for a 64-pixel window, every block of every forward);
- both correlations are linear in their scores, so they are computed by associativity: the spatial one as
  ``q·(v̂ᵀv̂) / head_dim + bias·v̂`` (the bias product as one GEMM per head over all windows), the channel one as
  ``v·Gᵀ`` with the 30×30 G, never forming the (L×M) score maps per window. The compiled softmax kernels of
  ``ops.attention`` do not apply (no softmax here);
- features are kept channels-last (B, H, W, C) instead of tokens (B, H·W, C) (same memory order); the coordinate
  table is built in the weights' dtype (the official ``.float()`` makes fp64/fp16/bf16 models fail).
"""

from __future__ import annotations

import math
import re

import torch
import torch.nn.functional as F
from torch import nn

from ..ops import ffn
from ..ops.derived import inference_weights
from ..ops.norm import plus_normed
from ..ops.policy import is_exporting
from ..ops.windows import relative_position_index, window_partition, window_reverse, window_reverse_into
from .base import SRModel
from .blocks import LayerNorm, PatchEmbedNorm, PixelShuffleUpsampler, add_mean
from .blocks import pad_to_multiple, subtract_mean
from .blocks import ConvFFN, ResidualGroup, swin_trunk
from .registry import Architecture, CheckpointError, Variant, register_architecture, register_variant
from .statedict import mlp_ratio, nested_depths, pixel_shuffle_scale, refuse_other_swin_options, require
from .statedict import rgb_input_width

PAPER = "Zhang et al., HiT-SR: Hierarchical Transformer for Efficient Image Super-Resolution, ECCV 2024"
NEG_SLOPE = 0.2

#: The base window of the official constructor ([8, 8]): the weights tell only the ratio of each block's window to
#: it (``spatial_linear`` has (window / base)² inputs), never the base itself.
DEFAULT_BASE_WIN_SIZE = 8
#: The published ratios. A block whose window is at most the base (one ``spatial_linear`` input) cannot tell its
#: ratio from its weights; detection takes the published ratio of that block index where it is at most 1, else 1.
PUBLISHED_RATIOS = (0.5, 1, 2, 4, 6, 8)


def block_windows(base_win_size: int, hier_win_ratios) -> list[int]:
    """Window side of block j of every group: ``int(base · ratio_j)``."""
    return [int(base_win_size * r) for r in hier_win_ratios]


class HiTSRF(SRModel):
    """HiT-SRF with the one-step pixel-shuffle head (``upsampler='pixelshuffledirect'``, ``resi_connection='1conv'``,
    the NTIRE 2025 entry's and the paper's efficient-SR configuration)."""

    arch_name = "hitsrf"

    def __init__(self, *, scale: int, embed_dim: int, depths: tuple[int, ...] | list[int],
                 num_heads: tuple[int, ...] | list[int], hier_win_ratios: tuple[float, ...] | list[float],
                 mlp_ratio: float, base_win_size: int = DEFAULT_BASE_WIN_SIZE, img_range: float = 1.0,
                 upsampler: str = "pixelshuffledirect", resi_connection: str = "1conv") -> None:
        depths, num_heads = [int(d) for d in depths], [int(h) for h in num_heads]
        super().__init__()
        if len(depths) != len(num_heads):
            raise ValueError(f"depths {depths} and num_heads {num_heads} differ in length")
        if upsampler != "pixelshuffledirect" or resi_connection != "1conv":
            raise ValueError(f"litesr implements HiT-SRF with upsampler 'pixelshuffledirect' and resi_connection "
                             f"'1conv', not {upsampler!r} / {resi_connection!r}")
        windows = block_windows(base_win_size, hier_win_ratios)
        if max(depths) > len(windows):
            raise ValueError(f"depth {max(depths)} needs as many window ratios, got {list(hier_win_ratios)}")
        self.img_range = float(img_range)
        self.conv_first = nn.Conv2d(3, embed_dim, 3, 1, 1)
        self.patch_embed = PatchEmbedNorm(embed_dim)
        self.layers = nn.ModuleList(
            RHTB(embed_dim, d, h, windows, int(base_win_size), mlp_ratio) for d, h in zip(depths, num_heads)
        )
        self.norm = LayerNorm(embed_dim)
        self.conv_after_body = nn.Conv2d(embed_dim, embed_dim, 3, 1, 1)
        self.upsample = PixelShuffleUpsampler(embed_dim, scale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = swin_trunk(self, subtract_mean(x, self.img_range))
        return add_mean(self.upsample(y), self.img_range)


class RHTB(ResidualGroup):
    """Residual hierarchical transformer group: ``x + conv3×3(blocks(x))`` (skip from the group input)."""

    def __init__(self, dim: int, depth: int, num_heads: int, windows: list[int], base: int, mlp_ratio: float) -> None:
        super().__init__(dim, (HierarchicalBlock(dim, num_heads, windows[j], base, mlp_ratio) for j in range(depth)))


class HierarchicalBlock(nn.Module):
    """Post-norm block on windows of one size: pad the map to the window (mirror rule), ``SCC`` on the padded map,
    crop, ``x + norm1(·)``; then ``x + norm2(ConvFFN(x))`` on the unpadded map."""

    def __init__(self, dim: int, num_heads: int, window: int, base: int, mlp_ratio: float) -> None:
        super().__init__()
        self.window = window
        self.norm1 = LayerNorm(dim)
        self.correlation = SCC(dim, num_heads, window, base)
        self.norm2 = LayerNorm(dim)
        hidden = int(dim * mlp_ratio)  # ConvFFN: fc1 → GELU → h + GELU(dwconv5×5(h)) → fc2
        self.mlp = ConvFFN(dim, hidden, nn.Sequential(nn.Conv2d(hidden, hidden, 5, 1, 2, groups=hidden), nn.GELU()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _, h, w, _ = x.shape
        padded = mirror_pad(x.permute(0, 3, 1, 2), self.window)  # (B, C, Hp, Wp)
        a = self.correlation(padded)[:, :h, :w]  # (B, Hp, Wp, C) → (B, H, W, C)
        x = plus_normed(x, a, self.norm1)  # x + norm1(a), in one pass where the policy says so
        return self.mlp.plus_normed(x, self.norm2)  # x + norm2(mlp(x))


def mirror_pad(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad an NCHW map at the bottom/right to multiples of ``multiple`` by the mirror-periodic extension (the
    official two-step reflect padding wherever that runs; any size ≥ 1 here).

    Eager: :func:`blocks.pad_to_multiple` (reflections repeated as needed). While exporting, one gather per axis
    whose index is computed from the traced size, so one graph pads every size the same way."""
    if not is_exporting():
        return pad_to_multiple(x, multiple)
    h, w = x.shape[-2:]
    x = x.index_select(2, _mirror_index(h, multiple, x.device))
    return x.index_select(3, _mirror_index(w, multiple, x.device))


def _mirror_index(n, multiple: int, device) -> torch.Tensor:
    """Source index of each position of a side ``n`` padded to a multiple: i mod (2n − 2), folded at n − 1."""
    n = n.to(device) if isinstance(n, torch.Tensor) else torch.tensor(n, device=device)  # traced: a graph value
    size = n + torch.remainder(-n, multiple)
    i = torch.arange(size, device=device)  # tracers record the size as a graph value
    period = torch.clamp(2 * n - 2, min=1)  # a 1-pixel side: every index reads pixel 0
    k = torch.remainder(i, period)
    return (n - 1) - (k - (n - 1)).abs()


class SCC(nn.Module):
    """Spatial and channel self-correlation (official ``SCC``, key ``correlation``), on a padded map.

    ``qv`` (DFE) → windows → q, v (heads of C/(2h) channels each) → spatial branch on v compressed per cell,
    channel branch on v as it is → concatenated [spatial, channel] → ``proj``.
    """

    fused_attention = True

    def __init__(self, dim: int, num_heads: int, window: int, base: int) -> None:
        super().__init__()
        half = dim // 2
        if dim % 2 or half % num_heads:
            raise ValueError(f"width {dim} does not split into q, v halves of {num_heads} heads")
        self.num_heads, self.head_dim = num_heads, half // num_heads
        self.window = window
        self.base = min(window, base)
        if window % self.base:
            raise ValueError(f"window {window} is not a multiple of the base window {self.base}")
        self.cell = window // self.base  # r: side of the cell of pixels one compressed v stands for
        self.qv = DFE(dim, dim)
        self.proj = nn.Linear(dim, dim)
        self.spatial_linear = nn.Linear(self.cell ** 2, 1)
        self.pos = DynamicPosBias(dim // 4, num_heads)

    # -- position bias (num_heads, L, M): depends on the weights and the window only

    def official_position_bias(self) -> torch.Tensor:
        """The official arithmetic: the MLP's table gathered for every (query, key) pixel pair, averaged over the
        r×r key pixels of each cell."""
        ws, b, r, heads = self.window, self.base, self.cell, self.num_heads
        table = self.pos(offset_table(ws, self.pos.pos_proj.weight.dtype, self.pos.pos_proj.weight.device))
        index = relative_position_index(ws, ws).clone().to(table.device)  # (a normal tensor in autograd)
        bias = table[index.view(-1)].view(ws * ws, ws * ws, heads).permute(2, 0, 1)  # (h, L, L)
        bias = bias.reshape(heads, ws * ws, b, r, b, r)
        return bias.mean(dim=(3, 5)).reshape(heads, ws * ws, b * b)

    def position_bias(self) -> torch.Tensor:
        """The same values (to fp32 rounding) from the (2w−1)² table: its r×r box means, then one gather of L×M."""
        ws, b, r, heads = self.window, self.base, self.cell, self.num_heads
        weight = self.pos.pos_proj.weight
        table = self.pos(offset_table(ws, weight.dtype, weight.device))  # ((2ws−1)², h)
        table = table.t().reshape(heads, 2 * ws - 1, 2 * ws - 1)
        means = F.avg_pool2d(table[None], r, stride=1)[0] if r > 1 else table  # (h, 2ws−r, 2ws−r)
        # query y, key cell p covers key rows p·r … p·r+r−1: offsets y−p·r−r+1 … y−p·r, mean at row y−(p+1)·r+ws
        rows = _cell_offset_index(ws, b, r, weight.device)
        index = (rows[:, None, :, None] * means.shape[-1] + rows[None, :, None, :])  # (ws, ws, b, b) over (y,x,p,q)
        return means.reshape(heads, -1)[:, index.reshape(-1)].reshape(heads, ws * ws, b * b)

    def bias(self, dtype: torch.dtype) -> torch.Tensor:
        if not self.fused_attention:  # official order: rebuilt every call
            return self.official_position_bias().to(dtype)
        return inference_weights(self.pos, f"cell_bias_{self.window}", dtype, lambda: self.position_bias().to(dtype))

    # -- forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, Hp, Wp), Hp and Wp multiples of the window → (B, Hp, Wp, C)."""
        batch, c, hp, wp = x.shape
        ws, heads, d = self.window, self.num_heads, self.head_dim
        half = c // 2
        qv = window_partition(self.qv(x).permute(0, 2, 3, 1), ws, ws)  # (B', L, C)
        q, v = qv[..., :half], qv[..., half:]
        qh = q.unflatten(-1, (heads, d)).transpose(1, 2)  # (B', h, L, d)
        vh = v.unflatten(-1, (heads, d)).transpose(1, 2)
        v_cells = self.compress(vh)  # (B', h, M, d)
        bias = self.bias(qh.dtype)
        if self.fused_attention:
            spatial = self._spatial_associative(qh, v_cells, bias)
            channel = v @ ((q.transpose(1, 2) @ v) / (ws * ws)).transpose(1, 2)  # v · Gᵀ, G = qᵀv / L
            if not is_exporting():  # both halves written once, straight into the picture (no concatenated windows)
                out = x.new_empty(batch, hp, wp, c, dtype=torch.result_type(spatial, channel))  # as cat's
                window_reverse_into(out, spatial.transpose(1, 2), ws, ws, slice(0, half))
                window_reverse_into(out, channel, ws, ws, slice(half, c))
                return ffn.linear(out, self.proj)
        else:
            spatial = (qh @ v_cells.transpose(-2, -1) / d + bias) @ v_cells
            channel = (((q.transpose(1, 2) @ v) / (ws * ws)) @ v.transpose(1, 2)).transpose(1, 2)
        out = torch.cat((spatial.transpose(1, 2).reshape(-1, ws * ws, half), channel), dim=-1)
        return ffn.linear(window_reverse(out, ws, ws, hp, wp), self.proj)

    def compress(self, v: torch.Tensor) -> torch.Tensor:
        """(B', h, L, d) → (B', h, M, d): ``spatial_linear`` over the r² pixels of each cell (row-major in the cell),
        cells row-major in the window."""
        heads, d = v.shape[1], v.shape[3]
        b, r = self.base, self.cell  # (window counts as -1: a traced graph must not freeze them)
        cells = v.reshape(-1, heads, b, r, b, r, d).permute(0, 1, 2, 4, 6, 3, 5).reshape(-1, heads, b * b, d, r * r)
        return self.spatial_linear(cells).squeeze(-1)

    def _spatial_associative(self, q: torch.Tensor, v: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        """``(q·v̂ᵀ/d + bias)·v̂`` as ``q·(v̂ᵀv̂)/d + bias·v̂``: the bias term as one (L×M)·(M×B'd) GEMM per head."""
        heads, length, d = q.shape[1:]  # (window counts as -1: a traced graph must not freeze them)
        m = v.shape[2]
        gram = v.transpose(-2, -1) @ v / d  # (B', h, d, d)
        shared = torch.bmm(bias.to(v.dtype), v.permute(1, 2, 0, 3).reshape(heads, m, -1))  # (h, L, B'·d)
        shared = shared.view(heads, length, -1, d).permute(2, 0, 1, 3)
        return torch.baddbmm(shared.reshape(-1, length, d), q.reshape(-1, length, d),
                             gram.reshape(-1, d, d)).view(-1, heads, length, d)


def offset_table(ws: int, dtype: torch.dtype, device: torch.device | None = None) -> torch.Tensor:
    """((2ws−1)², 2) raw integer offsets (dy, dx), dy-major, in ``dtype`` (exact for any float type)."""
    r = torch.arange(1 - ws, ws, device=device)
    return torch.stack(torch.meshgrid(r, r, indexing="ij"), dim=-1).reshape(-1, 2).to(dtype)


def _cell_offset_index(ws: int, b: int, r: int, device) -> torch.Tensor:
    """(ws, b): row of the box-mean table for query row y and key cell row p: y − (p+1)·r + ws."""
    y = torch.arange(ws, device=device)[:, None]
    p = torch.arange(b, device=device)[None, :]
    return y - (p + 1) * r + ws


class DFE(nn.Module):
    """The official ``DFE`` (key ``qv``): ``conv(x) ⊙ linear(x)``, conv = 1×1 C→C/5 → LeakyReLU(0.2) → 3×3 →
    LeakyReLU(0.2) → 1×1 C/5→out, linear = 1×1 C→out."""

    def __init__(self, dim: int, out: int) -> None:
        super().__init__()
        hidden = dim // 5
        self.conv = nn.Sequential(
            nn.Conv2d(dim, hidden, 1), nn.LeakyReLU(NEG_SLOPE, inplace=True),
            nn.Conv2d(hidden, hidden, 3, 1, 1), nn.LeakyReLU(NEG_SLOPE, inplace=True),
            nn.Conv2d(hidden, out, 1),
        )
        self.linear = nn.Conv2d(dim, out, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x) * self.linear(x)


class DynamicPosBias(nn.Module):
    """Official ``DynamicPosBias(dim // 4, num_heads, residual=False)``: width ``pos_dim = (dim // 4) // 4``;
    ``pos_proj`` Linear(2 → pos_dim), then three [LayerNorm → ReLU → Linear] stages, the last to ``num_heads``."""

    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        pos_dim = dim // 4
        self.pos_proj = nn.Linear(2, pos_dim)

        def stage(out: int) -> nn.Sequential:
            return nn.Sequential(nn.LayerNorm(pos_dim), nn.ReLU(inplace=True), nn.Linear(pos_dim, out))

        self.pos1, self.pos2, self.pos3 = stage(pos_dim), stage(pos_dim), stage(num_heads)

    def forward(self, offsets: torch.Tensor) -> torch.Tensor:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))


# --------------------------------------------------------------------------------------------- registry

_BLOCK = r"^layers\.(\d+)\.residual_group\.blocks\.(\d+)\."
FAMILY = "HiT-SRF"
_PREFIX = "layers.0.residual_group.blocks.0."
_UNSUPPORTED = re.compile(r"^(conv_before_upsample\.|conv_last\.|upsample\.[1-9]\d*\.weight|absolute_pos_embed|"
                          r"layers\.\d+\.conv\.\d+\.)")


def detect_config(state) -> dict | None:
    """Read width, depths, heads, window ratios, MLP ratio, upsampler and scale from an official-key HiT-SRF state
    dict (spec §2-3)."""
    if _PREFIX + "correlation.spatial_linear.weight" not in state or "conv_first.weight" not in state:
        return None
    refuse_other_swin_options(state, FAMILY, sorted(k for k in state if _UNSUPPORTED.match(k)), "")
    dim = rgb_input_width(state, "conv_first.weight", FAMILY)
    depths = nested_depths(state, _BLOCK, FAMILY)
    num_heads: list[int] = []
    cells: list[int] = []  # r of block j, the same in every group
    for g, depth in enumerate(depths):
        heads = None
        for j in range(depth):
            prefix = f"layers.{g}.residual_group.blocks.{j}.correlation."
            key = prefix + "pos.pos3.2.weight"
            h = int(require(state, key, FAMILY).shape[0])
            if heads is not None and h != heads:
                raise CheckpointError(f"{key}: {h} heads, block 0 of group {g} has {heads}")
            heads = h
            _check_block(state, prefix, dim, h)
            r = _cell_side(state, prefix + "spatial_linear.weight")
            if j < len(cells) and cells[j] != r:
                raise CheckpointError(f"{prefix}spatial_linear.weight: cells of {r}×{r} pixels, block {j} of "
                                      f"group 0 has {cells[j]}×{cells[j]}")
            if j == len(cells):
                cells.append(r)
        num_heads.append(heads)
    ratios = [r if r > 1 else (PUBLISHED_RATIOS[j] if j < len(PUBLISHED_RATIOS) and PUBLISHED_RATIOS[j] <= 1 else 1)
              for j, r in enumerate(cells)]
    ratio = mlp_ratio(state, _PREFIX + "mlp.fc1.weight", dim, FAMILY)
    scale = pixel_shuffle_scale(state, "upsample.0.weight", FAMILY)
    return {"scale": scale, "embed_dim": dim, "depths": depths, "num_heads": num_heads, "hier_win_ratios": ratios,
            "mlp_ratio": ratio, "base_win_size": DEFAULT_BASE_WIN_SIZE, "upsampler": "pixelshuffledirect",
            "resi_connection": "1conv"}


def _cell_side(state, key: str) -> int:
    weight = require(state, key, FAMILY)
    r = math.isqrt(int(weight.shape[-1])) if weight.ndim == 2 else 0
    if weight.ndim != 2 or weight.shape[0] != 1 or r < 1 or r * r != weight.shape[1]:
        raise CheckpointError(f"{key} has shape {tuple(weight.shape)}, not (1, r²)")
    return r


def _check_block(state, prefix: str, dim: int, heads: int) -> None:
    """The shapes of one block's SCC that the width and head count fix (DFE hidden C // 5, pos width
    (C // 4) // 4, q/v halves split into heads)."""
    if dim % 2 or (dim // 2) % heads:
        raise CheckpointError(f"{prefix}pos.pos3.2.weight: {heads} heads do not split the {dim // 2}-channel q/v")
    pos_dim = (dim // 4) // 4
    expected = {
        "qv.conv.0.weight": (dim // 5, dim, 1, 1), "qv.conv.2.weight": (dim // 5, dim // 5, 3, 3),
        "qv.conv.4.weight": (dim, dim // 5, 1, 1), "qv.linear.weight": (dim, dim, 1, 1), "proj.weight": (dim, dim),
        "pos.pos_proj.weight": (pos_dim, 2), "pos.pos3.2.weight": (heads, pos_dim),
    }
    for name, shape in expected.items():
        value = require(state, prefix + name, FAMILY)
        if tuple(value.shape) != shape:
            raise CheckpointError(f"{prefix}{name} has shape {tuple(value.shape)}, expected {shape} for width {dim}")


def _largest_window(config: dict) -> int:
    return max(block_windows(config.get("base_win_size", DEFAULT_BASE_WIN_SIZE), config["hier_win_ratios"]))


# cpu_bf16: bf16 autocast measured 1.44x faster than fp32 on a 2-core AVX-512 BF16 EPYC (LR 128², 0.637 against
# 0.921 s; `python benchmarks/precision_speed.py --arch hitsrf --sizes 128`, 2026-12-06); with the NTIRE weights it
# costs Set5 32.5422 against 32.5537 dB (-0.0115), Set14 28.8674 against 28.8734 (-0.0060) (`litesr eval`).
register_architecture(Architecture(
    name="hitsrf", build=HiTSRF, detect=detect_config, paper=PAPER, cpu_bf16=True,
    # No image-level padding (every block pads to its own window and crops back); the multiple is the tiling hint:
    # tiles on the grid of the largest window share the whole image's windows that divide it (4…64, not 48; the
    # lcm, 192, would round the overlap up to 192).
    size_multiple=lambda config: _largest_window(config),
    # ... and the context a tile needs: one largest window (64 px for the published model). Real x4 weights, LR
    # 640×768 mirrored from three pictures, tiles of 256 aligned to 64, PSNR within 4 LR px of a seam against the
    # whole image, context 32 / 64 / 128: Urban100 img_021 53.8 / 59.8 / 58.3 dB, img_081 58.8 / 60.8 / 60.9,
    # the synthetic examples/sample.png 52.6 / 49.7 / 44.7; img_011's 768×512 corner, context 64 / 128: 47.3 / 43.6
    # (the 48-pixel windows, off the grid in most tiles, cost more than the context: two windows of context are no
    # better, and 1.7 times the work at tiles of 256).
    tile_context=lambda config: _largest_window(config),
))
register_variant(Variant(
    name="hitsrf", arch="hitsrf",
    config=dict(embed_dim=60, depths=[6, 6, 6, 6], num_heads=[6, 6, 6, 6], base_win_size=8,
                hier_win_ratios=[0.5, 1, 2, 4, 6, 8], mlp_ratio=2.0, upsampler="pixelshuffledirect",
                resi_connection="1conv"),
    description="HiT-SRF (NTIRE 2025 ESR entry): C=60, 4 groups × 6 blocks, 6 heads, windows 4/8/16/32/48/64",
))
