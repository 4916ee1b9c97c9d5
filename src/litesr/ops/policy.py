"""When litesr's fast paths may run: while a graph is traced, compiled or exported, and where the compiled kernels
may run."""

from __future__ import annotations

import torch

from . import native


def is_exporting() -> bool:
    """True while a graph is traced, compiled or exported: sizes must then flow through the graph as values
    (no size-keyed caches, no Python branches on sizes), or the graph freezes the size it was traced at."""
    return torch.jit.is_tracing() or torch.compiler.is_compiling() or torch.onnx.is_in_onnx_export()


def native_inference(device: torch.device) -> bool:
    """Whether litesr's compiled kernels may run now: inference on the CPU (no gradients, no tracing, compiling or
    exporting, which cannot see into them) where they were built and checked."""
    return (device.type == "cpu" and not torch.is_grad_enabled() and not is_exporting()
            and native.window_attention_runs())
