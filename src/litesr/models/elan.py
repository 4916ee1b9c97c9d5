"""ELAN: Efficient Long-Range Attention Network (Zhang et al., ECCV 2022).

Faithful to github.com/xindongzhang/ELAN @97ab3fa (``models/elan_network.py``, ``models/elan_block.py``).
Reading order: ELAN → ELAB (block) → LFE (shift-convs) → GMSA (attention).

The official network works on 0..255 images; litesr's convention is [0, 1], so ``ours(x) = official(255·x) / 255``.
State-dict keys are the official ones, fixed constants included (mean-shift convs, one-hot shift kernels).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from .. import compat, native
from .base import SRModel
from .blocks import MeanShift, PixelShuffleUpsampler, pad_to_multiple
from .blocks import inference_weights, is_exporting, take_tokens, window_order, window_unorder
from .blocks import batched_rows, conv2d_relu, native_inference, zero_padded_columns
from .registry import Architecture, CheckpointError, Variant, register_architecture, register_variant
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
        x = self.head(self.sub_mean(x).contiguous(memory_format=torch.channels_last))
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
            x = lfe(x).add_(x)  # in place into the fresh conv output: no new allocation (page faults) per add
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
        # inference: the ReLU runs inside the first 1×1 conv where oneDNN fuses it (blocks.conv2d_relu)
        conv0, conv1 = self.conv0.shift_conv, self.conv1.shift_conv
        multiple = PAD_HIDDEN.get(x.dtype)
        if multiple and conv0.conv1x1.out_channels % multiple:
            # the same function with zero hidden channels that do not move: zero weights and bias in, zero out
            shift0, w0, b0, shift1, w1, b1 = inference_weights(self, "padded", x.dtype, lambda: self._padded(x.dtype))
        else:
            shift0, w0, b0 = conv0.weight, conv0.conv1x1.weight, conv0.conv1x1.bias
            shift1, w1, b1 = conv1.weight, conv1.conv1x1.weight, conv1.conv1x1.bias
        y = conv2d_relu(depthwise_shift(x, shift0), w0, b0)
        return F.conv2d(depthwise_shift(y, shift1), w1, b1)

    def _padded(self, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
        """Shift kernel, weight and bias of both shift-convs in ``dtype``, the hidden width padded to a multiple of
        ``PAD_HIDDEN[dtype]`` with zero weights in and out and shift taps that do not move."""
        conv0, conv1 = self.conv0.shift_conv, self.conv1.shift_conv
        pad = -conv0.conv1x1.out_channels % PAD_HIDDEN[dtype]
        shift1 = torch.cat([conv1.weight, one_hot_shift_kernel(5)[4:].to(conv1.weight).expand(pad, 1, 3, 3)])
        tensors = (conv0.weight, F.pad(conv0.conv1x1.weight, (0, 0, 0, 0, 0, 0, 0, pad)),
                   F.pad(conv0.conv1x1.bias, (0, pad)), shift1,
                   F.pad(conv1.conv1x1.weight, (0, 0, 0, 0, 0, pad)), conv1.conv1x1.bias)
        return tuple(t.to(dtype) for t in tensors)


#: Inference dtypes whose LFE hidden width (C·r_expand: 120 in ELAN-light) is padded to a multiple of this many
#: channels with zero channels that do not move. oneDNN's bf16 depthwise shift over channels-last pixels ran 3x
#: slower on 120 channels than on 128 at LR 256² (2.4 against 0.8 ms); padded, one LFE took 5.3 instead of 7.0 ms
#: and the whole bf16 forward 0.49 instead of 0.52 s, with the same output bits (2-core EPYC AVX-512 BF16, shipped
#: x4). fp32 gained nothing (0.90 s either way), so it keeps the official widths.
PAD_HIDDEN = {torch.bfloat16: 32}


class ShiftConv(nn.Module):
    """Official ``ShiftConv2d`` wrapper: keeps the ``conv0.shift_conv.*`` key nesting of the official code."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.shift_conv = _ShiftThen1x1(in_channels, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.shift_conv(x)


