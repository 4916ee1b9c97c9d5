"""ESRT's efficient multi-head attention (EMHA) over token segments: softmax(Q Kᵀ · scale) V within each of the
official ``feature_split`` segments, computed the official way (``naive``), by SDPA's fused kernel (``sdpa``) or
one block of queries at a time (``chunked``): the same result, different memory and speed
(``benchmarks/esrt_memory.py``)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .policy import is_exporting

#: How EMHA computes attention inside a token segment; see :func:`split_attention`.
ATTENTION_MODES = ("sdpa", "chunked", "naive")
#: Upper bound on the score block (floats) that ``"chunked"`` materialises at once: 2**21 floats = 8 MiB
#: (larger blocks were no faster here, and blocks >= 32 MiB are mmapped afresh by glibc on every call).
CHUNK_SCORES = 1 << 21


def feature_split(n: int) -> list[tuple[int, int]]:
    """Token ranges of the official ``torch.split(q, math.ceil(N//4), dim=-2)``: N//4-token segments, the last
    holding the remainder (so N = 1961 gives 490, 490, 490, 490, 1). For N < 4 the official split size is 0, an
    error; here the whole sequence is then one segment (ESRT itself never gets there: its inputs are ≥ 2×2)."""
    size = n // 4 if n >= 4 else n
    return [(s, min(s + size, n)) for s in range(0, n, size)] if n else []


def _traced_split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    """The :func:`feature_split` segments with N//4 taken from the traced size (an export is not frozen at the
    size it was traced at): four segments and the (possibly empty) remainder, each as explicit attention."""
    n = q.shape[-2]
    size = n // 4
    bounds = [(i * size, (i + 1) * size) for i in range(4)] + [(4 * size, n)]
    output = []
    for s, e in bounds:
        attn = (q[..., s:e, :] @ k[..., s:e, :].transpose(-2, -1)) * scale
        output.append(attn.softmax(dim=-1) @ v[..., s:e, :])
    return torch.cat(output, dim=-2)


def split_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, mode: str) -> torch.Tensor:
    """softmax(Q Kᵀ · scale) V within each :func:`feature_split` segment of the token axis of (B, heads, N, d).

    ``naive``:   the official loop, verbatim. It materialises each segment's (B, heads, L, L) score matrix, and
                 since ``attn`` outlives its iteration, three such matrices are alive at the peak.
    ``sdpa``:    ``F.scaled_dot_product_attention`` per segment; on CPU its fused (flash) kernel tiles queries and
                 keys with an online softmax, so no L×L matrix exists.
    ``chunked``: the official arithmetic, one block of queries at a time (exact: softmax rows are independent),
                 each score block under :data:`CHUNK_SCORES` floats.
    """
    if is_exporting():
        return _traced_split_attention(q, k, v, scale)
    segments = [(q[..., s:e, :], k[..., s:e, :], v[..., s:e, :]) for s, e in feature_split(q.shape[-2])]
    if mode == "naive":
        output = []
        for q_seg, k_seg, v_seg in segments:
            attn = (q_seg @ k_seg.transpose(-2, -1)) * scale
            attn = attn.softmax(dim=-1)
            output.append(attn @ v_seg)
        return torch.cat(output, dim=-2)
    if mode == "sdpa":
        head_multiple = 8 if q.device.type == "cuda" else 1
        return torch.cat([sdpa_attention(*seg, scale, head_multiple) for seg in segments], dim=-2)
    if mode == "chunked":
        return torch.cat([_query_chunked_attention(*seg, scale) for seg in segments], dim=-2)
    raise ValueError(f"attention mode {mode!r}; choose one of {', '.join(ATTENTION_MODES)}")


def sdpa_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, head_multiple: int = 1):
    """``F.scaled_dot_product_attention`` with the head width zero-padded to a multiple of ``head_multiple``.

    Exact: zero features add nothing to Q Kᵀ and give zero output columns, which are cut off. Used on CUDA,
    where the memory-efficient CUDA kernels need a width divisible by 8 (ESRT's is 18) and would otherwise fall
    back to the math kernel, which materialises the L×L matrix. CPU's flash kernel takes any width.
    """
    d = q.shape[-1]
    pad = -d % head_multiple
    if pad:
        q, k, v = (F.pad(t, (0, pad)) for t in (q, k, v))
    return F.scaled_dot_product_attention(q, k, v, scale=scale)[..., :d]


def _query_chunked_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float) -> torch.Tensor:
    # Blocks are written into one preallocated output: collecting them in a list for torch.cat leaves small live
    # allocations between the freed score blocks, and glibc's heap then fragments and grows by GiBs at 256².
    rows = max(1, CHUNK_SCORES // max(1, q[..., 0, 0].numel() * k.shape[-2]))
    k_t = k.transpose(-2, -1)
    out = q.new_empty(q.shape)
    for i in range(0, q.shape[-2], rows):
        out[..., i:i + rows, :] = ((q[..., i:i + rows, :] @ k_t) * scale).softmax(dim=-1) @ v
    return out
