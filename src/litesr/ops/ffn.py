"""Linear and feed-forward layers at inference: oneDNN's linear, and each activation computed inside the linear or
convolution before it.

Transformer feed-forwards spend their time in passes over a hidden map twice the width of the tokens: GELU alone
read and wrote it once more after ``fc1``, and ConvFFN's depthwise branch twice more (its GELU, the residual add).
oneDNN applies the GELU, and the add, to each output tile before writing it (``compat.fused_*``), where
``POLICY["feed-forward"]`` says so; the same sums either way (within rounding of the GELU's erf). The plain linear
layers of the token mixers (Q, K, V, output projections) and ``fc2`` run as oneDNN's linear where ``POLICY["linear"]``
says so (:func:`linear`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .. import compat
from . import native, policy
from .derived import inference_weights
from .norm import compiled_affine


def _fused(x: torch.Tensor, weight: torch.Tensor, act: nn.Module) -> bool:
    """Whether this call takes the fused path: the policy says so, no autocast (its casts happen in F.linear),
    the weights in the input's dtype, the exact GELU, and this PyTorch gets the fused ops right."""
    return policy.choose("feed-forward", x.device, x.dtype, runs=lambda how: how != "fused" or (
        not torch.is_autocast_enabled(x.device.type) and weight.dtype == x.dtype and isinstance(act, nn.GELU)
        and act.approximate == "none" and compat.fused_ffn_runs(x.dtype))) == "fused"


