"""Every private PyTorch API litesr uses, in one place, each probed once with a plain fallback.

litesr runs on the PyTorch range its ``pyproject.toml`` allows; a few fast paths use APIs that PyTorch does not
promise to keep (underscore names). Each is wrapped here: the first call probes whether this build has it and
computes it right (on a tiny input, against the public computation), and every later call takes the private
path only if the probe passed, else the public one. A new PyTorch that drops or changes one of them costs speed,
never a crash or a wrong result, and touches this file only. ``probes()`` reports which pass
(``tests/test_compat.py`` prints it).
"""

from __future__ import annotations

from functools import lru_cache
from typing import Callable

import torch
import torch.nn.functional as F


def probes() -> dict[str, bool]:
    """Which private APIs this PyTorch build offers and gets right: name → passes."""
    return {
        "torch._softmax on oneDNN tensors (bf16)": onednn_softmax_runs(torch.bfloat16),
        "torch._softmax on oneDNN tensors (fp32)": onednn_softmax_runs(torch.float32),
        "torch._softmax_backward_data": _softmax_backward_runs(),
        "torch.ops.mkldnn._convolution_pointwise (bf16)": fused_conv_relu_runs(torch.bfloat16),
        "torch.ops.mkldnn._convolution_pointwise leaky_relu/sigmoid (fp32)": all(
            fused_conv_runs(torch.float32, act) for act in ("leaky_relu", "sigmoid")),
        "torch.ops.mkldnn._linear_pointwise and _convolution_pointwise gelu/add (fp32)": fused_ffn_runs(torch.float32),
        "Tensor._version": _version_runs(),
        "torch._foreach_lerp_": _foreach_lerp_runs(),
        "LRScheduler._last_lr": _last_lr_runs(),
        "torch.cpu._is_avx512_bf16_supported / _is_amx_tile_supported": _cpu_probes_exist(),
    }


# --------------------------------------------------------------------------------------------- softmax


def onednn_softmax(x: torch.Tensor) -> torch.Tensor:
    """softmax over the last dim computed by oneDNN (``x`` converted to a oneDNN tensor and back); callers check
    :func:`onednn_softmax_runs` first."""
    return torch._softmax(x.to_mkldnn(), -1, False).to_dense()


@lru_cache(maxsize=None)
def onednn_softmax_runs(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build and CPU run oneDNN's softmax in ``dtype`` (and get it right)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch, "_softmax"):
        return False
    x = torch.tensor([[0.0, 1.0, 2.0, 3.0]])
    try:
        out = onednn_softmax(x.to(dtype)).float()
    except (RuntimeError, TypeError):
        return False
    return torch.allclose(out, torch.softmax(x, -1), atol=1e-2)


def softmax_backward(grad: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """The gradient of a softmax over the last dim, from its output ``out`` and the output's gradient ``grad``:
    ATen's kernel where it runs, else ``out · (grad − Σ grad·out)``."""
    if _softmax_backward_runs():
        return torch._softmax_backward_data(grad, out, -1, out.dtype)
    return out * (grad - (grad * out).sum(-1, keepdim=True))


@lru_cache(maxsize=None)
def _softmax_backward_runs() -> bool:
    if not hasattr(torch, "_softmax_backward_data"):
        return False
    out = torch.softmax(torch.tensor([[0.5, -1.0, 2.0]]), -1)
    grad = torch.tensor([[1.0, 2.0, -0.5]])
    try:
        got = torch._softmax_backward_data(grad, out, -1, out.dtype)
    except (RuntimeError, TypeError):
        return False
    return torch.allclose(got, out * (grad - (grad * out).sum(-1, keepdim=True)), atol=1e-6)


# --------------------------------------------------------------------------------------------- convolution


def fused_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, activation: str = "relu",
               scalars: tuple[float, ...] = (), padding: int = 0) -> torch.Tensor:
    """``activation(conv2d(x, weight, bias, padding=padding))`` (stride 1; ``activation`` one of oneDNN's post-ops:
    "relu", "leaky_relu" with its slope in ``scalars``, "sigmoid", "swish" (SiLU)) as one oneDNN call; callers check
    :func:`fused_conv_runs` first."""
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [padding, padding], [1, 1], [1, 1], 1,
                                                   activation, list(scalars), None)


