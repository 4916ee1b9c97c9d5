"""Convolutions: a conv and its ReLU as one oneDNN call at inference, ELAN's one-hot shift as a depthwise conv
(with the hidden width of its shift-conv pair padded where that runs faster), and a nearest upsampling followed by
a 3×3 conv computed at the low resolution (PAN), and a conv with its LeakyReLU or sigmoid as one oneDNN call (PAN)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import compat
from . import native, policy
from .derived import inference_weights


def conv2d_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias))`` (stride 1, no padding), as one fused oneDNN call where
    ``POLICY["conv relu"]`` says so and this PyTorch has it; as a convolution and an in-place ReLU otherwise
    (training, export, compile, other devices and dtypes). The same values either way (bf16: the same bits at
    LR 256²; fp32: within rounding)."""
    how = policy.choose("conv relu", x.device, x.dtype, runs=lambda how: how != "fused" or (
        weight.dtype == x.dtype and x.dim() == 4 and compat.fused_conv_relu_runs(x.dtype)))
    if how == "fused":
        return compat.fused_conv_relu(x, weight, bias)
    return F.relu(F.conv2d(x, weight, bias), inplace=True)


def as_channels_last(x: torch.Tensor) -> torch.Tensor:
    """``x`` (N×C×H×W) channels-last with the strides oneDNN takes for it. ``x.contiguous(memory_format=
    torch.channels_last)`` keeps a view that PyTorch calls channels-last but oneDNN does not, such as
    ``hwc.permute(2, 0, 1)[None]`` (a batch stride of C): every convolution after it then writes NCHW maps, and
    PAN ran 1.9×, SPAN 1.2× and IMDN 1.15× slower so."""
    if x.is_contiguous(memory_format=torch.channels_last) and x.stride(0) == x[0].numel():
        return x
    return x.clone(memory_format=torch.channels_last)


def fused_activations(x: torch.Tensor, activations: tuple[str, ...] = ("leaky_relu", "sigmoid")) -> bool:
    """Whether convolutions of ``x`` and the ``activations`` after them run as one oneDNN call
    (:func:`conv2d_act`, ``POLICY["conv activation"]``)."""
    return policy.choose("conv activation", x.device, x.dtype, runs=lambda how: how != "fused" or (
        x.dim() == 4 and all(compat.fused_conv_runs(x.dtype, act) for act in activations))) == "fused"


def conv2d_act(x: torch.Tensor, conv: nn.Conv2d, activation: str, negative_slope: float = 0.2) -> torch.Tensor:
    """``activation(conv(x))``, ``activation`` "leaky_relu" (with ``negative_slope``), "sigmoid" or "swish" (SiLU),
    as one oneDNN call: the activation runs on each output tile before it is written. Callers check
    :func:`fused_activations`."""
    scalars = (negative_slope,) if activation == "leaky_relu" else ()
    return compat.fused_conv(x, conv.weight, conv.bias, activation, scalars, conv.padding[0])


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


def shift_convs_relu(owner: nn.Module, x: torch.Tensor, conv0: nn.Module, conv1: nn.Module,
                     residual: bool = False) -> torch.Tensor:
    """``conv1(relu(conv0(x)))`` (``+ x`` with ``residual``) at inference for two shift-convs (ELAN's LFE: each a
    one-hot ``weight`` shift and a ``conv1x1``). Where ``POLICY["elan lfe"]`` says so, litesr's compiled kernel
    runs both in one pass over the picture (:func:`litesr.ops.native.lfe`). Otherwise the ReLU runs inside the first
    1×1 conv where oneDNN fuses it (:func:`conv2d_relu`), and the hidden width is padded where
    ``POLICY["shift-conv hidden width"]`` says so. Derived weights are built once per dtype, cached on ``owner``."""
    if policy.choose("elan lfe", x.device, x.dtype, runs=lambda how: how != "fused" or (
            native.conv_kernels_run() and x.dim() == 4
            and x.is_contiguous(memory_format=torch.channels_last))) == "fused":
        packed = inference_weights(owner, "packed", x.dtype, lambda: native.pack_lfe(
            conv0.conv1x1.weight, conv0.conv1x1.bias, conv1.conv1x1.weight, conv1.conv1x1.bias))
        return native.lfe(x, packed, residual)
    multiple = policy.choose("shift-conv hidden width", x.device, x.dtype)
    if multiple and conv0.conv1x1.out_channels % multiple:
        # the same function with zero hidden channels that do not move: zero weights and bias in, zero out
        shift0, w0, b0, shift1, w1, b1 = inference_weights(owner, "padded", x.dtype,
                                                           lambda: _padded(conv0, conv1, multiple, x.dtype))
    else:
        shift0, w0, b0 = conv0.weight, conv0.conv1x1.weight, conv0.conv1x1.bias
        shift1, w1, b1 = conv1.weight, conv1.conv1x1.weight, conv1.conv1x1.bias
    y = conv2d_relu(depthwise_shift(x, shift0), w0, b0)
    y = F.conv2d(depthwise_shift(y, shift1), w1, b1)
    return y.add_(x) if residual else y