def one_hot_shift_kernel(channels: int) -> torch.Tensor:
    """The official fixed depthwise kernel: groups of C//5 channels move left, right, up, down; the rest stay."""
    g = channels // 5
    k = torch.zeros(channels, 1, 3, 3)
    k[0 * g:1 * g, 0, 1, 2] = 1.0
    k[1 * g:2 * g, 0, 1, 0] = 1.0
    k[2 * g:3 * g, 0, 2, 1] = 1.0
    k[3 * g:4 * g, 0, 0, 1] = 1.0
    k[4 * g:, 0, 1, 1] = 1.0
    return k


def depthwise_shift(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """The official shift: a depthwise 3×3 conv with a fixed one-hot (C, 1, 3, 3) ``kernel``. Each tap moves a value,
    exactly, with zeros entering at the border, in the forward and in its gradient. Channels-last it ran 2-5x faster
    at inference than slicing channel groups out of every pixel; in training, a bf16 ELAN-light step took 0.352
    against 0.366 s with slices and a hand-written opposite-shift gradient (x3/x4, batch 8 × LR 32², 1 thread,
    alternating order, medians of 8-16; fp32 0.764 against 0.766 s), with the same gradient bits."""
    return F.conv2d(x, kernel.to(x.dtype), None, 1, 1, 1, x.shape[1])


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


#: Inference dtypes and window sizes whose attention runs in litesr's compiled kernel (:mod:`litesr.native`) where
#: it runs; the sharing GMSA then gets Q instead of the map and recomputes the map (no map is written out). Whole
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


class GMSA(nn.Module):
    """Group-wise multi-scale self-attention with the ASA simplifications.

    Channels split into one group per window size. With ``calc_attn`` the projection gives Q|V per group and
    A = softmax(Q Qᵀ) (K = Q, no scaling, BN instead of LN); otherwise it gives V only and reuses the A passed in.
    Shifted blocks roll each group by half its window, cyclically and without a mask.

    Inference path (same arithmetic, fewer passes over memory): BatchNorm folded into the 1×1 projection; roll and
    window partition as one gather of the token rows (:func:`window_order`), window reverse and roll back as one
    gather; the projection read and written channels-last when the block runs channels-last; where litesr's
    compiled kernel runs (:data:`FUSED_ATTENTION`), each group's attention in one call and, in bf16, its rows written
    straight into the output (:data:`IN_PLACE_OUTPUT`).
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
        groups = t.chunk(len(self.window_sizes), dim=-1)
        width = groups[0].shape[-1] // (2 if self.calc_attn else 1)
        hows = [_policy(ws, width, t.dtype, t.device) for ws in self.window_sizes]
        # the bf16 kernel writes each group's rows straight into their place in one (B·H·W, C) output
        out = t.new_empty(b * h * w, c) if t.dtype in IN_PLACE_OUTPUT and set(hows) == {"fused"} else None
        ys, new_attns = [], []
        for k, (group, ws, how) in enumerate(zip(groups, self.window_sizes, hows)):
            shift = ws // 2 if self.shifted else 0
            order, unorder = window_order(h, w, ws, shift, x.device), window_unorder(h, w, ws, shift, x.device)
            tokens = take_tokens(group, order, unorder).view(-1, ws * ws, group.shape[-1])
            if out is not None:
                q, v = tokens.chunk(2, dim=-1) if self.calc_attn else (attns[k], tokens)
                native.window_attention(q, v, out=out[:, k * width:(k + 1) * width],
                                        out_rows=_window_rows(b, h, w, ws, shift))
                new_attns.append(q)  # the sharing GMSA gets Q, not the map
                continue
            if self.calc_attn:
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
register_architecture(Architecture(name="elan", build=ELAN, detect=detect_config, paper=PAPER, cpu_bf16=True,
                                   size_multiple=lambda config: math.lcm(*config["window_sizes"])))
register_variant(Variant(
    name="elan-light", arch="elan", config=dict(c_elan=60, m_elan=24, n_share=1, r_expand=2),
    description="ELAN-light: C=60, 24 LFE/GMSA pairs in 12 blocks, attention shared by pairs, windows 4/8/16",
))
register_variant(Variant(
    name="elan", arch="elan", config=dict(c_elan=180, m_elan=36, n_share=0, r_expand=2),
    description="ELAN: C=180, 36 blocks, no sharing, windows 4/8/16",
))
