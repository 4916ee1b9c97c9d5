"""Layer norm at inference: a bf16/fp16 input normalised in float32 and rounded back, where the policy says so."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from . import policy


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
