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
        from .onnx import OnnxModel, check_arch

        model = OnnxModel(weights)
        check_arch(model, arch)
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


#: How a model's forward is computed. ``eager``: PyTorch itself, every device (the default). ``openvino``: the
#: model converted to OpenVINO and compiled per input shape, CPU only (``litesr.openvino``; the optional extra
#: ``litesr[openvino]``). Measured on a 2-core AVX-512 BF16 EPYC with the shipped ELAN-light x4 in bf16: one
#: forward at LR 128² 0.08 s against eager's 0.21 s, at 256² 0.37-0.48 s against 0.63-0.79 s (benchmarks/floor.py);
#: but ``litesr upscale`` end to end, where tiles of about 290² dominate and each new shape compiles (0.6-2 s), it
#: was 7 % faster on a 1920×1284 input (37.2 s against 39.9 s, PNG writing included) and 3 % slower on 960×642. So
#: eager stays the default, and OpenVINO is there for those who measure a gain on their machine.
RUNTIMES = ("eager", "openvino")
DEFAULT_RUNTIME = "eager"


def apply_runtime(model: nn.Module, runtime: str, device: torch.device, precision: str,
                  announce=None) -> nn.Module:
    """``model`` as ``runtime`` computes it: itself for ``eager``, an ``OpenVinoModel`` for ``openvino`` (with
    ``precision`` resolved for the model's architecture, as eager ``auto`` does). ``announce(line)`` hears of a
    first conversion."""
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "eager":
        return model
    from .models.base import SRModel

    device = torch.device(device)
    if device.type != "cpu":
        raise UsageError(f"--runtime {runtime} runs on the CPU, not {device}; use --device cpu or --runtime eager")
    if not isinstance(model, SRModel):
        raise UsageError(f"--runtime {runtime} takes litesr weights (.safetensors/.pth), not "
                         f"{getattr(model, 'path', 'this model')}; drop --runtime to run it as it is")
    from .openvino import OpenVinoModel
    from .runtime import resolve_precision

    return OpenVinoModel(model, precision=resolve_precision(model, device, precision), announce=announce)
