"""OpenVINO as a CPU runtime for litesr models: converted once (cached on disk), compiled per input shape.

Needs the optional extra: ``pip install "litesr[openvino]"``.

Why static shapes: on a 2-core AVX-512 BF16 EPYC, the shipped ELAN-light x4 at LR 256² ran in 0.37 s compiled
for that shape with bf16 inference precision, 1.0 s compiled once for any height and width, and 0.64 s in eager
PyTorch bf16 (``benchmarks/floor.py``). So :class:`OpenVinoRunner` compiles one model per input shape (about
2 s, or 0.7 s when OpenVINO's compile cache already holds it) and keeps the last few; the tiler cuts an image into
windows of one size for it (``static_shape``), so a large image costs one compile.

The conversion (``openvino.convert_model`` of the PyTorch module, about 7 s for ELAN-light) is checked
numerically before it is kept: fp32 OpenVINO must match PyTorch within :data:`TOLERANCE` at two
sizes, one not a multiple of any window. Converted models and compiled blobs live under :func:`cache_dir`
(``$LITESR_CACHE``, else ``$XDG_CACHE_HOME/litesr``, else ``~/.cache/litesr``), keyed by the weights, the
architecture and the versions of litesr and OpenVINO.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .errors import LitesrError, OutputError, UsageError
from .paths import cache_dir
from .runner import Runner

#: max|OpenVINO fp32 − PyTorch| ≤ TOLERANCE · max|PyTorch|, checked at conversion. Looser than the ONNX export's
#: 1e-4: OpenVINO's CPU kernels round differently, whatever the execution mode (measured: up to 5.5e-4 on small
#: random models, 5.3e-4 on the official ELAN-light x4 vector; with the shipped ELAN-light x4, Set5/Set14 PSNR
#: moved by +0.0002/-0.0001 dB). A wrong conversion misses it by orders of magnitude (the shift traced as a
#: constant was off by 1.15).
TOLERANCE = 1e-3
#: How many compiled shapes a model keeps (an image in tiles needs one; a batch of photos one per size).
KEEP_COMPILED = 4
#: OpenVINO's name for each litesr precision (``INFERENCE_PRECISION_HINT``).
HINTS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16"}


class MissingOpenVinoError(LitesrError, ImportError):
    """openvino is not installed: the message names the extra to install."""


def _require_openvino():
    try:
        import openvino
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise MissingOpenVinoError('openvino is not installed; --runtime openvino needs the optional extra: '
                                   'pip install "litesr[openvino]"') from exc
    return openvino


def model_digest(model: nn.Module, *extra: str) -> str:
    """A key for everything the converted graph depends on: the architecture, its config and every tensor."""
    h = hashlib.sha256()
    for part in (getattr(model, "arch_name", type(model).__name__), repr(sorted(getattr(model, "config", {}).items())),
                 str(getattr(model, "scale", "")), *extra):
        h.update(part.encode() + b"\0")
    for name, tensor in model.state_dict().items():
        h.update(name.encode() + b"\0")
        h.update(tensor.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


#: Architectures whose OpenVINO graph is not right yet, and why (checked before any conversion).
NOT_CONVERTED = {
    # its graph agrees with PyTorch while its input shape is dynamic, and is off by 7-8 % of the output's range
    # once compiled for a static shape, even the traced one (OpenVINO 2026.4, 2026-12-06)
    "hitsrf": "its converted graph is wrong once compiled for a fixed input size",
}


class OpenVinoRunner(Runner):
    """A litesr model run by OpenVINO on the CPU (a :class:`~litesr.runner.Runner`, for ``upscale`` and ``eval``):
    NCHW float32 in [0, 1] → NCHW float32. ``precision`` (``fp32``/``bf16``/``fp16``) is OpenVINO's inference
    precision; PyTorch's autocast does not apply. Each new input shape is compiled on first use (the model is
    converted, or read from the cache, when it is made: a conversion that fails its check raises here).
    """

    static_shape = True  # the tiler gives every tile of an image the same size

    def __init__(self, model: nn.Module, precision: str = "fp32", threads: int | None = None,
                 cache: str | os.PathLike | None = None, announce=None) -> None:
        from .checkpoint import model_label

        if model.arch_name in NOT_CONVERTED:
            raise UsageError(f"--runtime openvino cannot run {model.arch_name} yet: {NOT_CONVERTED[model.arch_name]}; "
                             "use the default runtime (--runtime eager), or export it to ONNX (litesr export), which "
                             "runs it right")
        self._ov = _require_openvino()
        if precision not in HINTS:
            raise UsageError(f"precision for OpenVINO must be one of {', '.join(HINTS)}, not {precision!r}")
        self.precision = precision
        self.scale = int(model.scale)
        self.size_multiple = int(model.size_multiple)
        self.tile_context = int(model.tile_context)
        self.tile_overlap = int(model.tile_overlap)
        self.arch = model.arch_name
        self.label = model_label(model)  # what it runs (elan-light, ...)
        self.runtime = f"OpenVINO {precision}"  # what computes it, for tables
        self.threads = int(threads or torch.get_num_threads())
        self.cache = Path(cache) if cache is not None else cache_dir()
        self.announce = announce
        self.core = self._ov.Core()
        self.graph = self.core.read_model(str(self._converted(self._ov, model)))  # any input shape
        self._compiled: OrderedDict[tuple[int, ...], object] = OrderedDict()

    def _converted(self, ov, model: nn.Module) -> Path:
        """The OpenVINO IR of ``model`` in the cache: converted and checked on first use, then reused."""
        from . import __version__

        folder = self.cache / "openvino"
        xml = folder / f"{self.arch}_x{self.scale}-{model_digest(model, __version__, ov.__version__)}.xml"
        if xml.is_file() and xml.with_suffix(".bin").is_file():
            return xml
        try:
            folder.mkdir(parents=True, exist_ok=True)
            work = Path(tempfile.mkdtemp(prefix=".convert-", dir=folder))
        except OSError as exc:
            raise OutputError(f"cannot write the OpenVINO cache {folder}: {exc.strerror or exc}; set LITESR_CACHE "
                              "to a writable folder") from exc
        if self.announce is not None:
            self.announce(f"converting {self.label} for OpenVINO (once; kept in {folder})")
        try:
            reference = model.float().eval().cpu()
            with torch.no_grad():
                graph = ov.convert_model(reference, example_input=torch.rand(1, 3, 64, 64),
                                         input=[ov.PartialShape([-1, 3, -1, -1])])
            check_conversion(self.core, graph, reference)
            ov.save_model(graph, str(work / "model.xml"))
            os.replace(work / "model.bin", xml.with_suffix(".bin"))
            os.replace(work / "model.xml", xml)  # last: an .xml in the cache always has its .bin
        finally:
            for leftover in work.iterdir():
                leftover.unlink()
            work.rmdir()
        return xml

    def compiled(self, shape: tuple[int, ...]):
        """The model compiled for one NCHW input shape (compiling it on first use; a few are kept)."""
        if shape in self._compiled:
            self._compiled.move_to_end(shape)
            return self._compiled[shape]
        graph = self.graph.clone()
        graph.reshape({graph.inputs[0]: list(shape)})
        config = {"INFERENCE_PRECISION_HINT": HINTS[self.precision], "INFERENCE_NUM_THREADS": self.threads,
                  "PERFORMANCE_HINT": "LATENCY"}
        try:
            (self.cache / "openvino" / "compiled").mkdir(parents=True, exist_ok=True)
            config["CACHE_DIR"] = str(self.cache / "openvino" / "compiled")
        except OSError:
            pass  # no compile cache: every run compiles again, which is only slower
        self._compiled[shape] = self.core.compile_model(graph, "CPU", config)
        while len(self._compiled) > KEEP_COMPILED:
            self._compiled.popitem(last=False)
        return self._compiled[shape]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        lr = np.ascontiguousarray(x.detach().float().cpu().numpy())
        return torch.from_numpy(self.compiled(tuple(lr.shape))({0: lr})[0])


def check_conversion(core, graph, model: nn.Module) -> list[float]:
    """Relative max error of the converted graph (fp32) against ``model`` at each of ``litesr.onnx.CHECK_SIZES``;
    raises ``litesr.onnx.ExportError`` beyond :data:`TOLERANCE`."""
    from .onnx import CHECK_SIZES, compare_with_pytorch

    compiled = core.compile_model(graph, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    return compare_with_pytorch(model, lambda x: torch.from_numpy(compiled({0: x.numpy()})[0]), CHECK_SIZES,
                                TOLERANCE, "OpenVINO")
