"""Layer norm at inference: a bf16/fp16 input normalised in float32 and rounded back, where the policy says so; a
post-norm residual ``x + norm(a)`` in one pass of litesr's compiled kernel."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from torch import nn

from . import native, policy


def layer_norm(x: torch.Tensor, normalized_shape: tuple[int, ...], weight: torch.Tensor | None,
               bias: torch.Tensor | None, eps: float) -> torch.Tensor:
    """``F.layer_norm``; where ``POLICY["layer norm"]`` says "float32 inside" (a half-precision input on a CPU, no
    gradients), the input is cast to float32, normalised and rounded back to its dtype: the arithmetic of the
    half-precision kernel (float32 inside), in less time."""
    if policy.choose("layer norm", x.device, x.dtype) == "float32 inside":
        weight = None if weight is None else weight.float()
        bias = None if bias is None else bias.float()
        return F.layer_norm(x.float(), normalized_shape, weight, bias, eps).to(x.dtype)
    return F.layer_norm(x, normalized_shape, weight, bias, eps)


def compiled_affine(norm: nn.LayerNorm, dtype: torch.dtype) -> bool:
    """Whether ``norm`` has what the compiled post-norm residuals take: a weight and a bias, of ``dtype``."""
    return norm.weight is not None and norm.bias is not None and norm.weight.dtype == dtype


def plus_normed(x: torch.Tensor, a: torch.Tensor, norm: nn.LayerNorm) -> torch.Tensor:
    """``x + norm(a)`` over the channels of (B, H, W, C) maps (a post-norm block's residual). Where ``POLICY["post-norm
    residual"]`` says so, one pass of litesr's compiled kernel (:func:`litesr.ops.native.residual_norm`) instead of
    the norm's pass over memory and the add's."""
    if policy.choose("post-norm residual", x.device, x.dtype, runs=lambda how: how != "compiled" or (
            native.conv_kernels_run() and compiled_affine(norm, x.dtype) and x.dim() == 4 and x.is_contiguous()
            and a.shape == x.shape and a.stride(-1) == 1 and a.stride(-2) == x.shape[-1])) == "compiled":
        return native.residual_norm(x, a, (norm.weight, norm.bias, norm.eps))
    return x + norm(a)
