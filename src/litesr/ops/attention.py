"""Window attention, and the path each call takes: Swin-type (SwinIR, GRFormer: ``softmax(q·kᵀ + bias + mask)·v``
per window and head, through :class:`WindowGeometry`) and ELAN's (``softmax(Q·Qᵀ)·V`` per window group, shared by
the GMSAs of a block, through :func:`elan_window_attention`).
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .. import compat
from . import native
from .policy import is_exporting, native_inference
from .windows import batched_rows, shifted_window_mask, take_tokens, window_order, window_partition, window_reverse
from .windows import window_unorder


def zero_padded_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` (…, d) copied into the first d columns of a zero (…, ``width``) tensor; a contiguous copy of ``t`` if
    ``width`` <= d. bmm kernels ran some narrow right-hand sides slower than wider zero-padded ones (the callers'
    tables say which); slice the product's first d columns."""
    if width <= t.shape[-1]:
        return t.contiguous()
    padded = t.new_zeros(t.shape[:-1] + (width,))
    padded[..., :t.shape[-1]] = t
    return padded


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
        """The explicit arithmetic in litesr's compiled kernel (:func:`native.biased_window_attention`): each
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
#: (:func:`native.biased_window_attention`: 16 query rows in the lanes of a vector, each window's bias/mask
#: term added as the logits are made, an exp from a polynomial, no map written) where it runs, before
#: :data:`CHUNKED_ATTENTION` or SDPA. Whole fp32 forward, shipped x4, picture input, alternating order, medians
#: (2-core EPYC AVX-512 BF16, 2026-12-01): SwinIR-light (8×8 windows) 0.278 against 0.435 s at LR 128², 0.061
#: against 0.102 s at 64²; GRFormer-light (8×32) 0.422 against 0.556 s at 128², 0.115 against 0.137 s at 64²;
#: outputs within 2e-6 of the eager path's. Under bf16 autocast (the attention in fp32 from bf16 Q, K, V): SwinIR-light
#: 0.163 against 0.398 s at 128², GRFormer 0.390 against 0.608 s; PSNR against fp32 55.66 / 53.63 dB (eager bf16
#: 55.67 / 53.60).
NATIVE_ATTENTION = {torch.float32: (64, 256), torch.bfloat16: (64, 256)}


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


# --------------------------------------------------------------------------------------------- ELAN


#: How a window group's attention runs, by dtype and window size: "explicit" computes the official
#: softmax(Q Qᵀ) map and the GMSA that shares it reuses it; "chunked" is the same arithmetic (bit-identical) a few
#: windows at a time, so each chunk's scores are soft-maxed and multiplied by V while in cache, and the map is
#: still stored for the sharing GMSA (inference only: it writes through ``out=``); "sdpa" runs one fused SDPA call
#: (scale=1) and the sharing GMSA recomputes it from the stored Q, so the 16×16-window map never exists.
#: Measured on the 16×16 windows (2-core EPYC AVX-512 BF16, shipped ELAN-light x4, whole forward, picture input):
#: bf16 chunked 0.33/0.82 s against explicit 0.34/0.94 s at LR 128²/256², and sdpa slower; fp32 (2026-11-30)
#: chunked 0.19/0.90 s against sdpa 0.20/0.92 s and explicit 0.20/0.93 s with freed blocks reused (as the CLI
#: runs), 0.22/1.31 s against sdpa 0.21-0.24/1.05-1.08 s with the default allocator. fp32 takes "chunked" although
#: sdpa was faster there at 256²: the CPU SDPA kernel is the less exact one. With the shipped x4 weights at LR 64²,
#: its output differed from a float64 forward by 3.8e-4 of the output's range, against 3.6e-5 for the official
#: arithmetic, and an ONNX export (explicit) then missed its 1e-4 check against the eager forward. (That input
#: was an outlier, not SDPA's rule: over five inputs its median was 2.9e-5, the official arithmetic's 3.6e-5, and
#: each path reached 1.0-3.8e-4 on one of them; 2026-12-01.) Chunking the 8×8 windows too, or 2^18-2^19-element
#: chunks, did no better. Other windows: explicit. (Where litesr's compiled kernel runs, FUSED_ATTENTION decides.)
ATTENTION_POLICY = {torch.float32: {16: "chunked"}, torch.bfloat16: {16: "chunked"}}
#: "chunked": elements of one chunk's map (16 windows of 16×16: 2 MiB in bf16)
CHUNK_ELEMENTS = 1 << 20


#: Inference dtypes and window sizes whose attention runs in litesr's compiled kernel (:mod:`litesr.ops.native`)
#: where it runs; the sharing GMSA then gets Q instead of the map and recomputes the map (no map is written out). Whole
#: forward, shipped x4, picture input, alternating order (2-core EPYC AVX-512 BF16, 2026-12-01): bf16 0.352 against
#: 0.439 s at LR 256², 0.085 against 0.113 s at 128²; fp32 (the fp32 kernel with K = Q and a zero term) 0.699
#: against 0.901 s at 256², 0.145 against 0.200 s at 128², outputs within 1.5e-6 of the eager path's.
FUSED_ATTENTION = {torch.bfloat16: (4, 8, 16), torch.float32: (4, 8, 16)}


#: Inference dtypes in which a GMSA whose groups all run "fused" has the kernel write each window's rows straight
#: into their place in the block's (B·H·W, C) output (no scatter back per group, no concatenation). bf16 forward,
#: shipped x4, alternating order (2-core EPYC AVX-512 BF16, 2026-12-01, two runs): 0.077-0.078 against
#: 0.082-0.083 s at LR 128², 0.334-0.338 against 0.345-0.352 s at 256², the same bits. (Reading the windows' rows
#: in place too, instead of gathering them, was slower at 256²: docs/performance.md §4.4.)
IN_PLACE_OUTPUT = {torch.bfloat16}


@lru_cache(maxsize=64)
def _window_rows(b: int, h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """int32 row of a (B·H·W, C) map that each windowed token (in :func:`window_order`, batch by batch) came from."""
    return batched_rows(window_order(h, w, ws, shift, torch.device("cpu")), b, h * w).to(torch.int32)


def _policy(ws: int, width: int, dtype: torch.dtype, device: torch.device) -> str:
    """How the attention of ``ws``×``ws`` windows with ``width``-wide heads runs: "fused", "chunked", "sdpa" or
    "explicit" (computing and sharing GMSA always agree: the map they pass depends on it)."""
    if ws in FUSED_ATTENTION.get(dtype, ()) and native.fits(ws * ws, width) and native_inference(device):
        return "fused"
    how = ATTENTION_POLICY.get(dtype, {}).get(ws, "explicit")
    if how == "chunked" and (torch.is_grad_enabled() or is_exporting()):
        return "explicit"  # out= writes have no autograd, and a loop over windows would freeze a traced size
    return how


#: Inference dtypes and score-row lengths (tokens per window) whose softmax runs in oneDNN (``to_mkldnn``) instead
#: of ATen: the 4×4 and 16×16 windows in bf16. ATen's bf16 softmax computes its exp in fp32 and managed ~1.6 G
#: elements/s here; oneDNN's ran 2.5x faster on 256-wide rows (both layout conversions included), 1.6x on 16-wide
#: ones, no faster on 64-wide ones, and in fp32 no faster at all. Whole bf16 forward: 4-7 % faster at LR 128²/256²
#: (2-core EPYC AVX-512 BF16, shipped x4, interleaved A/B).
ONEDNN_SOFTMAX = {torch.bfloat16: (16, 256)}

#: Inference dtypes in which the computing GMSA copies each group's Q and V out of their shared (windows, N, 2d)
#: gather into contiguous tensors first. bf16 bmm on the strided halves was the slower kernel: Q·Qᵀ, softmax and A·V
#: of the 4×4 windows at LR 256² took 1.9 ms contiguous against 2.8 ms strided, those of the 8×8 ones 2.7 against
#: 3.3 ms, one 16-window chunk's Q·Qᵀ 79 against 111 µs. Whole bf16 forward, interleaved A/B over 7 rounds: -5 % at
#: LR 128², -1 % at 256² (same bits; 2-core EPYC AVX-512 BF16, shipped x4). fp32 was 2 % slower with the copies.
CONTIGUOUS_QV = {torch.bfloat16}

#: Inference dtypes in which the chunked (16×16) windows' V is zero-padded to this many columns for the A·V bmm's
#: (both GMSAs); the zero columns are cut off again as a view. bf16 bmm ran the 20-column V slower than a 32-column
#: one (the sharing GMSA's A·V at LR 256²: 2.6 against 3.4 ms). Whole bf16 forward, interleaved A/B in alternating
#: order, medians of 12: 0.514 against 0.527 s at LR 256² (-2.5 %), 0.113 against 0.116 s at 128² (-3 %); same
#: output bits (2-core EPYC AVX-512 BF16, shipped x4, 2026-11-30). fp32 was 4-5 % slower padded (0.207/0.913
#: against 0.200/0.868 s at 128²/256²).
PADDED_V = {torch.bfloat16: 32}


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim of a window group's scores, in oneDNN where :data:`ONEDNN_SOFTMAX` says so."""
    if (scores.shape[-1] in ONEDNN_SOFTMAX.get(scores.dtype, ()) and scores.is_cpu and not torch.is_grad_enabled()
            and not is_exporting() and not torch.compiler.is_compiling() and compat.onednn_softmax_runs(scores.dtype)):
        return compat.onednn_softmax(scores)
    return torch.softmax(scores, -1)