def _onednn(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether a linear layer runs as oneDNN's: ``POLICY["linear"]`` says so, the input's rows are contiguous, the
    weights in its dtype, no autocast, and this PyTorch has the op."""
    return policy.choose("linear", x.device, x.dtype, runs=lambda how: how != "onednn" or (
        x.is_contiguous() and weight.dtype == x.dtype and not torch.is_autocast_enabled(x.device.type)
        and compat.fused_ffn_runs(x.dtype))) == "onednn"


def linear(x: torch.Tensor, layer: nn.Linear) -> torch.Tensor:
    """``layer(x)``, as oneDNN's linear where :func:`_onednn` says so (the same sums)."""
    return compat.onednn_linear(x, layer.weight, layer.bias) if _onednn(x, layer.weight) else layer(x)


def linear_weights(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``F.linear(x, weight, bias)`` (weights derived for inference), as oneDNN's linear where :func:`_onednn`
    says so."""
    return compat.onednn_linear(x, weight, bias) if _onednn(x, weight) else F.linear(x, weight, bias)


def mlp(x: torch.Tensor, fc1: nn.Linear, act: nn.Module, fc2: nn.Linear) -> torch.Tensor:
    """``fc2(act(fc1(x)))``: SwinIR's MLP."""
    if _fused(x, fc1.weight, act):
        return linear(compat.fused_linear_gelu(x, fc1.weight, fc1.bias), fc2)
    return fc2(act(fc1(x)))


def _depthwise(conv: nn.Module) -> bool:
    return (isinstance(conv, nn.Conv2d) and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1) and conv.dilation == (1, 1) and conv.kernel_size[0] == conv.kernel_size[1]
            and conv.kernel_size[0] % 2 == 1 and conv.padding == (conv.kernel_size[0] // 2,) * 2)


def _fusable_branch(branch: nn.Sequential) -> bool:
    """``[depthwise conv, exact GELU]`` (HiT-SRF) or ``[depthwise conv, exact GELU, depthwise conv]`` (GRFormer)."""
    layers = list(branch)
    return (len(layers) in (2, 3) and _depthwise(layers[0]) and isinstance(layers[1], nn.GELU)
            and layers[1].approximate == "none" and (len(layers) == 2 or _depthwise(layers[2])))


def _compiled(x: torch.Tensor, fc1: nn.Linear, act: nn.Module, branch: nn.Sequential) -> bool:
    """Whether a ConvFFN runs in litesr's compiled kernel: ``POLICY["conv feed-forward"]`` says so for the side of
    its first depthwise conv, the kernel runs here, the exact GELU, a fusable branch with sides up to 7, fp32
    contiguous tokens."""
    side = branch[0].kernel_size[0] if isinstance(branch[0], nn.Conv2d) else None
    return policy.choose("conv feed-forward", x.device, x.dtype, side, runs=lambda how: how != "compiled" or (
        native.conv_kernels_run() and x.dim() == 4 and x.is_contiguous() and fc1.weight.dtype == x.dtype
        and isinstance(act, nn.GELU) and act.approximate == "none" and _fusable_branch(branch)
        and all(layer.kernel_size[0] <= 7 for layer in branch if isinstance(layer, nn.Conv2d)))) == "compiled"


def _packed_conv_ffn(fc1: nn.Linear, branch: nn.Sequential, fc2: nn.Linear) -> tuple:
    dw1, dw2 = branch[0], branch[2] if len(branch) == 3 else None
    return native.pack_conv_ffn(fc1.weight, fc1.bias, dw1.weight, dw1.bias, None if dw2 is None else dw2.weight,
                                None if dw2 is None else dw2.bias, fc2.weight, fc2.bias)


def post_norm_fused(x: torch.Tensor, fc1: nn.Linear, act: nn.Module, branch: nn.Sequential,
                    norm: nn.LayerNorm) -> bool:
    """Whether ``x + norm(ConvFFN(x))`` runs as one call of litesr's compiled kernel: the ConvFFN does
    (:func:`_compiled`), ``POLICY["post-norm residual"]`` says so, and the norm has an affine of ``x``'s dtype."""
    return (policy.choose("post-norm residual", x.device, x.dtype) == "compiled"
            and compiled_affine(norm, x.dtype) and _compiled(x, fc1, act, branch))


def conv_ffn(x: torch.Tensor, fc1: nn.Linear, act: nn.Module, branch: nn.Sequential, fc2: nn.Linear,
             owner: nn.Module | None = None, norm: nn.LayerNorm | None = None) -> torch.Tensor:
    """``h = act(fc1(x)); h = h + branch(h); fc2(h)`` on (B, H, W, C) tokens, ``branch`` a depthwise stack run on
    the image (a channels-last view of ``h``): GRFormer's and HiT-SRF's ConvFFN; with ``norm`` ``x + norm(that)``
    (HiT-SRF's post-norm residual). With ``owner`` (the module holding the layers, where the derived weights are
    cached) it runs in litesr's compiled kernel, the norm and the add inside it, where :func:`_compiled` says so."""
    if norm is not None and not (owner is not None and post_norm_fused(x, fc1, act, branch, norm)):
        return x + norm(conv_ffn(x, fc1, act, branch, fc2, owner))
    if owner is not None and _compiled(x, fc1, act, branch):
        packed = inference_weights(owner, "packed", x.dtype, lambda: _packed_conv_ffn(fc1, branch, fc2))
        return native.conv_ffn(x, packed, norm=None if norm is None else (norm.weight, norm.bias, norm.eps))
    if _fused(x, fc1.weight, act) and _fusable_branch(branch):
        h = compat.fused_linear_gelu(x, fc1.weight, fc1.bias)  # (B, H, W, hidden)
        image = h.permute(0, 3, 1, 2)  # a channels-last NCHW view
        conv = branch[0]
        y = compat.fused_depthwise_gelu(image, conv.weight, conv.bias)
        if len(branch) == 3:  # h + conv2(gelu(conv1(h))): the add inside the second conv
            out = compat.fused_depthwise_add(y, image, branch[2].weight, branch[2].bias).permute(0, 2, 3, 1)
        else:  # h + gelu(conv(h))
            out = y.permute(0, 2, 3, 1).add_(h)
        return linear(out, fc2)
    h = act(fc1(x))
    h = h + branch(h.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)
    return fc2(h)
