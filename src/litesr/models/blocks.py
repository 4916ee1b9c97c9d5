"""Building blocks shared by several architectures, written once.

Window helpers follow the Swin/SwinIR layout that ELAN, SwinIR and GRFormer all use: windows ordered
batch-major, then window-row, then window-column; tokens inside a window row-major; channels last.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from .. import compat, native

T = TypeVar("T")

#: RGB mean of DIV2K, used by ELAN, SwinIR and GRFormer for their mean shift.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)


def is_exporting() -> bool:
    """True while a graph is traced, compiled or exported: sizes must then flow through the graph as values
    (no size-keyed caches, no Python branches on sizes), or the graph freezes the size it was traced at."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def inference_weights(module: nn.Module, key: str, dtype: torch.dtype, build: Callable[[], T]) -> T:
    """What ``build()`` derives from ``module``'s parameters and buffers (BatchNorm folded into a conv, weights
    padded or cast to ``dtype``, a position bias), built once per ``key`` and dtype at inference and built again
    whenever one of those tensors was replaced or changed in place (an optimizer or EMA step, ``load_state_dict``,
    ``.to()``: each replaces a tensor or bumps its version counter). A change made through ``.data`` bumps no
    version: call ``model.eval()`` after one, which drops what was built (:meth:`SRModel.train`).

    In training, with gradients on and while tracing or exporting, ``build()`` runs every call, so gradients and
    graphs see the derivation. ELAN-light derived its BatchNorm fold and the LFE's padded bf16 weights anew every
    forward (~600 small ops and allocations); cached, its bf16 forward took 0.042 against 0.045 s at LR 64²,
    0.126 against 0.132 s at 128² and 0.468 against 0.471 s at 256² (alternating-order A/B, medians of 24, same
    bits; fp32 unchanged at 0.220 s at 128²; 2-core EPYC AVX-512 BF16, 2026-11-30).
    """
    if module.training or torch.is_grad_enabled() or is_exporting():
        return build()
    try:
        stamp = [_Stamp(t) for t in (*module.parameters(), *module.buffers())]
    except RuntimeError:  # inference tensors (a model built under inference_mode) keep no version: derive anew
        return build()
    cache = module.__dict__.setdefault("_inference_weights", {})
    hit = cache.get((key, dtype))
    if hit is None or hit[0] != stamp:
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable outside inference mode too
            hit = cache[(key, dtype)] = (stamp, build())
    return hit[1]


class _Stamp:
    """A tensor's storage, dtype and version when a derivation was built. It holds the storage, so no later tensor
    can be given its address: an equal stamp means the same storage, unchanged (``.to()`` on a module swaps a
    parameter's ``.data`` for new storage; ``load_state_dict`` and optimizer steps bump the version)."""

    __slots__ = ("held", "version")

    def __init__(self, t: torch.Tensor) -> None:
        self.held, self.version = t.detach(), compat.version(t)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Stamp) and self.version == other.version and self.held.dtype == other.held.dtype
                and self.held.device == other.held.device and self.held.data_ptr() == other.held.data_ptr())


#: Inference dtypes in which a convolution and the ReLU after it run as one oneDNN call
#: (``torch.ops.mkldnn._convolution_pointwise``, the op Inductor fuses into): the ReLU is applied to the
#: convolution's output tile before it is written, so no pass over the output is left for it. ELAN-light's LFE at
#: LR 256² in bf16: 4.31 against 4.72 ms; whole bf16 forward 0.430 against 0.436 s at LR 256², 0.117 against
#: 0.120 s at 128², the same at 64² (alternating-order medians of 16, same output bits; 2-core EPYC AVX-512 BF16,
#: 2026-11-30). fp32 ran 1-2 % slower fused, and fusing the residual add after the LFE's and GMSA's last conv
#: (``_convolution_pointwise.binary``) made the bf16 forward 1.8 % slower, though each conv alone ran faster.
FUSED_CONV_RELU = {torch.bfloat16}