def _padded_v(v: torch.Tensor) -> torch.Tensor:
    """``v`` (windows, N, d) copied into the first d columns of a zero (windows, N, PADDED_V[dtype]) tensor at
    inference in the dtypes :data:`PADDED_V` names; otherwise ``v`` itself."""
    width = PADDED_V.get(v.dtype, 0)
    if width <= v.shape[-1] or torch.is_grad_enabled():
        return v
    return zero_padded_columns(v, width)


def _chunk_windows(n: int) -> int:
    """Windows of ``n`` tokens per chunk: a chunk's ``n × n`` maps hold about :data:`CHUNK_ELEMENTS` elements."""
    return max(1, CHUNK_ELEMENTS // (n * n))


def _chunked_attention(q: torch.Tensor, v: torch.Tensor,
                       maps_into: torch.Tensor | None = None) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(softmax(Q Qᵀ) a chunk of windows each, softmax(Q Qᵀ)·V) for (windows, N, d) Q and V, a cache-sized chunk
    of windows at a time (no autograd: it writes through ``out=``).

    The maps stay one tensor per chunk: one map of every window (at LR 256², 67 MB in fp32) exceeds the largest
    block glibc's default allocator recycles (32 MiB), so it was page-faulted in anew on every call; chunks are
    recycled (fp32 forward at LR 256² without block reuse: 0.93 s against 1.18 s, interleaved A/B). Given
    ``maps_into`` (windows, N, N), each chunk's map is written there instead (training keeps the whole map).
    """
    w, n, _ = q.shape
    step = _chunk_windows(n)
    out = v.new_empty(v.shape)
    scores = q.new_empty(min(step, w), n, n)
    maps = []
    for i in range(0, w, step):
        qc = q[i:i + step]
        sc = scores[:qc.shape[0]]
        torch.bmm(qc, qc.transpose(-2, -1), out=sc)
        attn = _softmax(sc)
        if maps_into is not None:
            attn = maps_into[i:i + step].copy_(attn)
        maps.append(attn)
        torch.bmm(attn, v[i:i + step], out=out[i:i + step])
    return maps, out


def _chunked_apply(maps: list[torch.Tensor], v: torch.Tensor) -> torch.Tensor:
    """softmax(Q Qᵀ)·V from the per-chunk maps of :func:`_chunked_attention` (the sharing GMSA)."""
    out = v.new_empty(v.shape)
    i = 0
    for chunk in maps:
        torch.bmm(chunk, v[i:i + chunk.shape[0]], out=out[i:i + chunk.shape[0]])
        i += chunk.shape[0]
    return out


#: Devices on which training runs the window attention through :class:`_WindowAttention` (a cache-sized chunk of
#: windows at a time, forward and backward) instead of autograd over whole-map ops.
CHUNKED_TRAINING_DEVICES = {"cpu"}


def _trains_chunked(q: torch.Tensor) -> bool:
    return torch.is_grad_enabled() and q.device.type in CHUNKED_TRAINING_DEVICES and not is_exporting()


class _WindowAttention(torch.autograd.Function):
    """``(A, A·V)`` with ``A = softmax(Q Qᵀ)`` for (windows, N, d) Q and V, forward and backward a cache-sized
    chunk of windows at a time; ``A`` is returned whole for the GMSA that shares it, and the gradient that GMSA sends
    back into ``A`` is added chunk by chunk inside the backward. The same arithmetic as autograd over
    ``softmax(q @ qᵀ) @ v`` (the ops per window are the same), without its whole-map passes: autograd wrote the scores,
    the map's gradient from each GMSA, their sum and the softmax's gradient as whole maps (at batch 4 × LR 64², 8 MB
    each in bf16), every one out of cache. ELAN-light training step (forward, L1, backward, Adam), x2, one thread,
    2-core EPYC AVX-512 BF16, 2026-11-30, alternating-order medians of 4-6: bf16 autocast 0.652 against 0.709 s at
    batch 4 × LR 64² (-8 %), 0.365 against 0.377 s at batch 8 × LR 32² (-3 %); fp32 1.568 against 1.622 s and
    0.786 against 0.787 s. On CUDA the chunk loop would only add kernel launches: there autograd's ops run.
    """

    @staticmethod
    def forward(ctx, q: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        q, v = q.contiguous(), v.contiguous()  # bf16 bmm ran strided Q and V slower (see CONTIGUOUS_QV)
        w, n, _ = q.shape
        attn = q.new_empty(w, n, n)
        _, y = _chunked_attention(q, v, maps_into=attn)  # gradients are off in here
        ctx.save_for_backward(q, v, attn)
        ctx.step = _chunk_windows(n)
        return attn, y

    @staticmethod
    def backward(ctx, d_attn: torch.Tensor | None, dy: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        q, v, attn = ctx.saved_tensors
        dq, dv = torch.empty_like(q), torch.empty_like(v) if dy is not None else torch.zeros_like(v)
        for i in range(0, q.shape[0], ctx.step):
            a, qc, part = attn[i:i + ctx.step], q[i:i + ctx.step], slice(i, i + ctx.step)
            da = torch.zeros_like(a) if dy is None else torch.bmm(dy[part], v[part].transpose(-2, -1))
            if d_attn is not None:
                da += d_attn[part]
            ds = compat.softmax_backward(da, a)
            torch.bmm(ds, qc, out=dq[part])  # Q Qᵀ: Q's gradient from both sides, dS·Q + dSᵀ·Q
            dq[part].baddbmm_(ds.transpose(-2, -1), qc)
            if dy is not None:
                torch.bmm(a.transpose(-2, -1), dy[part], out=dv[part])
        return dq, dv


def elan_window_attention(t: torch.Tensor, shape: torch.Size, window_sizes: list[int], shifted: bool, calc_attn: bool,
                          attns: list[torch.Tensor] | None) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """A GMSA's attention over the (B, H·W, C') tokens ``t`` of its projection, for the (B, C, H, W) ``shape`` of its
    input: one channel group per window size, each rolled by half its window in ``shifted`` blocks; with
    ``calc_attn`` each group's tokens are Q|V and A = softmax(Q Qᵀ), otherwise V, and the A of ``attns`` is reused.
    Returns the result (B·H·W rows of C channels, in token order) and what the sharing GMSA reuses (each group's
    map, or its Q where the map is recomputed). Each group's path: :func:`_policy`.
    """
    b, c, h, w = shape
    groups = t.chunk(len(window_sizes), dim=-1)
    width = groups[0].shape[-1] // (2 if calc_attn else 1)
    hows = [_policy(ws, width, t.dtype, t.device) for ws in window_sizes]
    # the bf16 kernel writes each group's rows straight into their place in one (B·H·W, C) output
    out = t.new_empty(b * h * w, c) if t.dtype in IN_PLACE_OUTPUT and set(hows) == {"fused"} else None
    ys, new_attns = [], []
    for k, (group, ws, how) in enumerate(zip(groups, window_sizes, hows)):
        shift = ws // 2 if shifted else 0
        order, unorder = window_order(h, w, ws, shift, t.device), window_unorder(h, w, ws, shift, t.device)
        tokens = take_tokens(group, order, unorder).view(-1, ws * ws, group.shape[-1])
        if out is not None:
            q, v = tokens.chunk(2, dim=-1) if calc_attn else (attns[k], tokens)
            native.window_attention(q, v, out=out[:, k * width:(k + 1) * width],
                                    out_rows=_window_rows(b, h, w, ws, shift))
            new_attns.append(q)  # the sharing GMSA gets Q, not the map
            continue
        if calc_attn:
            q, v = tokens.chunk(2, dim=-1)
            if q.dtype in CONTIGUOUS_QV and not torch.is_grad_enabled() and how != "fused":
                q = q.contiguous()
                v = v if how == "chunked" and v.dtype in PADDED_V else v.contiguous()  # padded: copied there
            if how == "fused":  # the sharing GMSA gets Q, not the map
                attn, y = q, native.window_attention(q, v)
            elif how == "sdpa":  # the sharing GMSA gets Q, not the map
                attn, y = q, F.scaled_dot_product_attention(q[:, None], q[:, None], v[:, None], scale=1.0)[:, 0]
            elif how == "chunked":
                attn, y = _chunked_attention(q, _padded_v(v))
                y = y[..., :v.shape[-1]]
            elif _trains_chunked(q):
                attn, y = _WindowAttention.apply(q, v)
            else:
                attn = _softmax(q @ q.transpose(-2, -1))
                y = attn @ v
        else:
            attn, v = attns[k], tokens
            if how == "fused":
                y = native.window_attention(attn, v)
            elif how == "sdpa":
                y = F.scaled_dot_product_attention(attn[:, None], attn[:, None], v[:, None], scale=1.0)[:, 0]
            elif how == "chunked":
                y = _chunked_apply(attn, _padded_v(v))[..., :v.shape[-1]]
            else:
                y = attn @ v
        y = y.reshape(b, h * w, -1)
        ys.append(take_tokens(y, unorder, order))
        new_attns.append(attn)
    y = out if out is not None else torch.cat(ys, dim=-1)
    return y, new_attns
