"""What ``litesr.upscale``, the tiler and ``litesr eval`` run: a :class:`Runner`, built once, that states everything
they need to know about it, whatever computes it.

:class:`TorchRunner` runs an ``nn.Module`` in PyTorch (``--runtime eager``); ``litesr.onnx.OnnxRunner`` runs an
exported graph in onnxruntime (``--weights model.onnx``); ``litesr.openvino.OpenVinoRunner`` runs a converted model
in OpenVINO (``--runtime openvino``). :func:`as_runner` is the one place a model becomes a runner.
"""

from __future__ import annotations

import abc

import torch
from torch import nn

from .device import check_precision, precision_context, resolve_precision


class Runner(abc.ABC):
    """A super-resolution forward and what the tiler, ``upscale`` and ``eval`` need to know about it, fixed when it is
    built (the precision above all: ``auto`` is resolved then, once, never per image or tile).

    Calling it: NCHW float in [0, 1], on any device → NCHW float32, ``scale`` times larger, not clamped, on
    :attr:`device`.
    """

    #: Output side ÷ input side.
    scale: int
    #: Input sides that are multiples of this need no padding inside; tile windows start on this grid.
    size_multiple: int = 1
    #: The fewest LR pixels of context a tile needs on each side to agree with the whole image.
    tile_context: int = 0
    #: The LR context a tile gets when no overlap is asked (0: the tiler's default; ``Architecture.tile_overlap``).
    tile_overlap: int = 0
    #: The LR tile the command line takes (0: the tiler's default; ``Architecture.base_tile``).
    base_tile: int = 0
    #: The LR tile to take where freed memory blocks are reused (0: the tiler's default; ``Architecture.large_tile``).
    large_tile: int = 0
    #: Compiled for each input shape: the tiler then gives every tile of an image one window size.
    static_shape: bool = False
    #: Where its input goes and its output comes back.
    device: torch.device = torch.device("cpu")
    #: The precision it computes in: ``fp32``, ``bf16`` or ``fp16`` (never ``auto``).
    precision: str = "fp32"
    #: What it runs, as tables name it (the variant: ``elan-light``).
    label: str
    #: The architecture family it computes, as ``litesr eval --json`` records it (``elan``).
    arch: str
    #: What computes it where tables say so after the label (``OpenVINO bf16``); empty for PyTorch and onnxruntime.
    runtime: str = ""

    @abc.abstractmethod
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        """The forward of one NCHW batch (see the class)."""

    def __repr__(self) -> str:
        runtime = f", {self.runtime}" if self.runtime else ""
        return f"{type(self).__name__}({self.label} x{self.scale}, {self.device} {self.precision}{runtime})"


class TorchRunner(Runner):
    """An ``nn.Module`` run by PyTorch on ``device`` (default: where its parameters are; the module is not moved),
    under autocast to ``precision`` (``auto`` resolved here for its architecture and the device).

    A litesr model states its scale, size multiple and tile context; any other module states ``scale`` (or is
    given one) and may state ``size_multiple`` and ``tile_context`` as attributes: this is the one place they are
    looked for.
    """

    def __init__(self, model: nn.Module, device: str | torch.device | None = None, precision: str = "fp32", *,
                 scale: int | None = None) -> None:
        self.model = model
        if device is None:
            device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = torch.device(device)
        self.precision = resolve_precision(model, self.device, precision)
        self.scale = int(model.scale) if hasattr(model, "scale") or scale is None else int(scale)
        self.size_multiple = int(getattr(model, "size_multiple", 1))
        self.tile_context = int(getattr(model, "tile_context", 0))
        self.tile_overlap = int(getattr(model, "tile_overlap", 0))
        self.base_tile = int(getattr(model, "base_tile", 0))
        self.large_tile = int(getattr(model, "large_tile", 0))

    @property
    def label(self) -> str:
        from .checkpoint import model_label

        return model_label(self.model)

    @property
    def arch(self) -> str:
        return getattr(self.model, "arch_name", "") or type(self.model).__name__

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        with precision_context(self.device, self.precision):
            return self.model(x.to(self.device)).float()


def as_runner(model: nn.Module | Runner, device: str | torch.device | None = None, precision: str = "fp32", *,
              scale: int | None = None) -> Runner:
    """What runs ``model``: a :class:`TorchRunner` of a module, on ``device`` in ``precision`` (``scale``: for a
    module that does not state one). A runner is itself, built with its own device and precision: ``precision`` is
    only checked to be one that could be asked for on ``device`` (default: the runner's), as for a module."""
    if isinstance(model, Runner):
        check_precision(precision, model.device if device is None else torch.device(device))
        return model
    if isinstance(model, nn.Module):
        return TorchRunner(model, device, precision, scale=scale)
    raise TypeError(f"expected a torch nn.Module or a litesr Runner, got {type(model).__name__}")