def conv2d_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias))`` (stride 1, no padding), as one fused oneDNN call at inference in the
    dtypes :data:`FUSED_CONV_RELU` names; as a convolution and an in-place ReLU otherwise (training, export,
    compile, other devices). The same values either way (bf16: the same bits at LR 256²; fp32: within rounding)."""
    if (x.dtype in FUSED_CONV_RELU and weight.dtype == x.dtype and x.is_cpu and x.dim() == 4
            and not torch.is_grad_enabled() and not is_exporting() and compat.fused_conv_relu_runs(x.dtype)):
        return compat.fused_conv_relu(x, weight, bias)
    return F.relu(F.conv2d(x, weight, bias), inplace=True)


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
    """``nn.LayerNorm`` (same parameters and keys) that, at inference on a CPU, normalises a bf16/fp16 input in
    float32 and rounds the result back to the input's dtype.

    Under bf16 autocast the Swin-type models' residual stream is bf16, and ATen's bf16 layer norm (float32 inside)
    ran 2.1x slower than the float32 one with both casts: 815 against 381 µs on (1, 128, 128, 60), freed blocks
    reused. Whole bf16 forward, shipped x4, interleaved in alternating order: SwinIR-light 0.328 against 0.347 s at
    LR 128² (-5 %), 1.36 against 1.42 s at 256²; GRFormer 0.526 against 0.547 s at 128² (-4 %); ESRT (two norms)
    unchanged (2-core EPYC AVX-512 BF16, 2026-11-30). The arithmetic is the bf16 kernel's (float32 inside).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dtype in (torch.bfloat16, torch.float16) and x.is_cpu and not torch.is_grad_enabled():
            weight = None if self.weight is None else self.weight.float()
            bias = None if self.bias is None else self.bias.float()
            return F.layer_norm(x.float(), self.normalized_shape, weight, bias, self.eps).to(x.dtype)
        return super().forward(x)


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


def window_order(h: int, w: int, ws: int, shift: int = 0, device: torch.device | None = None) -> torch.Tensor:
    """Token order of ``roll(−shift) → window_partition`` as one gather index into the H·W tokens of a map.

    ``tokens.index_select(1, order)`` on (B, H·W, C) equals :func:`window_partition` of the map rolled by
    (−shift, −shift), flattened to (B, H·W, C): one copy instead of two. ``y.index_select(1, argsort(order))``
    undoes it. Cached per size in eager mode; computed inline (from the traced sizes) while tracing, compiling
    or exporting, so a graph does not freeze the size it was traced at.
    """
    if is_exporting():
        return _window_order(h, w, ws, shift, device)
    return _cached_window_order(int(h), int(w), ws, shift, device)


def window_unorder(h: int, w: int, ws: int, shift: int = 0, device: torch.device | None = None) -> torch.Tensor:
    """Inverse permutation of :func:`window_order`: window-partition order back to row-major, rolled back."""
    if is_exporting():
        return torch.argsort(_window_order(h, w, ws, shift, device))
    return _cached_window_unorder(int(h), int(w), ws, shift, device)


