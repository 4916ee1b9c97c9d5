"""Which weights a command uses: the one place a user's string becomes a model (a file, a name from litesr's table
of pretrained weights, an exported ONNX graph, or nothing: the default weights)."""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .errors import NotFoundError, UnknownNameError, UsageError
from .runner import Runner
from .zoo import WEIGHTS_DIR  # noqa: F401 (where the shipped files are, for callers that imported it from here)

DEFAULT_ARCH = "elan-light"
#: Suffixes that say a string is meant as a file, so a missing one is "not found" rather than "unknown name".
FILE_SUFFIXES = (".safetensors", ".pth", ".pt", ".onnx", ".ckpt", ".bin")


def default_weights(arch: str | None, scale: int | None):
    """The table entry run when no weights are named: the default of ``arch`` (default ELAN-light) at ``scale``
    (default 4). An unknown architecture, or a pair with no default, is a one-line error that lists the choices."""
    from . import zoo
    from .models.registry import VARIANTS, canonical_name, resolve_architecture

    key = canonical_name(arch or DEFAULT_ARCH)
    want_scale = int(scale or 4)
    resolve_architecture(arch or DEFAULT_ARCH)  # an unknown name: the one-line error that lists the architectures
    variant = key if key in VARIANTS else next((v.name for v in VARIANTS.values() if v.arch == key), key)
    entry = zoo.default_for(variant, want_scale)
    if entry is None:
        have = [e.name for e in zoo.entries().values() if e.arch == variant]
        listed = f"named weights for {variant}: {', '.join(have)}" if have else f"litesr has no weights for {variant}"
        raise NotFoundError(f"no default weights for {variant} x{want_scale} ({listed}); give a checkpoint or a "
                            "name: --weights PATH|NAME on the command line (see `litesr models`), its path in Python")
    return entry


def weights_path(spec: str | os.PathLike, scale: int | None = None) -> tuple[Path, object | None]:
    """The file ``spec`` means, and its table entry if it is a name: an existing path is itself; a name from the
    table (``elan-light-x4-frl``, ``elan-light-x4``, or a variant at ``scale``) is its file, downloaded and
    checked first if need be. Anything else is a one-line error: a missing file, or an unknown name (listed)."""
    from . import zoo

    path = Path(os.fspath(spec)).expanduser()
    if path.exists():
        return path, None
    text = os.fspath(spec)
    entry = zoo.find(text, scale) if isinstance(text, str) else None
    if entry is not None:
        return zoo.fetch(entry), entry
    from .models.registry import ARCHITECTURES, VARIANTS, canonical_name

    if canonical_name(text) in set(VARIANTS) | set(ARCHITECTURES):  # a variant without a default
        entry = default_weights(text, scale)  # here: the error that lists the weights it has
        return zoo.fetch(entry), entry
    if path.suffix.lower() in FILE_SUFFIXES or os.sep in str(text) or "/" in str(text):
        raise NotFoundError(f"weights file not found: {path}")
    raise UnknownNameError(f"{text!r} is neither a file nor a name of litesr's weights; names: "
                           f"{', '.join(zoo.names())} (see `litesr models`)")


def resolve_model(
    weights: str | os.PathLike | None, arch: str | None, scale: int | None, device: torch.device | str = "cpu"
) -> nn.Module | Runner:
    """The model a user's choice means. ``weights``: a checkpoint path (arch/scale detected unless given), an
    exported ``.onnx`` (its :class:`~litesr.onnx.OnnxRunner`: onnxruntime runs it), a name from the table
    (``elan-light-x4-frl``; ``elan-light-x4`` or, with ``scale``, ``elan-light`` for a pair's default), or None: the
    default weights of ``arch``/``scale`` (ELAN-light x4 when neither is given)."""
    from .checkpoint import load_model

    if weights is not None and os.fspath(weights).lower().endswith(".onnx"):  # an exported graph: onnxruntime, CPU
        from .onnx import OnnxRunner, check_arch

        model = OnnxRunner(weights)
        check_arch(model, arch)
        if scale is not None and int(scale) != model.scale:
            raise UsageError(f"{weights} is a x{model.scale} model but x{scale} was requested")
        return model
    if weights is None or os.fspath(weights) == "":
        entry = default_weights(arch, scale)
        path = weights_path(entry.name)[0]
    else:
        path, entry = weights_path(weights, scale)
    if entry is not None:  # its table entry knows the scale (PAN x2/x3 files cannot tell)
        scale = scale if scale is not None else entry.scale
    model = load_model(path, arch=arch, scale=scale, device=device)
    if entry is not None:
        model.weights_name = entry.name
    return model


#: How a model's forward is computed. ``eager``: PyTorch itself, every device (the default). ``openvino``: the
#: model converted to OpenVINO and compiled per input shape, CPU only (``litesr.openvino``; the optional extra
#: ``litesr[openvino]``). Measured on a 2-core AVX-512 BF16 EPYC with the shipped ELAN-light x4 in bf16: one
#: forward at LR 128² 0.08 s against eager's 0.21 s, at 256² 0.37-0.48 s against 0.63-0.79 s (benchmarks/floor.py);
#: but ``litesr upscale`` end to end, where tiles of about 290² dominate and each new shape compiles (0.6-2 s), it
#: was 7 % faster on a 1920×1284 input (37.2 s against 39.9 s, PNG writing included) and 3 % slower on 960×642. So
#: eager stays the default, and OpenVINO is there for those who measure a gain on their machine.
RUNTIMES = ("eager", "openvino")
DEFAULT_RUNTIME = "eager"


def apply_runtime(model: nn.Module | Runner, runtime: str, device: torch.device, precision: str,
                  announce=None) -> nn.Module | Runner:
    """``model`` as ``runtime`` computes it: itself for ``eager`` (``litesr.runner.as_runner`` runs it), an
    :class:`~litesr.openvino.OpenVinoRunner` for ``openvino`` (with ``precision`` resolved for the model's
    architecture, as eager ``auto`` does). ``announce(line)`` hears of a first conversion."""
    if runtime not in RUNTIMES:
        raise UsageError(f"runtime must be one of {', '.join(RUNTIMES)}, not {runtime!r}")
    if runtime == "eager":
        return model
    from .models.base import SRModel

    device = torch.device(device)
    if device.type != "cpu":
        raise UsageError(f"--runtime {runtime} runs on the CPU, not {device}; use --device cpu or --runtime eager")
    if not isinstance(model, SRModel):
        from .onnx import OnnxRunner

        raise UsageError(f"--runtime {runtime} takes litesr weights (.safetensors/.pth), not "
                         f"{model.path if isinstance(model, OnnxRunner) else 'this model'}; drop --runtime to run it "
                         "as it is")
    from .device import resolve_precision
    from .openvino import OpenVinoRunner

    return OpenVinoRunner(model, precision=resolve_precision(model, device, precision), announce=announce)
