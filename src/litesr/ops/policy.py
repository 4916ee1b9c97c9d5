"""Which path each call of litesr's fast paths takes, in one table: :data:`POLICY`.

Each entry of the table is one decision a model's forward makes (how a window group's attention runs, whether a
conv and its ReLU run as one call, how wide V is padded, …). Its rules are read in order, and the first one that
matches the call decides: the device (type), the dtype, the size the decision depends on (window side, tokens per
window, head width, score-row length: each entry says which), and when it applies (:data:`WHEN`: at inference,
in training, with or without gradients, always). Where a path needs more than the table can say (a compiled kernel
that must be built and take the shapes, a private PyTorch op this build must have), the caller checks that too and
the next rule decides if it fails. An entry's last rule, where it has one, matches every call: what runs otherwise.

The paths compute the same function (the official arithmetic; where noted, the same bits); they differ in speed and
memory only. The comments say why each rule is there, with the measurements that decided it; docs/performance.md
(§2.7 precision, §2.9 training, §3 what makes each path fast, §4.4 what was tried and not kept) has the figures in
context. Measured on a 2-core AMD EPYC with AVX-512 BF16 unless said otherwise.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

#: Any device, any dtype, any size (in a :class:`Rule`).
ANY = None
#: In a rule's dtypes: a call of any dtype under bf16 autocast on its device (whose matmuls then run in bf16).
BF16_AUTOCAST = "bf16 autocast"
BOTH = frozenset({torch.float32, torch.bfloat16})
FP32 = frozenset({torch.float32})
BF16 = frozenset({torch.bfloat16})

#: When a rule applies. A graph being traced, compiled or exported (:func:`is_exporting`) sees neither the compiled
#: kernels nor writes through ``out=`` nor Python loops over a size, so the paths that use them apply at inference
#: or in training only, never while exporting.
WHEN: dict[str, str] = {
    "inference": "gradients off, no graph being traced, compiled or exported",
    "training": "gradients on, no graph being traced, compiled or exported",
    "no gradients": "gradients off, while exporting too",
    "gradients": "gradients on (the call records them), while exporting too",
    "always": "every call",
}

#: Elements of one chunk of attention maps (or logits), in every chunked attention path: ELAN's chunks of
#: 16 windows of 16×16 (2 MiB in bf16), the Swin-type chunks of windows × heads × N × N logits (fp32: 4 MiB).
CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class Rule:
    """One row of :data:`POLICY`: ``take`` (a path's name, or a width) for calls on ``device`` (a device type) in one
    of ``dtypes`` with a size in ``sizes`` while ``when`` (a key of :data:`WHEN`) holds; :data:`ANY` matches all."""

    take: str | int
    dtypes: frozenset | None
    sizes: tuple[int, ...] | None
    device: str | None
    when: str

    def matches(self, device: torch.device, dtype: torch.dtype, size: int | None, grad: bool) -> bool:
        return ((self.device is ANY or device.type == self.device) and _holds(self.when, grad)
                and (self.sizes is ANY or size in self.sizes) and _dtype_matches(self.dtypes, dtype, device))


POLICY: dict[str, tuple[Rule, ...]] = {
    # ----------------------------------------------------------------------------------------------------------------
    # ELAN's window attention (ops.attention.elan_window_attention, per window group of a GMSA). Size: the window
    # side ws (ws² tokens a window). The computing and the sharing GMSA always take the same path (the map they pass
    # depends on it): "explicit" computes the official softmax(Q Qᵀ) map and the sharing GMSA reuses it; "chunked"
    # is the same arithmetic (bit-identical) a few windows at a time, so each chunk's scores are soft-maxed and
    # multiplied by V while in cache, and the map is still stored for the sharing GMSA; "sdpa" (not taken; kept for
    # measurements) runs one fused SDPA call (scale=1) and the sharing GMSA recomputes it from the stored Q, so the
    # 16×16-window map never exists; "fused" runs litesr's compiled kernel, and the sharing GMSA gets Q instead of the
    # map and recomputes the map (no map is written out).
    "elan attention": (
        # The compiled kernel (ops.native), where it is built and takes the head width. Whole forward, shipped x4,
        # picture input, alternating order (2026-12-01): bf16 0.352 against 0.439 s at LR 256², 0.085 against
        # 0.113 s at 128²; fp32 (the fp32 kernel with K = Q and a zero term) 0.699 against 0.901 s at 256², 0.145
        # against 0.200 s at 128², outputs within 1.5e-6 of the eager path's (docs/performance.md §3.1).
        Rule("fused", BOTH, (4, 8, 16), device="cpu", when="inference"),
        # Chunked, where the kernel does not run (it writes through ``out=``, which has no autograd, and a loop over
        # windows would freeze a traced size: inference only). Measured on the 16×16 windows (shipped ELAN-light
        # x4, whole forward, picture input): bf16 chunked 0.33/0.82 s against explicit 0.34/0.94 s at LR
        # 128²/256², and sdpa slower; fp32 (2026-11-30) chunked 0.19/0.90 s against sdpa 0.20/0.92 s and explicit
        # 0.20/0.93 s with freed blocks reused (as the CLI runs), 0.22/1.31 s against sdpa 0.21-0.24/1.05-1.08 s
        # with the default allocator. fp32 takes "chunked" although sdpa was faster there at 256²: the CPU SDPA
        # kernel is the less exact one. With the shipped x4 weights at LR 64², its output differed from a float64
        # forward by 3.8e-4 of the output's range, against 3.6e-5 for the official arithmetic, and an ONNX export
        # (explicit) then missed its 1e-4 check against the eager forward. (That input was an outlier, not SDPA's
        # rule: over five inputs its median was 2.9e-5, the official arithmetic's 3.6e-5, and each path reached
        # 1.0-3.8e-4 on one of them; 2026-12-01.) Chunking the 8×8 windows too, or 2^18-2^19-element chunks, did
        # no better.
        Rule("chunked", BOTH, (16,), device=ANY, when="inference"),
        # Training on a CPU runs the attention through one autograd Function (ops.attention._WindowAttention), a
        # cache-sized chunk of windows at a time, forward and backward, instead of autograd over whole-map ops. The
        # same arithmetic; ELAN-light training step (forward, L1, backward, Adam), x2, one thread, 2026-11-30,
        # alternating-order medians of 4-6: bf16 autocast 0.652 against 0.709 s at batch 4 × LR 64² (-8 %), 0.365
        # against 0.377 s at batch 8 × LR 32² (-3 %); fp32 1.568 against 1.622 s and 0.786 against 0.787 s. On CUDA
        # the chunk loop would only add kernel launches: there autograd's ops run (docs/performance.md §2.9).
        Rule("chunked training", ANY, ANY, device="cpu", when="training"),
        Rule("explicit", ANY, ANY, device=ANY, when="always"),
    ),
    # A GMSA whose groups all run "fused" has the kernel write each window's rows straight into their place in the
    # block's (B·H·W, C) output ("in place": no scatter back per group, no concatenation). bf16 forward, shipped
    # x4, alternating order (2026-12-01, two runs): 0.077-0.078 against 0.082-0.083 s at LR 128², 0.334-0.338
    # against 0.345-0.352 s at 256², the same bits. (Reading the windows' rows in place too, instead of gathering
    # them, was slower at 256²: docs/performance.md §4.4.) The fp32 kernel also reads each window's Q and V from the
    # projection's rows ("in rows": no gather per group, no scatter back, no concatenation), the same bits as the
    # gathered path: whole fp32 forward, alternating order, medians of 9, 2-core Intel Xeon with AVX-512 and no bf16
    # (2026-12-07): shipped x4 1.39 against 1.58 s at LR 256² (1.14x), 0.42 against 0.57 s at 128² (1.35x); the
    # 291-image x4 1.15x and 1.27x.
    "elan output": (
        Rule("in place", BF16, ANY, device=ANY, when="always"),
        Rule("in rows", FP32, ANY, device=ANY, when="always"),
        Rule("gathered", ANY, ANY, device=ANY, when="always"),
    ),
    # The computing GMSA copies each group's Q and V out of their shared (windows, N, 2d) gather into contiguous
    # tensors first (except on the "fused" path). bf16 bmm on the strided halves was the slower kernel: Q·Qᵀ,
    # softmax and A·V of the 4×4 windows at LR 256² took 1.9 ms contiguous against 2.8 ms strided, those of the 8×8
    # ones 2.7 against 3.3 ms, one 16-window chunk's Q·Qᵀ 79 against 111 µs. Whole bf16 forward, interleaved A/B
    # over 7 rounds: -5 % at LR 128², -1 % at 256² (same bits; shipped x4). fp32 was 2 % slower with the copies.
    "elan q and v": (
        Rule("contiguous", BF16, ANY, device=ANY, when="no gradients"),
        Rule("strided", ANY, ANY, device=ANY, when="always"),
    ),
    # The "chunked" windows' V zero-padded to this many columns for the A·V bmm's (both GMSAs); the zero columns
    # are cut off again as a view. bf16 bmm ran the 20-column V slower than a 32-column one (the sharing GMSA's A·V
    # at LR 256²: 2.6 against 3.4 ms). Whole bf16 forward, interleaved A/B in alternating order, medians of 12:
    # 0.514 against 0.527 s at LR 256² (-2.5 %), 0.113 against 0.116 s at 128² (-3 %); same output bits (shipped
    # x4, 2026-11-30). fp32 was 4-5 % slower padded (0.207/0.913 against 0.200/0.868 s at 128²/256²).
    "elan padded v": (
        Rule(32, BF16, ANY, device=ANY, when="no gradients"),
    ),
    # The softmax of ELAN's window scores (the "explicit" and "chunked" paths). Size: the score-row length (tokens
    # per window). oneDNN's (``to_mkldnn``) for the 4×4 and 16×16 windows in bf16, where this PyTorch has it:
    # ATen's bf16 softmax computes its exp in fp32 and managed ~1.6 G elements/s here; oneDNN's ran 2.5x faster on
    # 256-wide rows (both layout conversions included), 1.6x on 16-wide ones, no faster on 64-wide ones, and in fp32
    # no faster at all. Whole bf16 forward: 4-7 % faster at LR 128²/256² (shipped x4, interleaved A/B).
    "elan softmax": (
        Rule("onednn", BF16, (16, 256), device="cpu", when="inference"),
        Rule("aten", ANY, ANY, device=ANY, when="always"),
    ),
    # ----------------------------------------------------------------------------------------------------------------
    # Swin-type window attention (SwinIR-light, GRFormer: ops.attention.WindowGeometry.attend), first in training.
    # Dtype: q's, or BF16_AUTOCAST; it applies only where the call records gradients (q requires them). "explicit"
    # where SDPA falls back to its unfused math path, which also guards against fully masked rows
    # (``all``/``isneginf``/``where`` over every logit): explicit made a training step 1.4x faster for GRFormer
    # (1.8 s against 2.6 s, 8×32 windows) and 1.6x for SwinIR-light (0.72 s against 1.2 s, 8×8 windows) (batch 8,
    # LR 32², one thread). fp32 training keeps SDPA (GRFormer 2.2 s against 3.2 s). Elsewhere "swin attention"
    # decides: explicit bf16 inference was 1.2x faster for SwinIR-light with freed blocks reused
    # (litesr.device.reuse_freed_memory, as the CLI runs) but 2.3x slower without (0.87 s against 0.37 s at LR
    # 128²: each block's maps are page-faulted in anew), and GRFormer's 256-token windows were slower either way.
    "swin attention in training": (
        Rule("explicit", frozenset({torch.bfloat16, BF16_AUTOCAST}), ANY, device="cpu", when="gradients"),
    ),
    # Swin-type window attention otherwise. Size: tokens per window N. Dtype: q's.
    "swin attention": (
        # litesr's compiled kernel (ops.native.biased_window_attention: 16 query rows in the lanes of a vector, each
        # window's bias/mask term added as the logits are made, an exp from a polynomial, no map written), where it
        # is built and takes q, k and v. Whole fp32 forward, shipped x4, picture input, alternating order, medians
        # (2026-12-01): SwinIR-light (8×8 windows) 0.278 against 0.435 s at LR 128², 0.061 against 0.102 s at 64²;
        # GRFormer-light (8×32) 0.422 against 0.556 s at 128², 0.115 against 0.137 s at 64²; outputs within 2e-6 of
        # the eager path's. Under bf16 autocast (the attention in fp32 from bf16 Q, K, V): SwinIR-light 0.163
        # against 0.398 s at 128², GRFormer 0.390 against 0.608 s; PSNR against fp32 55.66 / 53.63 dB (eager bf16
        # 55.67 / 53.60).
        Rule("native", BOTH, (64, 256), device="cpu", when="inference"),
        # The explicit arithmetic a cache-sized chunk of windows at a time (WindowGeometry._chunked) instead of SDPA,
        # whose flash kernel ran SwinIR-light's 10-wide heads at ~24 GFLOP/s, half its fp32 forward. SwinIR-light
        # (8×8 windows) in fp32, whole forward, interleaved A/B in alternating order on picture input (shipped x4,
        # 2026-11-30): with freed blocks reused (as the CLI runs) 0.451 against 0.485 s at LR 128² (median of 12),
        # 2.01 against 2.15 s at 256² (of 6), -7 % both; with the default allocator (fixed order) 0.450 against
        # 0.491 s at 128², 2.29 against 2.28 s at 256². Not taken: bf16 (SwinIR-light 0.40 against 0.36 s at 128²)
        # and GRFormer's 256-token windows in fp32 (0.67 against 0.58 s).
        Rule("chunked", FP32, (64,), device="cpu", when="inference"),
        Rule("sdpa", ANY, ANY, device=ANY, when="always"),
    ),
    # On the "chunked" path, V copied into the first d columns of a zero tensor this wide, and the zero columns cut
    # off the output again as a view. Size: the head width d. The A·V bmm of SwinIR-light's chunks
    # ((252, 64, 64) @ (252, 64, d), fp32) took 0.49 ms with d = 10, 0.27 ms with 12 and 0.20 ms with 16; whole fp32
    # forward at LR 128² 0.435 against 0.461 s (alternating-order A/B, medians of 10; outputs within 1e-6, the
    # GEMM's summation order; shipped x4, 2026-11-30).
    "swin padded v": (
        Rule(16, FP32, (10,), device=ANY, when="always"),
    ),
    # GRFormer's grouped residual Q, K, V layers and grouped output projection (models.grformer.GRSA) at inference:
    # "folded" runs them as one (3C, C) and one (C, C) linear layer whose block-diagonal weights hold the residual
    # on their diagonal (GRSA.folded, built once); "official" runs the official six half-width layers, three
    # residual adds and three concatenations, and two layers and a concatenation for the output. Twice the
    # multiply-adds of those layers (the zero blocks), half the passes over the tokens. Whole fp32 forward, shipped
    # x4, picture input, interleaved (2-core Intel Xeon with AVX-512, no BF16; 2026-12-07): 3.62 against 4.30 s at
    # LR 256² (medians of 7), 0.356 against 0.374 s at 64² (of 9); outputs within 1e-6. Without oneDNN's linear
    # (ATen's addmm on the folded weights) it gained nothing. The device is the CPU only: the FLOP counter
    # (litesr.efficiency, on the meta device) counts the official layers.
    "grformer projections": (
        Rule("folded", ANY, ANY, device="cpu", when="inference"),
        Rule("official", ANY, ANY, device=ANY, when="always"),
    ),
    # ----------------------------------------------------------------------------------------------------------------
    # A convolution and the ReLU after it (ops.conv.conv2d_relu: ELAN's LFE) as one oneDNN call
    # (``torch.ops.mkldnn._convolution_pointwise``, the op Inductor fuses into), where this PyTorch has it: the
    # ReLU is applied to the convolution's output tile before it is written, so no pass over the output is left for
    # it. ELAN-light's LFE at LR 256² in bf16: 4.31 against 4.72 ms; whole bf16 forward 0.430 against 0.436 s at LR
    # 256², 0.117 against 0.120 s at 128², the same at 64² (alternating-order medians of 16, same output bits;
    # 2026-11-30). fp32 ran 1-2 % slower fused, and fusing the residual add after the LFE's and GMSA's last conv
    # (``_convolution_pointwise.binary``) made the bf16 forward 1.8 % slower, though each conv alone ran faster.
    "conv relu": (
        Rule("fused", BF16, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    # PAN's convolutions and the LeakyReLU or sigmoid after them (ops.conv.conv2d_act) as one oneDNN call, the pixel
    # attention's product and LeakyReLU in place (the trunk's gates keep PyTorch's sigmoid: models/pan.py). At the
    # x4 upsampler's 1024² stage each pass over the features took ~40 ms: PA + HRconv with their activations 210
    # against 346 ms there, 35 against 66 ms at 512². Whole fp32 forward at LR 256², published weights, picture
    # input, alternating order, medians (best) of 7, 2-core Intel Xeon with AVX-512 and no bf16 (2026-12-07): x4
    # 2.07 (1.91) against 2.31 (1.91) s, x2 0.89 (0.85) against 0.88 (0.84) s; outputs within 2e-6 (an earlier A/B:
    # x4 1.99 against 2.18 s). SPAN's SiLUs the same way (oneDNN's swish) and its attention in place: LR 256², the
    # NTIRE weights, medians (best) of 21, twice: 0.271 (0.202) against 0.287 (0.221) s and 0.286 (0.256) against
    # 0.302 (0.278) s (1.06x), LR 128² 1.10x; outputs within 3.7e-6 of their range. Measured in fp32 only.
    "conv activation": (
        Rule("fused", FP32, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    # The shifted windows of SwinIR and GRFormer (ops.attention.WindowGeometry): roll → partition, and reverse →
    # roll back, as one gather of token rows each (an index built once per size) instead of torch.roll's copies plus
    # the permute-copy; the same values. Whole fp32 forward, LR 256², real weights, alternating order, medians of
    # 9-11, three A/Bs, 2-core Intel Xeon with AVX-512 and no bf16 (2026-12-07): SwinIR-light 1.06x, 1.08x (LR 128²
    # 1.10x); GRFormer 1.03x, 0.98x (128² 1.01x): no change. Inference only; a traced graph keeps the roll.
    "swin shifted windows": (
        Rule("gather", ANY, ANY, device="cpu", when="inference"),
        Rule("roll", ANY, ANY, device=ANY, when="always"),
    ),
    # Transformer feed-forwards (SwinIR's MLP, GRFormer's and HiT-SRF's ConvFFN; ops.ffn) at fp32 inference on a
    # CPU: the GELU inside fc1 and the depthwise conv, the residual add inside the last depthwise conv (oneDNN
    # post-ops). At LR 128² per block, 1 thread, 2-core Intel Xeon with AVX-512 and no bf16 (2026-12-07): fc1 + GELU
    # 5.4 against 12.6 ms, HiT-SRF's h + GELU(dwconv5×5(h)) 6.5 against 20 ms, GRFormer's branch 9-12 against
    # 18-19 ms; whole forwards in docs/performance.md §3.5. bf16 autocast keeps the separate ops (autocast casts
    # inside F.linear).
    "feed-forward": (
        Rule("fused", FP32, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    # The ConvFFN of GRFormer and HiT-SRF at fp32 inference on a CPU (ops.ffn.conv_ffn). Size: the side of its first
    # depthwise conv. "compiled": one call of litesr's compiled kernel (ops.native.conv_ffn), strips of pixels going
    # down the picture with the hidden rows the depthwise convs need in L2, instead of oneDNN's four passes over the
    # twice-as-wide hidden map. Whole fp32 forward, LR 256², real weights, alternating order, medians of 7, three
    # A/Bs, 2-core Intel Xeon with AVX-512 and no bf16 (2026-12-07): GRFormer (two 3×3 convs) 1.12x, 1.19x, 1.09x;
    # HiT-SRF (one 5×5) 0.98x, 0.97x, 1.04x then, but 1.16x, 1.07x, 1.12x once pictures reached the models in the
    # layout oneDNN takes and the kernel read its rows in rings (one ConvFFN in the forward: 20 against 26 ms), so
    # both take it. Outputs within 1.6e-6 of their range. 40 % of the kernel's time is its GELUs (erf from a
    # polynomial and an exp).
    "conv feed-forward": (
        Rule("compiled", FP32, (3, 5), device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    # The plain linear layers of the token mixers and feed-forwards at fp32 inference on a CPU (ops.ffn.linear):
    # oneDNN's linear instead of ATen's addmm (the same output bits here). (65536, 60) tokens through 60→60:
    # 2.9 against 5.2 ms; 60→180 7.6 against 11.9 ms. Whole fp32 forward at LR 256², picture input, interleaved,
    # medians of 5 (2-core Intel Xeon with AVX-512, no BF16; 2026-12-07): SwinIR-light 1.85 against 1.98 s,
    # GRFormer 3.22 against 3.77 s, HiT-SRF 2.05 against 2.26 s. Rows that are not contiguous keep addmm: oneDNN
    # copied GRFormer's strided channel halves first and ran slower.
    # PAN's upsampling stages at fp32 inference on a CPU (ops.conv.attended_upsampling): upconv at the low
    # resolution in oneDNN, then one call of litesr's compiled kernel (ops.native.pan_upsampling) for the pixel
    # shuffle, the pixel attention, HRconv with the LeakyReLUs and, in the last stage, conv_last and the bilinear
    # image, a strip of pixels at a time with its rows in L2, instead of oneDNN's passes over the high-resolution
    # map (~40 ms each at LR 256² x4, where the 24-in 24- and 3-out convolutions ran at 12-56 GFLOP/s).
    "pan upsampling": (
        Rule("compiled", FP32, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    # PAN's trunk at fp32 inference on a CPU (ops.conv.scpa_trunk): each SCPA block in one call of litesr's compiled
    # kernel (ops.native.scpa), 16 pixels of a row in the vector lanes and the 20 outputs of each layer in
    # registers, instead of oneDNN's ten passes, whose 20-channel convolutions ran at 25-62 GFLOP/s (one block at
    # LR 256²: ~42 ms).
    "pan trunk": (
        Rule("compiled", FP32, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    # HiT-SRF's post-norm residual x + LayerNorm(a) at fp32 inference on a CPU (ops.norm.plus_normed, and inside the
    # ConvFFN kernel for the block's second half, ops.ffn.conv_ffn): one pass of litesr's compiled kernel instead of
    # the norm's pass over the map and the add's.
    "post-norm residual": (
        Rule("compiled", FP32, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    "linear": (
        Rule("onednn", FP32, ANY, device="cpu", when="inference"),
        Rule("aten", ANY, ANY, device=ANY, when="always"),
    ),
    # Layer norm of a bf16/fp16 input on a CPU without gradients (ops.norm): under bf16 autocast the Swin-type
    # models' residual stream is bf16, and ATen's bf16 layer norm (float32 inside) ran 2.1x slower than the float32
    # one with both casts: 815 against 381 µs on (1, 128, 128, 60), freed blocks reused. Whole bf16 forward, shipped
    # x4, interleaved in alternating order: SwinIR-light 0.328 against 0.347 s at LR 128² (-5 %), 1.36 against
    # 1.42 s at 256²; GRFormer 0.526 against 0.547 s at 128² (-4 %); ESRT (two norms) unchanged (2-core EPYC
    # AVX-512 BF16, 2026-11-30). The arithmetic is the bf16 kernel's (float32 inside).
    "layer norm": (
        Rule("float32 inside", frozenset({torch.bfloat16, torch.float16}), ANY, device="cpu", when="no gradients"),
        Rule("native", ANY, ANY, device=ANY, when="always"),
    ),
    # The hidden width of ELAN's LFE (C·r_expand: 120 in ELAN-light) at inference (eval mode) padded to a multiple
    # of this many channels with zero channels that do not move (ops.conv.shift_convs_relu). oneDNN's bf16 depthwise
    # shift over channels-last pixels ran 3x slower on 120 channels than on 128 at LR 256² (2.4 against 0.8 ms);
    # padded, one LFE took 5.3 instead of 7.0 ms and the whole bf16 forward 0.49 instead of 0.52 s, with the same
    # output bits (shipped x4). fp32 gained nothing (0.90 s either way), so it keeps the official widths.
    # ELAN's LFE (two shift-convs with a ReLU between, and the residual add after them; ops.conv.shift_convs_relu)
    # at fp32 inference on a CPU: one call of litesr's compiled kernel (ops.native.lfe), a tile of pixels through
    # both shift-convs while its hidden map stays in L2, instead of five oneDNN/ATen passes over the picture (a
    # depthwise shift, the 1×1 conv, the ReLU, the shift of the twice-as-wide hidden map, the second 1×1 conv) and
    # the add. One LFE at LR 256² (shipped x4, 2 threads, medians of 15): 10.7 against 20.6 ms, the oneDNN path's
    # passes leaving the cache in the whole forward (~42 ms there). Whole fp32 forward, picture input, alternating
    # order, medians of 9, 2-core Intel Xeon with AVX-512 and no bf16 (2026-12-07): shipped x4 1.45 against 1.92 s at
    # LR 256² (1.33x), 0.43 against 0.59 s at 128² (1.36x); the 291-image x4 1.15x and 1.22x, outputs within 9e-7 of
    # their range (the shipped x4's differ by up to 0.19 at 256², as any two fp32 orders of it do: against a float64
    # forward this path is the nearer, 1.1e-1 against 1.7e-1). One LFE within 3.4e-7 of the float64 official order.
    "elan lfe": (
        Rule("fused", FP32, ANY, device="cpu", when="inference"),
        Rule("separate", ANY, ANY, device=ANY, when="always"),
    ),
    "shift-conv hidden width": (
        Rule(32, BF16, ANY, device=ANY, when="always"),
    ),
}


def choose(op: str, device: torch.device, dtype: torch.dtype, size: int | None = None, *, grad: bool | None = None,
           runs: Callable[[str | int], bool] | None = None) -> str | int | None:
    """What the first rule of ``POLICY[op]`` that matches this call takes (``runs``, where given, must accept it
    too: the caller's check that a path can run here), or None if none does. ``grad``: whether this call records
    gradients, if not simply whether they are on."""
    grad = torch.is_grad_enabled() if grad is None else grad
    for rule in POLICY[op]:
        if rule.matches(device, dtype, size, grad) and (runs is None or runs(rule.take)):
            return rule.take
    return None


def is_exporting() -> bool:
    """True while a graph is traced, compiled or exported: sizes must then flow through the graph as values
    (no size-keyed caches, no Python branches on sizes), or the graph freezes the size it was traced at."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def _holds(when: str, grad: bool) -> bool:
    if when == "always":
        return True
    if when == "no gradients":
        return not torch.is_grad_enabled()
    if when == "gradients":
        return grad
    if when == "inference":
        return not torch.is_grad_enabled() and not is_exporting()
    if when == "training":
        return grad and not is_exporting()
    raise ValueError(f"unknown condition {when!r} (known: {', '.join(WHEN)})")


def _dtype_matches(dtypes: frozenset | None, dtype: torch.dtype, device: torch.device) -> bool:
    if dtypes is ANY or dtype in dtypes:
        return True
    return (BF16_AUTOCAST in dtypes and torch.is_autocast_enabled(device.type)
            and torch.get_autocast_dtype(device.type) == torch.bfloat16)