def _padded(conv0: nn.Module, conv1: nn.Module, multiple: int, dtype: torch.dtype) -> tuple[torch.Tensor, ...]:
    """Shift kernel, weight and bias of both shift-convs in ``dtype``, the hidden width padded to a multiple of
    ``multiple`` with zero weights in and out and shift taps that do not move."""
    pad = -conv0.conv1x1.out_channels % multiple
    shift1 = torch.cat([conv1.weight, one_hot_shift_kernel(5)[4:].to(conv1.weight).expand(pad, 1, 3, 3)])
    tensors = (conv0.weight, F.pad(conv0.conv1x1.weight, (0, 0, 0, 0, 0, 0, 0, pad)),
               F.pad(conv0.conv1x1.bias, (0, pad)), shift1,
               F.pad(conv1.conv1x1.weight, (0, 0, 0, 0, 0, pad)), conv1.conv1x1.bias)
    return tuple(t.to(dtype) for t in tensors)


def attended_upsampling_compiled(x: torch.Tensor, width: int) -> bool:
    """Whether PAN's upsampling stages on ``x`` (of ``width`` upsampling channels) run in litesr's compiled kernel
    (:func:`attended_upsampling`, ``POLICY["pan upsampling"]``)."""
    return policy.choose("pan upsampling", x.device, x.dtype, runs=lambda how: how != "compiled" or (
        native.conv_kernels_run() and x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last)
        and width <= 64)) == "compiled"


def attended_upsampling(owner: nn.Module, key: str, x: torch.Tensor, factor: int, upconv: nn.Conv2d,
                        attention: nn.Conv2d, hrconv: nn.Conv2d, last: nn.Conv2d | None = None,
                        image: torch.Tensor | None = None) -> torch.Tensor:
    """One of PAN's upsampling stages at inference, ``lrelu(hrconv(lrelu(u · sigmoid(attention(u)))))`` of ``u =
    upconv(nearest_factor(x))``, and for the last stage ``last`` (conv_last) of that plus ``image``: ``upconv`` at
    the low resolution (:func:`nearest_upsample_conv3x3` without its pixel shuffle), the rest in litesr's compiled
    kernel (:func:`litesr.ops.native.pan_upsampling`). Callers check :func:`attended_upsampling_compiled`. Derived
    weights are built once per ``key``, cached on ``owner`` (a module holding all four convs)."""
    kernel, bias, packed = inference_weights(owner, key, x.dtype, lambda: (
        nearest_kernel(upconv.weight, factor).contiguous(memory_format=torch.channels_last),
        upconv.bias.repeat_interleave(factor * factor),
        native.pack_pan_upsampling(attention.weight, attention.bias, hrconv.weight, hrconv.bias,
                                   *((last.weight, last.bias) if last is not None else ()))))
    pre = F.conv2d(x, kernel, bias, padding=1)
    return native.pan_upsampling(pre, factor, packed, None if image is None else image.contiguous())


def scpa_trunk_compiled(x: torch.Tensor, width: int) -> bool:
    """Whether PAN's SCPA blocks on ``x`` (of ``width`` channels a branch) run in litesr's compiled kernel
    (:func:`scpa_trunk`, ``POLICY["pan trunk"]``)."""
    return policy.choose("pan trunk", x.device, x.dtype, runs=lambda how: how != "compiled" or (
        native.conv_kernels_run() and x.dim() == 4 and width <= 24)) == "compiled"


def scpa_trunk(blocks: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """PAN's trunk, its SCPA ``blocks`` one after another, at inference in litesr's compiled kernel
    (:func:`litesr.ops.native.scpa`), on NCHW maps: a channels-last ``x`` is converted once on the way in and the
    result back on the way out. Callers check :func:`scpa_trunk_compiled`. Packed weights are built once per block,
    cached on it."""
    y = x.contiguous()
    for block in blocks:
        y = native.scpa(y, inference_weights(block, "packed", x.dtype, lambda: native.pack_scpa(
            block.conv1_a.weight, block.conv1_b.weight, block.k1[0].weight, block.PAConv.k2.weight,
            block.PAConv.k2.bias, block.PAConv.k3.weight, block.PAConv.k4.weight, block.conv3.weight)))
    return y.contiguous(memory_format=torch.channels_last) if x.is_contiguous(
        memory_format=torch.channels_last) else y


def nearest_kernel(weight: torch.Tensor, factor: int) -> torch.Tensor:
    """The 3×3 kernel, ``factor``² times as many outputs, that a 3×3 ``weight`` becomes on the low-resolution input:
    ``conv3x3(nearest_f(x), weight) == pixel_shuffle(conv3x3(x, nearest_kernel(weight, f)), f)``.

    Output pixel (f·i + a, f·j + b) reads upsampled rows f·i + a + dy (dy = -1, 0, 1), i.e. input rows
    i + ⌊(a + dy) / f⌋: the taps that land on one input pixel add up.
    """
    out_ch, in_ch = weight.shape[:2]
    kernel = weight.new_zeros(out_ch, factor, factor, in_ch, 3, 3)
    for a in range(factor):
        for b in range(factor):
            for dy in range(3):
                for dx in range(3):
                    kernel[:, a, b, :, (a + dy - 1) // factor + 1, (b + dx - 1) // factor + 1] += weight[:, :, dy, dx]
    return kernel.reshape(out_ch * factor * factor, in_ch, 3, 3)


def nearest_upsample_conv3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                             factor: int) -> torch.Tensor:
    """``conv2d(interpolate(x, factor, "nearest"), weight, bias, padding=1)`` computed at the input's resolution:
    one convolution with ``factor``² times the outputs, then a pixel shuffle. No upsampled copy of ``x``, and the
    same multiplications in a shape that runs 1.5-2× faster on a CPU (same sums, added in another order)."""
    bias = None if bias is None else bias.repeat_interleave(factor * factor)
    return F.pixel_shuffle(F.conv2d(x, nearest_kernel(weight, factor), bias, padding=1), factor)