def fused_conv_relu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``relu(conv2d(x, weight, bias))`` (stride 1, no padding) as one oneDNN call (:func:`fused_conv`)."""
    return fused_conv(x, weight, bias)


_ACTIVATIONS = {"relu": (F.relu, ()), "leaky_relu": (lambda y: F.leaky_relu(y, 0.2), (0.2,)),
                "sigmoid": (torch.sigmoid, ()), "swish": (F.silu, ())}


@lru_cache(maxsize=None)
def fused_conv_runs(dtype: torch.dtype, activation: str = "relu") -> bool:
    """Whether this PyTorch build has oneDNN's fused convolution + ``activation`` for ``dtype`` (and it gets a small
    padded case right)."""
    if not torch.backends.mkldnn.is_available() or not hasattr(torch.ops.mkldnn, "_convolution_pointwise"):
        return False
    reference, scalars = _ACTIVATIONS[activation]
    x = torch.linspace(-1, 1, 32).reshape(1, 2, 4, 4).to(dtype)
    w, b = torch.linspace(-1, 1, 54).reshape(3, 2, 3, 3).to(dtype), torch.tensor([0.5, -0.5, 0.0]).to(dtype)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        try:
            fused = fused_conv(x, w, b, activation, scalars, padding=1)
        except (RuntimeError, NotImplementedError, TypeError):
            return False
        return torch.allclose(fused.float(), reference(F.conv2d(x, w, b, padding=1)).float(), rtol=1e-2, atol=1e-5)


def fused_conv_relu_runs(dtype: torch.dtype) -> bool:
    """Whether :func:`fused_conv_relu` runs here for ``dtype``."""
    return fused_conv_runs(dtype, "relu")


def onednn_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``linear(x, weight, bias)`` as oneDNN's linear (no post-op); callers check :func:`fused_ffn_runs`."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "none", [], "")


def fused_linear_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``gelu(linear(x, weight, bias))`` (exact GELU) as one oneDNN call; callers check :func:`fused_ffn_runs`."""
    return torch.ops.mkldnn._linear_pointwise(x, weight, bias, "gelu", [], "none")


