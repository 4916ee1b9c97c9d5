"""Window layout: how a (B, H, W, C) map is cut into windows and put back, as copies or as one gather of token rows.

Window helpers follow the Swin/SwinIR layout that ELAN, SwinIR and GRFormer all use: windows ordered
batch-major, then window-row, then window-column; tokens inside a window row-major; channels last.
"""

from __future__ import annotations

from functools import lru_cache

import torch

from .policy import is_exporting


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


def window_reverse_into(out: torch.Tensor, windows: torch.Tensor, wh: int, ww: int,
                        channels: slice = slice(None)) -> torch.Tensor:
    """Write ``windows`` (B·nW, wh·ww, *rest) into ``out[..., channels]`` of a (B, H, W, C) map in picture order:
    :func:`window_reverse` of windows whose channels may be several dims (heads × width, as an attention leaves
    them), each element read and written once, with no window-order copy between. Returns ``out``."""
    b, h, w, _ = out.shape
    rest = windows.shape[2:]
    target = out[..., channels].unflatten(1, (h // wh, wh)).unflatten(3, (w // ww, ww)).permute(0, 1, 3, 2, 4, 5)
    target.unflatten(-1, rest).copy_(windows.view(b, h // wh, w // ww, wh, ww, *rest))
    return out


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


def rolled_window_order(h, w, window: tuple[int, int], shift: tuple[int, int],
                        device: torch.device | None = None) -> torch.Tensor:
    """Token order of ``roll(−shift) → window_partition`` into wh×ww windows, as a gather index into the H·W
    tokens of a map (uncached; :func:`window_order` caches the square case)."""
    idx = torch.arange(h * w, device=device).view(1, h, w, 1)
    if any(shift):
        idx = torch.roll(idx, shifts=(-shift[0], -shift[1]), dims=(1, 2))
    return window_partition(idx, *window).reshape(-1)


def _window_order(h, w, ws: int, shift: int, device) -> torch.Tensor:
    return rolled_window_order(h, w, (ws, ws), (shift, shift), device)


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
