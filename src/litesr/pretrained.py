"""Which weights a command uses: a file the user names, or the weights shipped inside the package."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .errors import NotFoundError, UsageError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"


def shipped_weights(arch: str, scale: int) -> Path | None:
    """Path of the packaged ``<arch>_x<scale>.safetensors``, or None if litesr ships none for that pair."""
    path = WEIGHTS_DIR / f"{arch}_x{scale}.safetensors"
    return path if path.is_file() else None


def available_shipped() -> list[tuple[str, int]]:
    """(arch, scale) pairs with packaged weights."""
    out = []
    for p in sorted(WEIGHTS_DIR.glob("*_x[0-9].safetensors")):
        arch, _, scale = p.stem.rpartition("_x")
        out.append((arch, int(scale)))
    return out


DEFAULT_ARCH = "elan-light"


def resolve_model(
    weights: str | None, arch: str | None, scale: int | None, device: torch.device | str = "cpu"
) -> nn.Module:
    """Load ``weights`` (arch/scale detected unless given); without weights, the shipped model for the request."""
    from .checkpoint import load_model

    if weights and str(weights).lower().endswith(".onnx"):  # an exported graph: run by onnxruntime on the CPU
        from .onnx import OnnxModel

        model = OnnxModel(weights)
        if scale is not None and int(scale) != model.scale:
            raise UsageError(f"{weights} is a x{model.scale} model but x{scale} was requested")
        return model
    if weights:
        return load_model(weights, arch=arch, scale=scale, device=device)
    want_arch = arch or DEFAULT_ARCH
    want_scale = scale or 4
    path = shipped_weights(want_arch.lower(), want_scale)
    if path is None:
        shipped = ", ".join(f"{a} x{s}" for a, s in available_shipped()) or "none yet"
        raise NotFoundError(
            f"no shipped weights for {want_arch} x{want_scale} (shipped: {shipped}); "
            "give a checkpoint (.safetensors, .pth or .pt): --weights PATH on the command line, its path in Python"
        )
    return load_model(path, arch=want_arch, scale=want_scale, device=device)