def fused_depthwise_gelu(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``gelu(conv2d(x, weight, bias, padding=k // 2, groups=C))`` (exact GELU) as one oneDNN call."""
    pad = weight.shape[-1] // 2
    return torch.ops.mkldnn._convolution_pointwise(x, weight, bias, [pad, pad], [1, 1], [1, 1], x.shape[1], "gelu",
                                                   [], "none")


def fused_depthwise_add(x: torch.Tensor, other: torch.Tensor, weight: torch.Tensor,
                        bias: torch.Tensor | None) -> torch.Tensor:
    """``conv2d(x, weight, bias, padding=k // 2, groups=C) + other`` as one oneDNN call."""
    pad = weight.shape[-1] // 2
    return torch.ops.mkldnn._convolution_pointwise(x, other, weight, bias, [pad, pad], [1, 1], [1, 1], x.shape[1],
                                                   "add", 1.0, None, [], None)


@lru_cache(maxsize=None)
def fused_ffn_runs(dtype: torch.dtype) -> bool:
    """Whether this PyTorch build has oneDNN's linear (plain and + GELU) and depthwise conv + GELU / + add for
    ``dtype``, and they get a small case right."""
    if not torch.backends.mkldnn.is_available() or not all(
            hasattr(torch.ops.mkldnn, op) for op in ("_linear_pointwise", "_convolution_pointwise")):
        return False
    x = torch.linspace(-2, 2, 96).reshape(1, 4, 4, 6).to(dtype)
    w, b = torch.linspace(-1, 1, 48).reshape(8, 6).to(dtype), torch.linspace(-0.5, 0.5, 8).to(dtype)
    dw, db = torch.linspace(-1, 1, 72).reshape(8, 1, 3, 3).to(dtype), torch.linspace(0.5, -0.5, 8).to(dtype)
    with torch.no_grad(), torch.autocast("cpu", enabled=False):
        try:
            h = fused_linear_gelu(x, w, b)
            image = h.permute(0, 3, 1, 2)
            got = [h, fused_depthwise_gelu(image, dw, db), fused_depthwise_add(image, image, dw, db),
                   onednn_linear(x, w, b)]
        except (RuntimeError, NotImplementedError, TypeError):
            return False
        want_h = F.gelu(F.linear(x, w, b))
        conv = F.conv2d(want_h.permute(0, 3, 1, 2), dw, db, padding=1, groups=8)
        want = [want_h, F.gelu(conv), conv + want_h.permute(0, 3, 1, 2), F.linear(x, w, b)]
        return all(torch.allclose(g.float(), v.float(), rtol=1e-2, atol=1e-4) for g, v in zip(got, want))


# --------------------------------------------------------------------------------------------- tensors, training


class _NoVersion:
    """What :func:`version` gives without ``Tensor._version``: equal to nothing, so no derived value is reused."""

    def __eq__(self, other: object) -> bool:
        return False

    __hash__ = object.__hash__


def version(t: torch.Tensor) -> object:
    """The tensor's in-place modification counter (``Tensor._version``: bumped by every in-place write, optimizer
    steps and ``load_state_dict`` included). Without it, a value that compares unequal to everything: caches keyed
    on it then recompute every time — slower, never stale."""
    return t._version if _version_runs() else _NoVersion()


@lru_cache(maxsize=None)
def _version_runs() -> bool:
    with torch.inference_mode(False):  # an inference tensor keeps no version: probe an ordinary one
        t = torch.zeros(2)
        try:
            before = t._version
            t.add_(1)
            return isinstance(before, int) and t._version != before
        except (AttributeError, RuntimeError):
            return False


def foreach_lerp_(averaged: list[torch.Tensor], current: list[torch.Tensor], weight: float) -> None:
    """``a += weight · (c − a)`` for each pair, in one fused call where PyTorch has it."""
    if _foreach_lerp_runs():
        torch._foreach_lerp_(averaged, current, weight)
        return
    for a, c in zip(averaged, current):
        a.lerp_(c, weight)


@lru_cache(maxsize=None)
def _foreach_lerp_runs() -> bool:
    a, c = [torch.zeros(3)], [torch.ones(3)]
    try:
        torch._foreach_lerp_(a, c, 0.25)
    except (AttributeError, RuntimeError, TypeError):
        return False
    return torch.allclose(a[0], torch.full((3,), 0.25))


def set_last_lr(scheduler: torch.optim.lr_scheduler.LRScheduler, lrs: list[float]) -> None:
    """Make ``scheduler.get_last_lr()`` report ``lrs`` (after the optimizer's lrs were changed by hand); where the
    scheduler keeps no ``_last_lr`` there is nothing to update."""
    if _last_lr_runs():
        scheduler._last_lr = list(lrs)


@lru_cache(maxsize=None)
def _last_lr_runs() -> bool:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)
    if not hasattr(sched, "_last_lr"):
        return False
    sched._last_lr = [0.25]
    try:
        return sched.get_last_lr() == [0.25]
    except Exception:  # a scheduler that computes get_last_lr otherwise
        return False


# --------------------------------------------------------------------------------------------- the CPU


def _cpu_feature_probes() -> list[Callable[[], bool]]:
    names = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return [probe for probe in (getattr(torch.cpu, name, None) for name in names) if callable(probe)]


def _cpu_probes_exist() -> bool:
    return bool(_cpu_feature_probes())


@lru_cache(maxsize=None)
def cpu_has_native_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX-512 BF16 or AMX): PyTorch's probes where it has them, else the
    CPU flags Linux reports."""
    probes = _cpu_feature_probes()
    if probes:
        return any(probe() for probe in probes)
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
