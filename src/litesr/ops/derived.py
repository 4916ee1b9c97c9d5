"""Tensors a module derives from its weights for inference (a BatchNorm folded into a conv, padded or cast weights,
a position bias), built once and built again when a weight changes."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
from torch import nn

from .. import compat
from .policy import is_exporting

T = TypeVar("T")


def inference_weights(module: nn.Module, key: str, dtype: torch.dtype, build: Callable[[], T]) -> T:
    """What ``build()`` derives from ``module``'s parameters and buffers (BatchNorm folded into a conv, weights
    padded or cast to ``dtype``, a position bias), built once per ``key`` and dtype at inference and built again
    whenever one of those tensors was replaced or changed in place (an optimizer or EMA step, ``load_state_dict``,
    ``.to()``: each replaces a tensor or bumps its version counter). A change made through ``.data`` bumps no
    version: call ``model.eval()`` after one, which drops what was built (:meth:`SRModel.train`).

    In training, with gradients on and while tracing or exporting, ``build()`` runs every call, so gradients and
    graphs see the derivation. ELAN-light derived its BatchNorm fold and the LFE's padded bf16 weights anew every
    forward (~600 small ops and allocations); cached, its bf16 forward took 0.042 against 0.045 s at LR 64²,
    0.126 against 0.132 s at 128² and 0.468 against 0.471 s at 256² (alternating-order A/B, medians of 24, same
    bits; fp32 unchanged at 0.220 s at 128²; 2-core EPYC AVX-512 BF16, 2026-11-30).
    """
    if module.training or torch.is_grad_enabled() or is_exporting():
        return build()
    try:
        stamp = [_Stamp(t) for t in (*module.parameters(), *module.buffers())]
    except RuntimeError:  # inference tensors (a model built under inference_mode) keep no version: derive anew
        return build()
    cache = module.__dict__.setdefault("_inference_weights", {})
    hit = cache.get((key, dtype))
    if hit is None or hit[0] != stamp:
        with torch.inference_mode(False), torch.no_grad():  # ordinary tensors, usable outside inference mode too
            hit = cache[(key, dtype)] = (stamp, build())
    return hit[1]


class _Stamp:
    """A tensor's storage, dtype and version when a derivation was built. It holds the storage, so no later tensor
    can be given its address: an equal stamp means the same storage, unchanged (``.to()`` on a module swaps a
    parameter's ``.data`` for new storage; ``load_state_dict`` and optimizer steps bump the version)."""

    __slots__ = ("held", "version")

    def __init__(self, t: torch.Tensor) -> None:
        self.held, self.version = t.detach(), compat.version(t)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, _Stamp) and self.version == other.version and self.held.dtype == other.held.dtype
                and self.held.device == other.held.device and self.held.data_ptr() == other.held.data_ptr())