def zero_padded_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` (…, d) copied into the first d columns of a zero (…, ``width``) tensor; a contiguous copy of ``t`` if
    ``width`` <= d. bmm kernels ran some narrow right-hand sides slower than wider zero-padded ones (the callers'
    tables say which); slice the product's first d columns."""
    if width <= t.shape[-1]:
        return t.contiguous()
    padded = t.new_zeros(t.shape[:-1] + (width,))
    padded[..., :t.shape[-1]] = t
    return padded


def take_tokens(tokens: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor | None = None) -> torch.Tensor:
    """``tokens.index_select(1, index)`` for (B, L, C) tokens, computed as one gather of rows of a 2-D view.

    Same values; faster when ``tokens`` is a channel slice of a wider map (ELAN gathers each window group's
    channels out of one projection): the 2-D row gather copies each token's channels as one block, while the
    3-D ``index_select`` fell back to an element-wise path, 6x slower (bf16, 256² tokens of 40 of 120 channels:
    0.11 ms against 0.70 ms, 2-core AVX-512 BF16 EPYC). When ``index`` is a permutation, pass its ``inverse``:
    the gradient is then the inverse gather, not index_select's scatter-add (6 % of an ELAN training step).
    """
    if inverse is not None and tokens.requires_grad and torch.is_grad_enabled() and not is_exporting():
        return _Permutation.apply(tokens, index, inverse)
    return _gather_rows(tokens, index)


def _gather_rows(tokens: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    b, length, c = tokens.shape
    if is_exporting() or b != 1:  # a traced graph must not freeze the batch size it was traced at
        index = batched_rows(index, b, length)
    return tokens.reshape(b * length, c).index_select(0, index).view(b, -1, c)


def batched_rows(index: torch.Tensor, b: int, length: int) -> torch.Tensor:
    """``index`` into one image's ``length`` rows, repeated for each of ``b`` images as rows of their (B·length)
    stack."""
    return (index[None] + torch.arange(b, device=index.device)[:, None] * length).flatten()


class _Permutation(torch.autograd.Function):
    @staticmethod
    def forward(ctx, tokens: torch.Tensor, index: torch.Tensor, inverse: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(inverse)
        return _gather_rows(tokens, index)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (inverse,) = ctx.saved_tensors
        return _gather_rows(grad, inverse), None, None


def _window_order(h, w, ws: int, shift: int, device) -> torch.Tensor:
    idx = torch.arange(h * w, device=device).view(1, h, w, 1)
    if shift:
        idx = torch.roll(idx, shifts=(-shift, -shift), dims=(1, 2))
    return window_partition(idx, ws, ws).reshape(-1)


@lru_cache(maxsize=64)
def _cached_window_order(h: int, w: int, ws: int, shift: int, device) -> torch.Tensor:
    with torch.inference_mode(False):
        return _window_order(h, w, ws, shift, device)


@lru_cache(maxsize=64)
def _cached_window_unorder(h: int, w: int, ws: int, shift: int, device) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.argsort(_window_order(h, w, ws, shift, device))


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


# --------------------------------------------------------------------------------------------- shifted windows


def _axis_regions(n: int, window: int, shift: int) -> list[int]:
    """Official Swin label region (0, 1, 2) of each position along one axis: slices (0:−ws), (−ws:−shift),
    (−shift:), later ones overwriting earlier ones, empty ones allowed."""
    regions = [0] * n
    for r, s in enumerate((slice(0, -window), slice(-window, -shift), slice(-shift, None))):
        for p in range(n)[s]:
            regions[p] = r
    return regions


def _group_windows(regions: list[int], window: int) -> dict[tuple[int, ...], list[int]]:
    """Window indices along one axis grouped by their in-window label pattern (renumbered by first occurrence,
    so every uniform window has the pattern (0, …, 0))."""
    groups: dict[tuple[int, ...], list[int]] = {}
    for i in range(len(regions) // window):
        seg = regions[i * window:(i + 1) * window]
        first = {v: j for j, v in enumerate(dict.fromkeys(seg))}
        groups.setdefault(tuple(first[v] for v in seg), []).append(i)
    return groups


def _as_index(ids: list[int]) -> slice | torch.Tensor:
    if ids == list(range(ids[0], ids[-1] + 1)):
        return slice(ids[0], ids[-1] + 1)
    return torch.tensor(ids)


class WindowGeometry:
    """How one block cuts a padded H×W map into (optionally cyclically shifted) windows, and its masks.

    Built once per (size, window, shift, fill, device) by :func:`window_geometry` and shared by every block with
    that configuration, so masks are computed once per runtime size, not per block or per forward.

    The attention mask of a shifted map depends only on the label pattern inside a window, and there are at most
    a few such patterns (interior, last window-row, last window-column, corner). ``groups`` lists them as
    ``(window rows, window cols, (N, N) additive mask or None)``; :meth:`attend` runs one fused attention call per
    group with a broadcast (1, nH, N, N) bias+mask, instead of materialising a (B·nW, nH, N, N) logit tensor.
    ``full_mask`` is the official (nW, N, N) mask, used by the explicit reference path.
    """

    def __init__(self, h: int, w: int, window: tuple[int, int], shift: tuple[int, int] | None, fill: float,
                 device: torch.device | None = None) -> None:
        self.h, self.w = h, w
        self.wh, self.ww = window
        if h % self.wh or w % self.ww:
            raise ValueError(f"a {h}×{w} map does not split into {self.wh}×{self.ww} windows")
        self.shift = tuple(shift) if shift is not None and any(shift) else None
        self.fill = fill
        self.device = device
        self.n_rows, self.n_cols = h // self.wh, w // self.ww
        self.num_windows = self.n_rows * self.n_cols
        self.tokens = self.wh * self.ww
        self._full_mask: torch.Tensor | None = None
        self._runs: list[tuple[int, int, int | None]] | None = None
        self._patterns: torch.Tensor | None = None
        self.groups: list[tuple[slice | torch.Tensor, slice | torch.Tensor, torch.Tensor | None]] = []
        if self.shift is not None:
            sh, sw = self.shift
            row_groups = _group_windows(_axis_regions(h, self.wh, sh), self.wh)
            col_groups = _group_windows(_axis_regions(w, self.ww, sw), self.ww)
            for rp, rows in row_groups.items():
                for cp, cols in col_groups.items():
                    labels = (torch.tensor(rp)[:, None] * 3 + torch.tensor(cp)[None, :]).flatten()
                    diff = labels[:, None] - labels[None, :]
                    mask = diff.ne(0).float() * fill if diff.any() else None
                    if mask is not None and device is not None:
                        mask = mask.to(device)
                    self.groups.append((_as_index(rows), _as_index(cols), mask))
            if all(m is None for _, _, m in self.groups):  # e.g. a shift of whole windows: nothing to mask
                self.groups = []

    @property
    def masked(self) -> bool:
        return bool(self.groups)

    @property
    def full_mask(self) -> torch.Tensor | None:
        """The official (nW, N, N) mask (``fill`` between tokens from different regions), or None if unshifted."""
        if self.shift is None:
            return None
        if self._full_mask is None:
            with torch.inference_mode(False):
                mask = shifted_window_mask(self.h, self.w, (self.wh, self.ww), self.shift, self.fill)
                self._full_mask = mask if self.device is None else mask.to(self.device)
        return self._full_mask

    # -- token layout

    def partition(self, x: torch.Tensor) -> torch.Tensor:
        """(B, H, W, C) → roll by −shift (if shifted) → (B·nW, N, C)."""
        if self.shift is not None:
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        return window_partition(x, self.wh, self.ww)

    def reverse(self, windows: torch.Tensor) -> torch.Tensor:
        """(B·nW, N, C) → (B, H, W, C) → roll back by +shift (if shifted). Exact inverse of :meth:`partition`."""
        x = window_reverse(windows, self.wh, self.ww, self.h, self.w)
        if self.shift is not None:
            x = torch.roll(x, shifts=self.shift, dims=(1, 2))
        return x

    # -- attention

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
               fused: bool = True) -> torch.Tensor:
        """softmax(q·kᵀ + bias + mask)·v for every window; q is already scaled.

        q, k, v: (B·nW, nH, N, d) in :meth:`partition` order. bias: (nH, N, N), added for every window.
        ``fused`` uses ``scaled_dot_product_attention`` (grouped by mask pattern); otherwise the explicit
        matmul/softmax/matmul path of the official code, whose matmuls a FLOP counter sees.
        """
        if not fused or _explicit_is_faster(q):
            return self._explicit(q, k, v, bias)
        if _native_is_faster(q, k, v):
            return self._native(q, k, v, bias)
        if _chunked_is_faster(q):
            return self._chunked(q, k, v, bias)
        if bias is not None:
            bias = bias.to(q.dtype).contiguous()
        if not self.masked:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=None if bias is None else bias[None], scale=1.0)
        b = q.shape[0] // self.num_windows
        grid = (b, self.n_rows, self.n_cols) + tuple(q.shape[1:])
        qg, kg, vg = q.reshape(grid), k.reshape(grid), v.reshape(grid)
        out = torch.empty(grid, dtype=q.dtype, device=q.device)
        for rows, cols, mask in self.groups:
            if mask is None:
                add = bias
            else:
                mask = mask.to(q.dtype)
                add = mask if bias is None else bias + mask
            take = _take_windows(rows, cols)
            qs, ks, vs = take(qg), take(kg), take(vg)
            sub = qs.shape[:3]
            o = F.scaled_dot_product_attention(
                qs.flatten(0, 2), ks.flatten(0, 2), vs.flatten(0, 2),
                attn_mask=None if add is None else add.expand(1, q.shape[1], -1, -1), scale=1.0)
            _put_windows(out, rows, cols, o.view(sub + o.shape[1:]))
        return out.view(q.shape)

    def _chunked(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The explicit arithmetic (inference only), a cache-sized chunk of windows at a time: each chunk's logits
        get the bias (+ its windows' mask, added as one precomputed term per label pattern, as :meth:`_explicit`
        adds them), are soft-maxed and multiplied by V while in cache, in buffers reused across chunks."""
        d = v.shape[-1]
        q, k = q.contiguous(), k.contiguous()
        v = zero_padded_columns(v, PADDED_V_COLUMNS.get(q.dtype, {}).get(d, d))  # a contiguous copy either way
        windows, heads, n, _ = q.shape
        terms = self._additive_terms(bias, q.dtype)
        step = max(1, ATTENTION_CHUNK_ELEMENTS // (heads * n * n))
        out = torch.empty_like(v)
        scores = q.new_empty((min(step, windows), heads, n, n))
        for start in range(0, windows, step):
            stop = min(start + step, windows)
            chunk = scores[:stop - start]
            torch.matmul(q[start:stop], k[start:stop].transpose(-2, -1), out=chunk)
            for a, b, pattern in self._pattern_runs(start, stop):
                if terms[pattern] is not None:
                    chunk[a - start:b - start] += terms[pattern]
            torch.matmul(torch.softmax(chunk, dim=-1), v[start:stop], out=out[start:stop])
        return out[..., :d]

    def _native(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The explicit arithmetic in litesr's compiled kernel (:func:`litesr.native.biased_window_attention`): each
        window's logits get its label pattern's term, no map is written; the result is a (B·nW, nH, N, d) view of a
        (B·nW, N, nH, d) tensor, so the caller's transpose back to tokens is free."""
        windows, heads, n, d = q.shape
        dtype = _common_dtype(q, k, v)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        terms = self._additive_terms(bias, torch.float32)  # the kernel adds fp32 terms, in bf16 too
        zero = q.new_zeros(heads, n, n, dtype=torch.float32)
        keys = [None, *range(len(self.groups))]  # pattern index 0: no label pattern (unshifted or interior)
        terms_t = torch.stack([(zero if terms[key] is None else terms[key]).expand(heads, n, n).transpose(-2, -1)
                               for key in keys]).contiguous()
        out = q.new_empty(windows, n, heads, d).transpose(1, 2)
        return native.biased_window_attention(q, k, v, terms_t, self._window_patterns(windows), out)

    def _window_patterns(self, windows: int) -> torch.Tensor:
        """int32 term index of every window (batch-major): 0 for none, 1 + g for label pattern g."""
        if self._patterns is None:
            index = torch.zeros(self.num_windows, dtype=torch.int32)
            for a, b, pattern in self._pattern_runs(0, self.num_windows):
                index[a:b] = 0 if pattern is None else pattern + 1
            self._patterns = index
        return self._patterns.repeat(windows // self.num_windows)

    def _additive_terms(self, bias: torch.Tensor | None, dtype: torch.dtype) -> dict:
        """label pattern (index into ``groups``; None for an unshifted map) → the (nH, N, N) term its windows'
        logits get: bias + mask, bias, mask, or None."""
        bias = None if bias is None else bias.to(dtype)
        terms = {None: bias}
        for g, (_, _, mask) in enumerate(self.groups):
            mask = None if mask is None else mask.to(dtype)
            terms[g] = bias if mask is None else (mask if bias is None else bias + mask)
        return terms

    def _pattern_runs(self, start: int, stop: int):
        """(first, end, pattern) runs of consecutive windows in [start, stop) (batch-major window index) with one
        label pattern."""
        if self._runs is None:
            pattern = [[None] * self.n_cols for _ in range(self.n_rows)]
            for g, (rows, cols, _) in enumerate(self.groups):
                for r in range(self.n_rows)[rows] if isinstance(rows, slice) else rows.tolist():
                    for c in range(self.n_cols)[cols] if isinstance(cols, slice) else cols.tolist():
                        pattern[r][c] = g
            flat = [p for row in pattern for p in row]
            cuts = [0] + [i for i in range(1, len(flat)) if flat[i] != flat[i - 1]] + [len(flat)]
            self._runs = [(a, b, flat[a]) for a, b in zip(cuts, cuts[1:])]
        image = start - start % self.num_windows
        for base in range(image, stop, self.num_windows):
            for a, b, pattern in self._runs:
                first, end = max(base + a, start), min(base + b, stop)
                if first < end:
                    yield first, end, pattern

    def _explicit(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """The official softmax(q·kᵀ + bias + mask)·v, bias and mask added in one pass over the logits.

        Bit-identical to adding them one after the other: where the mask is 0 the sums are the same, and where it
        is ``fill`` the logit is ≈ fill either way, an exact 0 after the softmax. (Out of place: adding in place
        into the logits made bf16 training steps 4-8 % slower, autograd then copies the whole map back.)
        """
        attn = q @ k.transpose(-2, -1)
        if self.shift is not None:
            add = self.full_mask.to(attn.dtype)[:, None]  # (nW, 1, N, N)
            add = add if bias is None else bias + add  # (nW, nH, N, N): one small tensor
            attn = (attn.view(-1, self.num_windows, *attn.shape[1:]) + add).view(attn.shape)
        elif bias is not None:
            attn = attn + bias
        return attn.softmax(dim=-1) @ v


#: Inference dtypes and tokens per window (N) whose window attention runs :meth:`WindowGeometry._chunked` instead of
#: SDPA on a CPU (whose flash kernel ran SwinIR-light's 10-wide heads at ~24 GFLOP/s, half its fp32 forward).
#: SwinIR-light (8×8 windows) in fp32, whole forward, interleaved A/B in alternating order on picture input (2-core
#: EPYC AVX-512 BF16, shipped x4, 2026-11-30): with freed blocks reused (as the CLI runs) 0.451 against 0.485 s at
#: LR 128² (median of 12), 2.01 against 2.15 s at 256² (of 6), -7 % both; with the default allocator (fixed order)
#: 0.450 against 0.491 s at 128², 2.29 against 2.28 s at 256². Not taken: bf16 (SwinIR-light 0.40 against 0.36 s at
#: 128²) and GRFormer's 256-token windows in fp32 (0.67 against 0.58 s).
CHUNKED_ATTENTION = {torch.float32: (64,)}
#: dtype → {head width d: columns}: in :meth:`WindowGeometry._chunked`, V copied into the first d columns of a zero
#: tensor this wide, and the zero columns cut off the output again as a view. The A·V bmm of SwinIR-light's chunks
#: ((252, 64, 64) @ (252, 64, d), fp32) took 0.49 ms with d = 10, 0.27 ms with 12 and 0.20 ms with 16; whole fp32
#: forward at LR 128² 0.435 against 0.461 s (alternating-order A/B, medians of 10; outputs within 1e-6, the GEMM's
#: summation order; 2-core EPYC AVX-512 BF16, shipped x4, 2026-11-30).
PADDED_V_COLUMNS = {torch.float32: {10: 16}}
#: elements of one chunk's logits (fp32: 4 MiB)
ATTENTION_CHUNK_ELEMENTS = 1 << 20


#: Inference dtypes and tokens per window (N) whose window attention runs in litesr's compiled kernel
#: (:func:`litesr.native.biased_window_attention`: 16 query rows in the lanes of a vector, each window's bias/mask
#: term added as the logits are made, an exp from a polynomial, no map written) where it runs, before
#: :data:`CHUNKED_ATTENTION` or SDPA. Whole fp32 forward, shipped x4, picture input, alternating order, medians
#: (2-core EPYC AVX-512 BF16, 2026-12-01): SwinIR-light (8×8 windows) 0.278 against 0.435 s at LR 128², 0.061
#: against 0.102 s at 64²; GRFormer-light (8×32) 0.422 against 0.556 s at 128², 0.115 against 0.137 s at 64²;
#: outputs within 2e-6 of the eager path's. Under bf16 autocast (the attention in fp32 from bf16 Q, K, V): SwinIR-light
#: 0.163 against 0.398 s at 128², GRFormer 0.390 against 0.608 s; PSNR against fp32 55.66 / 53.63 dB (eager bf16
#: 55.67 / 53.60).
NATIVE_ATTENTION = {torch.float32: (64, 256), torch.bfloat16: (64, 256)}


def native_inference(device: torch.device) -> bool:
    """Whether litesr's compiled kernels may run now: inference on the CPU (no gradients, no tracing, compiling or
    exporting, which cannot see into them) where they were built and checked."""
    return (device.type == "cpu" and not torch.is_grad_enabled() and not is_exporting()
            and native.window_attention_runs())


def _native_is_faster(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> bool:
    return (q.shape[-2] in NATIVE_ATTENTION.get(_common_dtype(q, k, v), ()) and native_inference(q.device)
            and all(native.supports(t) for t in (q, k, v)))


def _common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype mixed inputs are computed in (GRFormer under bf16 autocast has fp32 unit-norm Q, K and bf16 V):
    the wider one, which holds the others exactly."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


def _chunked_is_faster(q: torch.Tensor) -> bool:
    return (q.device.type == "cpu" and q.shape[-2] in CHUNKED_ATTENTION.get(q.dtype, ()) and
            not torch.is_grad_enabled() and not is_exporting())


def _explicit_is_faster(q: torch.Tensor) -> bool:
    """Whether the explicit path beats SDPA: when training in bf16 (autocast or bf16 weights) on a CPU.

    There SDPA falls back to its unfused math path, which also guards against fully masked rows
    (``all``/``isneginf``/``where`` over every logit): explicit made a training step 1.4x faster for GRFormer
    (1.8 s against 2.6 s, 8×32 windows) and 1.6x for SwinIR-light (0.72 s against 1.2 s, 8×8 windows) (batch 8,
    LR 32², one thread, 2-core AVX-512 BF16 EPYC). fp32 training keeps SDPA (GRFormer 2.2 s against 3.2 s).
    Inference does not take it (fp32 8×8 windows take the chunked explicit path, :data:`CHUNKED_ATTENTION`; the
    rest keeps SDPA): explicit bf16 was 1.2x faster for SwinIR-light with freed blocks reused
    (:func:`litesr.runtime.reuse_freed_memory`, as the CLI runs) but 2.3x slower without (0.87 s against 0.37 s
    at LR 128²: each block's maps are page-faulted in anew), and GRFormer's 256-token windows were slower either way.
    """
    if not (q.device.type == "cpu" and q.requires_grad and torch.is_grad_enabled()):
        return False
    autocast_bf16 = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
    return q.dtype == torch.bfloat16 or autocast_bf16


def _take_windows(rows, cols):
    def take(t: torch.Tensor) -> torch.Tensor:
        if isinstance(rows, slice) and isinstance(cols, slice):
            return t[:, rows, cols]
        r = rows if isinstance(rows, torch.Tensor) else torch.arange(t.shape[1])[rows]
        c = cols if isinstance(cols, torch.Tensor) else torch.arange(t.shape[2])[cols]
        return t[:, r.to(t.device)[:, None], c.to(t.device)[None, :]]
    return take


def _put_windows(out: torch.Tensor, rows, cols, value: torch.Tensor) -> None:
    if isinstance(rows, slice) and isinstance(cols, slice):
        out[:, rows, cols] = value
        return
    r = rows if isinstance(rows, torch.Tensor) else torch.arange(out.shape[1])[rows]
    c = cols if isinstance(cols, torch.Tensor) else torch.arange(out.shape[2])[cols]
    out[:, r.to(out.device)[:, None], c.to(out.device)[None, :]] = value


class TracedWindowGeometry:
    """:class:`WindowGeometry` for a graph being traced, compiled or exported: H and W may be traced values, so
    nothing branches on them and the shifted-window mask is built by tensor ops inside the graph (the explicit
    matmul/softmax attention with the official (nW, N, N) mask). Same arithmetic as the official code."""

    def __init__(self, h, w, window: tuple[int, int], shift: tuple[int, int] | None, fill: float,
                 device: torch.device | None = None) -> None:
        self.h, self.w = h, w
        self.wh, self.ww = window
        self.shift = tuple(shift) if shift is not None and any(shift) else None
        self.fill, self.device = fill, device

    partition = WindowGeometry.partition
    reverse = WindowGeometry.reverse

    def mask(self) -> torch.Tensor:
        """The official mask from in-graph labels: region 0 before the last window, 1 in it before the last
        ``shift`` pixels, 2 in those (the official label slices for any size ≥ the window)."""
        sh, sw = self.shift
        rows = torch.arange(self.h, device=self.device)
        cols = torch.arange(self.w, device=self.device)
        r = (rows >= self.h - self.wh).long() + (rows >= self.h - sh).long()
        c = (cols >= self.w - self.ww).long() + (cols >= self.w - sw).long()
        labels = (r[:, None] * 3 + c[None, :]).to(torch.float32).reshape(1, self.h, self.w, 1)
        windows = window_partition(labels, self.wh, self.ww).squeeze(-1)
        diff = windows[:, None, :] - windows[:, :, None]
        return diff.ne(0).to(torch.float32) * self.fill

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
               fused: bool = True) -> torch.Tensor:
        attn = q @ k.transpose(-2, -1)
        if bias is not None:
            attn = attn + bias.unsqueeze(0)
        if self.shift is not None:
            mask = self.mask().to(attn.dtype)
            n_heads, n = attn.shape[1], attn.shape[-1]
            attn = attn.view(-1, mask.shape[0], n_heads, n, n) + mask[None, :, None]
            attn = attn.view(-1, n_heads, n, n)
        return attn.softmax(dim=-1) @ v


def window_geometry(h: int, w: int, window: tuple[int, int], shift: tuple[int, int] | None, fill: float,
                    device: torch.device | None = None) -> WindowGeometry | TracedWindowGeometry:
    """The :class:`WindowGeometry` of a padded runtime size and block kind, cached and shared by all blocks; a
    :class:`TracedWindowGeometry` while exporting (sizes are graph values then)."""
    if is_exporting():
        return TracedWindowGeometry(h, w, tuple(window), None if shift is None else tuple(shift), fill, device)
    return _cached_window_geometry(h, w, tuple(window), None if shift is None else tuple(shift), fill, device)


@lru_cache(maxsize=64)
def _cached_window_geometry(h: int, w: int, window: tuple[int, int], shift: tuple[int, int] | None, fill: float,
                            device: torch.device | None = None) -> WindowGeometry:
    with torch.inference_mode(False):  # cached tensors must stay usable by later autograd (training) calls
        return WindowGeometry(h, w, tuple(window), None if shift is None else tuple(shift), fill, device)


def set_fused_attention(model: nn.Module, enabled: bool) -> nn.Module:
    """Switch every window-attention module of ``model`` between the fused path (default) and the explicit
    matmul/softmax path of the official code (for FLOP counting and reference timings)."""
    for module in model.modules():
        if hasattr(module, "fused_attention"):
            module.fused_attention = bool(enabled)
    return model


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
        h = self.act(self.fc1(x))  # (B, H, W, hidden)
        h = h + self.dwconv.depthwise_conv(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
        return self.fc2(h)


class _DWConv(nn.Module):
    """The official ``dwconv`` wrapper: its one child is ``depthwise_conv``."""

    def __init__(self, depthwise: nn.Sequential) -> None:
        super().__init__()
        self.depthwise_conv = depthwise
