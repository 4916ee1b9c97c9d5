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
from . import native, policy
from .policy import is_exporting
from .windows import batched_rows, shifted_window_mask, take_tokens, window_order, window_partition, window_reverse
from .windows import rolled_window_order, window_unorder


def zero_padded_columns(t: torch.Tensor, width: int) -> torch.Tensor:
    """``t`` (…, d) copied into the first d columns of a zero (…, ``width``) tensor; a contiguous copy of ``t`` if
    ``width`` <= d. bmm kernels ran some narrow right-hand sides slower than wider zero-padded ones (the policy
    says which: :data:`~litesr.ops.policy.POLICY`); slice the product's first d columns."""
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
        self._order: tuple[torch.Tensor, torch.Tensor] | None = None
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
            if self._gathers(x):  # the roll and the partition as one gather of token rows
                b, h, w, c = x.shape
                order, unorder = self._orders()
                return take_tokens(x.reshape(b, h * w, c), order, unorder).view(-1, self.tokens, c)
            x = torch.roll(x, shifts=(-self.shift[0], -self.shift[1]), dims=(1, 2))
        return window_partition(x, self.wh, self.ww)

    def reverse(self, windows: torch.Tensor) -> torch.Tensor:
        """(B·nW, N, C) → (B, H, W, C) → roll back by +shift (if shifted). Exact inverse of :meth:`partition`."""
        if self.shift is not None and self._gathers(windows):
            c = windows.shape[-1]
            order, unorder = self._orders()
            rows = windows.reshape(-1, self.h * self.w, c)
            return take_tokens(rows, unorder, order).view(-1, self.h, self.w, c)
        x = window_reverse(windows, self.wh, self.ww, self.h, self.w)
        if self.shift is not None:
            x = torch.roll(x, shifts=self.shift, dims=(1, 2))
        return x

    def _gathers(self, x: torch.Tensor) -> bool:
        return policy.choose("swin shifted windows", x.device, x.dtype) == "gather"

    def _orders(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The token order of roll(−shift) → partition as a gather index into the H·W tokens, and its inverse."""
        if self._order is None:
            with torch.inference_mode(False):
                order = rolled_window_order(self.h, self.w, (self.wh, self.ww), self.shift, self.device)
                self._order = (order, torch.argsort(order))
        return self._order

    # -- attention

    def attend(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
               fused: bool = True, cosine: torch.Tensor | None = None) -> torch.Tensor:
        """softmax(q·kᵀ + bias + mask)·v for every window; q is already scaled, unless ``cosine`` is given.

        q, k, v: (B·nW, nH, N, d) in :meth:`partition` order. bias: (nH, N, N), added for every window.
        ``cosine`` (nH, 1, 1): cosine attention, q and k come unnormalised and the attention is of
        :func:`unit_rows` of each, q's times ``cosine`` (the compiled kernel makes them unit rows as it reads them).
        ``fused`` uses ``scaled_dot_product_attention`` (grouped by mask pattern); otherwise the explicit
        matmul/softmax/matmul path of the official code, whose matmuls a FLOP counter sees.
        """
        how = "explicit" if not fused else _swin_path(q, k, v)
        if how == "native":
            return self._native(q, k, v, bias, cosine)
        if cosine is not None:
            q, k = unit_rows(q, cosine), unit_rows(k)
        if how == "explicit":
            return self._explicit(q, k, v, bias)
        if how == "chunked":
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
        width = policy.choose("swin padded v", q.device, q.dtype, d)
        v = zero_padded_columns(v, d if width is None else width)  # a contiguous copy either way
        windows, heads, n, _ = q.shape
        terms = self._additive_terms(bias, q.dtype)
        step = max(1, policy.CHUNK_ELEMENTS // (heads * n * n))
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

    def _native(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, bias: torch.Tensor | None,
                cosine: torch.Tensor | None = None) -> torch.Tensor:
        """The explicit arithmetic in litesr's compiled kernel (:func:`native.biased_window_attention`): each
        window's logits get its label pattern's term, no map is written; the result is a (B·nW, nH, N, d) view of a
        (B·nW, N, nH, d) tensor, so the caller's transpose back to tokens is free. With ``cosine``, the kernel makes
        q's and k's rows unit rows as it reads them: no normalised copies are written either."""
        windows, heads, n, d = q.shape
        dtype = _common_dtype(q, k, v)
        q, k, v = q.to(dtype), k.to(dtype), v.to(dtype)
        terms = self._additive_terms(bias, torch.float32)  # the kernel adds fp32 terms, in bf16 too
        zero = q.new_zeros(heads, n, n, dtype=torch.float32)
        keys = [None, *range(len(self.groups))]  # pattern index 0: no label pattern (unshifted or interior)
        terms_t = torch.stack([(zero if terms[key] is None else terms[key]).expand(heads, n, n).transpose(-2, -1)
                               for key in keys]).contiguous()
        out = q.new_empty(windows, n, heads, d).transpose(1, 2)
        unit = None if cosine is None else cosine.detach().reshape(heads).float().contiguous()
        return native.biased_window_attention(q, k, v, terms_t, self._window_patterns(windows), out, unit)

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


def unit_rows(t: torch.Tensor, scale: torch.Tensor | None = None) -> torch.Tensor:
    """``F.normalize(t, dim=-1) [* scale]`` as one multiply by a per-row factor (equal to rounding).

    F.normalize divides by the expanded norm, and its backward divides again over every element: in a GRFormer
    bf16 training step those divisions took 10 % of the time.
    """
    factor = t.norm(dim=-1, keepdim=True).clamp_min(1e-12).reciprocal()
    return t * (factor if scale is None else factor * scale)


def _swin_path(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> str:
    """How :meth:`WindowGeometry.attend` runs for these q, k, v (``POLICY["swin attention in training"]``, then
    ``POLICY["swin attention"]``): "explicit", "native", "chunked" or "sdpa"."""
    grad = q.requires_grad and torch.is_grad_enabled()
    if policy.choose("swin attention in training", q.device, q.dtype, grad=grad) == "explicit":
        return "explicit"
    dtype = _common_dtype(q, k, v)  # what the kernel computes in
    return policy.choose("swin attention", q.device, q.dtype, q.shape[-2], runs=lambda how: how != "native" or all(
        native.supports(t, dtype) for t in (q, k, v)))


def _common_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """The dtype mixed inputs are computed in (GRFormer under bf16 autocast has fp32 unit-norm Q, K and bf16 V):
    the wider one, which holds the others exactly."""
    dtype = tensors[0].dtype
    for t in tensors[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    return dtype


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

    def _gathers(self, x: torch.Tensor) -> bool:  # a graph keeps the official roll (no size-keyed index)
        return False

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
               fused: bool = True, cosine: torch.Tensor | None = None) -> torch.Tensor:
        if cosine is not None:
            q, k = unit_rows(q, cosine), unit_rows(k)
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


@lru_cache(maxsize=64)
def _window_rows(b: int, h: int, w: int, ws: int, shift: int) -> torch.Tensor:
    """int32 row of a (B·H·W, C) map that each windowed token (in :func:`window_order`, batch by batch) came from."""
    return batched_rows(window_order(h, w, ws, shift, torch.device("cpu")), b, h * w).to(torch.int32)


@lru_cache(maxsize=64)
def _window_row_table(b: int, h: int, w: int, ws: int, shift: int) -> native.RowTable:
    """:func:`_window_rows` as the table the fp32 kernel reads and writes rows through (checked once)."""
    return native.RowTable(_window_rows(b, h, w, ws, shift))


def _elan_path(ws: int, width: int, dtype: torch.dtype, device: torch.device) -> str:
    """How the attention of ``ws``×``ws`` windows with ``width``-wide heads runs (``POLICY["elan attention"]``):
    "fused", "chunked", "chunked training", "sdpa" or "explicit" (computing and sharing GMSA always agree: the map
    they pass depends on it)."""
    return policy.choose("elan attention", device, dtype, ws, runs=lambda how: how != "fused" or (
        native.fits(ws * ws, width) and native.window_attention_runs(dtype)))


def _softmax(scores: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim of a window group's scores, in oneDNN where ``POLICY["elan softmax"]`` says so
    and this PyTorch has it."""
    how = policy.choose("elan softmax", scores.device, scores.dtype, scores.shape[-1],
                        runs=lambda how: how != "onednn" or compat.onednn_softmax_runs(scores.dtype))
    if how == "onednn":
        return compat.onednn_softmax(scores)
    return torch.softmax(scores, -1)


def _padded_v(v: torch.Tensor) -> torch.Tensor:
    """``v`` (windows, N, d) copied into the first d columns of a zero tensor as wide as ``POLICY["elan padded v"]``
    says; otherwise ``v`` itself."""
    width = policy.choose("elan padded v", v.device, v.dtype)
    if width is None or width <= v.shape[-1]:
        return v
    return zero_padded_columns(v, width)


def _chunk_windows(n: int) -> int:
    """Windows of ``n`` tokens per chunk: a chunk's ``n × n`` maps hold about ``policy.CHUNK_ELEMENTS`` elements."""
    return max(1, policy.CHUNK_ELEMENTS // (n * n))


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
        q, v = q.contiguous(), v.contiguous()  # bf16 bmm ran strided Q and V slower (POLICY["elan q and v"])
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
    map, or its Q where the map is recomputed). Each group's path: :func:`_elan_path`.
    """
    b, c, h, w = shape
    groups = t.chunk(len(window_sizes), dim=-1)
    width = groups[0].shape[-1] // (2 if calc_attn else 1)
    hows = [_elan_path(ws, width, t.dtype, t.device) for ws in window_sizes]
    # the kernel writes each group's rows straight into their place in one (B·H·W, C) output ("in place"), and the
    # fp32 one reads them from theirs too ("in rows")
    where = policy.choose("elan output", t.device, t.dtype) if set(hows) == {"fused"} else "gathered"
    out = t.new_empty(b * h * w, c) if where != "gathered" else None
    ys, new_attns = [], []
    for k, (group, ws, how) in enumerate(zip(groups, window_sizes, hows)):
        shift = ws // 2 if shifted else 0
        if where == "in rows":  # Q and V stay in the projection's rows; the sharing GMSA gets that Q
            rows = group.reshape(b * h * w, -1)
            q, v = (rows[:, :width], rows[:, width:]) if calc_attn else (attns[k], rows)
            native.window_attention_in_rows(q, v, _window_row_table(b, h, w, ws, shift), ws * ws,
                                            out[:, k * width:(k + 1) * width])
            new_attns.append(q)
            continue
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
            if policy.choose("elan q and v", q.device, q.dtype) == "contiguous" and how != "fused":
                q = q.contiguous()
                padded = policy.choose("elan padded v", v.device, v.dtype) is not None
                v = v if how == "chunked" and padded else v.contiguous()  # padded: copied there
            if how == "fused":  # the sharing GMSA gets Q, not the map
                attn, y = q, native.window_attention(q, v)
            elif how == "sdpa":  # the sharing GMSA gets Q, not the map
                attn, y = q, F.scaled_dot_product_attention(q[:, None], q[:, None], v[:, None], scale=1.0)[:, 0]
            elif how == "chunked":
                attn, y = _chunked_attention(q, _padded_v(v))
                y = y[..., :v.shape[-1]]
            elif how == "chunked training":
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
