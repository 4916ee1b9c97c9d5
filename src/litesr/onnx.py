"""ONNX export of any litesr model with dynamic height and width, and a runner of exported files in onnxruntime.

Needs the optional extra: ``pip install "litesr[onnx]"`` (onnx, onnxruntime).

Export uses the TorchScript-based exporter (``torch.onnx.export(dynamo=False)``) at opset 18 (ESRT's ``F.fold``
needs it). Sizes flow through the graph as values: while exporting, the models pad with one ``F.pad`` computed
from the traced size and build window orders/masks from it (``litesr.ops.policy.is_exporting``), so the graph
is not frozen at the size it was traced at. Every export is then *checked*: onnxruntime runs it at two sizes
(one not a multiple of any window) and its output must match PyTorch's within ``EXPORT_TOLERANCE`` (relative to
the largest output value), or the export fails instead of writing a silently wrong file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import LitesrError, NotFoundError, UsageError
from .runner import Runner

#: max|onnxruntime − PyTorch| ≤ EXPORT_TOLERANCE · max|PyTorch| at every checked size.
EXPORT_TOLERANCE = 1e-4
DEFAULT_OPSET = 18
#: LR sizes every export is checked at: a window multiple and an odd size that exercises the in-graph padding.
CHECK_SIZES = ((48, 64), (37, 53))


class ExportError(LitesrError, RuntimeError):
    """The exported graph does not reproduce the PyTorch model (one line: where and by how much)."""


class OnnxFileError(LitesrError, ValueError):
    """An ONNX file cannot be read (empty, truncated, corrupt, or not ONNX); the message names the file."""


class MissingExtraError(LitesrError, ImportError):
    """onnx/onnxruntime are not installed: the message names the extra to install."""


def _require(module: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingExtraError(f'{module} is not installed; ONNX support needs the optional extra: '
                                'pip install "litesr[onnx]"') from exc


def export_onnx(model: nn.Module, path: str | os.PathLike, opset: int = DEFAULT_OPSET,
                check_sizes=CHECK_SIZES, trace_size: tuple[int, int] = (64, 64)) -> Path:
    """Export ``model`` (fp32, eval) to ``path`` with dynamic batch, height and width; check it; return the path.

    The file records ``arch``, ``scale`` and ``size_multiple`` as metadata, which :class:`OnnxRunner` reads.
    """
    onnx = _require("onnx")
    _require("onnxruntime")  # the export is checked with it before it is written
    path = Path(path)
    model = model.float().eval().cpu()
    x = torch.rand(1, 3, *trace_size)
    from .io import atomic_path

    with atomic_path(path) as tmp:  # written beside ``path`` and renamed over it once checked; deleted on failure
        with torch.no_grad(), warnings.catch_warnings():
            # the tracer warns that size arithmetic "might not generalize": the graph is checked below at two
            # other sizes (one not a multiple of any window), which is what the warning asks to make sure of
            warnings.simplefilter("ignore", torch.jit.TracerWarning)
            torch.onnx.export(
                model, (x,), str(tmp), opset_version=opset, dynamo=False, input_names=["lr"], output_names=["sr"],
                dynamic_axes={"lr": {0: "batch", 2: "height", 3: "width"},
                              "sr": {0: "batch", 2: "out_height", 3: "out_width"}},
            )
        proto = onnx.load(str(tmp))
        meta = {"arch": getattr(model, "arch_name", type(model).__name__), "scale": str(int(model.scale)),
                "size_multiple": str(int(getattr(model, "size_multiple", 1))), "producer": "litesr"}
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        check_export(model, tmp, check_sizes, label=path)
    return path


def check_export(model: nn.Module, path: str | os.PathLike, sizes=CHECK_SIZES,
                 label: str | os.PathLike | None = None) -> list[float]:
    """Relative max error of the ONNX graph against ``model`` at each LR size; raises :class:`ExportError`
    (naming ``label``, by default ``path``)."""
    return compare_with_pytorch(model, OnnxRunner(path), sizes, EXPORT_TOLERANCE,
                                f"{label or path}: onnxruntime")


def compare_with_pytorch(model: nn.Module, run, sizes, tolerance: float, what: str) -> list[float]:
    """max|run(x) − model(x)| ÷ max|model(x)| for a seeded random input at each LR (h, w) in ``sizes``; raises
    :class:`ExportError` naming ``what`` at the first size beyond ``tolerance`` (or with another output shape)."""
    errors = []
    generator = torch.Generator().manual_seed(0)
    for h, w in sizes:
        x = check_input(h, w, generator)
        with torch.inference_mode():
            ref = model(x).float()
        out = run(x)
        if out.shape != ref.shape:
            raise ExportError(f"{what} gives {tuple(out.shape)} at LR {h}x{w}, PyTorch {tuple(ref.shape)}")
        err = ((out - ref).abs().max() / ref.abs().max().clamp_min(1e-12)).item()
        errors.append(err)
        if not err <= tolerance:
            raise ExportError(f"{what} differs from PyTorch by {err:.2e} (relative) at LR {h}x{w}; "
                              f"limit {tolerance:g}")
    return errors


def check_input(h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A seeded image-like LR input in [0, 1]: a smooth random picture (bicubic from 1/8 of the size) plus mild
    noise. Not uniform noise: white noise is unlike any image a model was trained on, and trained PAN x4 weights
    (no normalisation in its 16-block trunk) amplify it to outputs of 1e21, where float32 rounding alone makes two
    correct implementations differ by more than the output's range; on images they agree within 1e-5."""
    import torch.nn.functional as F

    coarse = torch.rand(1, 3, max(2, -(-h // 8)), max(2, -(-w // 8)), generator=generator)
    smooth = F.interpolate(coarse, size=(h, w), mode="bicubic", align_corners=False)
    return (smooth + 0.05 * torch.randn(1, 3, h, w, generator=generator)).clamp_(0, 1)


def check_arch(model: "OnnxRunner", arch: str | None) -> None:
    """Refuse an ``--arch`` that names another architecture than the one the ONNX file was exported from."""
    if not arch:
        return
    from .models.registry import resolve_architecture

    wanted = resolve_architecture(arch).name
    if model.exported_arch not in ("?", wanted):
        raise UsageError(f"{model.path} holds a {model.exported_arch} model, not {arch}; drop --arch or give the "
                         f"{arch} file")


class OnnxRunner(Runner):
    """An exported litesr model run by onnxruntime on the CPU (a :class:`~litesr.runner.Runner`, for ``upscale`` and
    ``eval``): NCHW float32 in [0, 1] → NCHW float32. Always computes in fp32 (``--precision`` does not apply).

    Its scale and size multiple are the file's metadata (``litesr export`` writes them). Tables name it ``onnx
    (custom)``, family ``onnx``, as they always have: the file records its architecture (:attr:`exported_arch`), not
    its variant.
    """

    label, arch = "onnx (custom)", "onnx"

    def __init__(self, path: str | os.PathLike, threads: int | None = None) -> None:
        ort = _require("onnxruntime")
        self.path = Path(path)
        if not self.path.is_file():
            raise NotFoundError(f"ONNX file not found: {self.path}")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        # EXTENDED, not ALL: ALL's layout rewrites (NCHWc convolutions) ran the shipped ELAN-light x4 15 % faster
        # (0.24 s against 0.28 s at LR 128², 2-core EPYC) but 3x further from a float64 forward (1.4e-4 of the
        # output's range against 4.9e-5 at LR 64²), outside the 1e-4 export check against PyTorch
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED
        if self.path.stat().st_size == 0:
            raise OnnxFileError(f"cannot read {self.path}: the file is empty (0 bytes)")
        try:
            self.graph = ort.InferenceSession(str(self.path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own classes for truncated or corrupt files
            reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise OnnxFileError(f"cannot read {self.path} as ONNX ({reason[:160]}); is the file complete? "
                                "Export it again with `litesr export`") from exc
        meta = self.graph.get_modelmeta().custom_metadata_map
        if "scale" not in meta:
            raise UsageError(f"{self.path} was not exported by litesr (no scale metadata); use `litesr export`")
        self.exported_arch = meta.get("arch", "?")
        self.scale = int(meta["scale"])
        self.size_multiple = int(meta.get("size_multiple", 1))
        self.input_name = self.graph.get_inputs()[0].name

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.graph.run(None, {self.input_name: lr})[0])

    def __repr__(self) -> str:
        return f"OnnxRunner({self.path.name}: {self.exported_arch} x{self.scale}, onnxruntime CPU)"
