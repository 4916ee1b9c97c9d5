"""The standard SR evaluation protocol: the one behind the published IMDN, PAN, SwinIR and ELAN tables.

For every image of a benchmark set (``litesr.data.testsets``): the uint8 LR image → float /255 → the model on
the whole image (float32, inference mode) → clamp to [0, 1] → ×255, rounded → uint8, scored against the
modcropped HR image on the Y channel with ``crop_border = scale`` (``litesr.metrics``). A set's score is the
mean of its per-image scores. ``shared/data/reference_scores.json`` states the same protocol; this module
reproduces its numbers to 0.01 dB (``tests/test_reference_models.py``).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np
import torch
from torch import nn

from .data.testsets import BenchmarkSet
from .data.imresize import imresize
from .errors import UsageError
from .device import self_ensemble_forward
from .io import image_to_tensor, tensor_to_image, write_image
from .metrics import GRAY_CONVENTIONS, psnr_y, ssim_y
from .runner import Runner

__all__ = ["evaluate", "evaluate_bicubic", "self_ensemble_forward"]

Upscaler = Callable[[np.ndarray], np.ndarray]  # uint8 RGB LR → uint8 RGB SR


def evaluate(
    model: nn.Module | Runner,
    data_dir: str | os.PathLike,
    sets: str | Iterable[str],
    scale: int,
    *,
    gray: str = "rgb",
    self_ensemble: bool = False,
    device: str | torch.device = "cpu",
    progress: bool | str = True,
    save_images: str | os.PathLike | None = None,
    precision: str = "fp32",
) -> dict:
    """Score ``model`` on benchmark ``sets`` (names, or one comma-separated string) of ``data_dir``.

    Returns ``{set: {"psnr_y", "ssim_y", "images", "lr_generated", "per_image": {name: {"psnr_y", "ssim_y"}}}}``.
    ``gray`` picks the grayscale-HR convention (``"rgb"`` model tables, ``"raw"`` MATLAB-era tables; see
    ``litesr.metrics``). ``self_ensemble`` averages the 8 flips/rotations (before quantisation).
    ``progress``: ``True`` shows a bar on a terminal and a plain line every 30 s in a log, ``False`` nothing; a
    mode (``"bar"``, ``"lines"``, ``"off"``) forces one. ``save_images`` writes each SR image to
    ``<dir>/<set>/<name>.png``. The model is moved to ``device`` (a :class:`~litesr.runner.Runner` runs where and
    in the precision it was built for). ``precision`` ``"bf16"``/``"fp16"`` (or ``"auto"``,
    see ``litesr.device.resolve_precision``) runs it under autocast, to measure what the faster precision costs; the
    protocol (and the published numbers) are fp32.
    """
    import contextlib

    from .device import full_float32, pick_device
    from .runner import as_runner

    if not isinstance(model, (nn.Module, Runner)):
        raise TypeError(f"evaluate: model must be a torch nn.Module, got {type(model).__name__}"
                        + ("; load a checkpoint first: evaluate(litesr.load_model(path), ...)"
                           if isinstance(model, (str, os.PathLike)) else ""))
    device = pick_device(device)
    if isinstance(model, nn.Module):
        model = (model.eval() if model.training else model).to(device)  # eval() would drop its derived weights
    runner = as_runner(model, device, precision, scale=scale)  # "auto" made concrete; fails fast on an unknown one
    if runner.scale != int(scale):
        raise UsageError(f"the model is a x{runner.scale} model but x{scale} evaluation was requested")
    compute = full_float32 if runner.precision == "fp32" else contextlib.nullcontext

    def upscale(lr: np.ndarray) -> np.ndarray:
        x = image_to_tensor(lr).to(runner.device)
        with torch.inference_mode(), compute():
            y = self_ensemble_forward(runner, x) if self_ensemble else runner(x)
        return tensor_to_image(y.float())

    return _evaluate_sets(upscale, data_dir, sets, scale, gray, progress, save_images)


def evaluate_bicubic(
    data_dir: str | os.PathLike,
    sets: str | Iterable[str],
    scale: int,
    *,
    gray: str = "rgb",
    progress: bool | str = True,
    save_images: str | os.PathLike | None = None,
) -> dict:
    """The "Bicubic" row of the tables: each LR image upscaled ×``scale`` by MATLAB bicubic, scored like a model."""
    return _evaluate_sets(lambda lr: imresize(lr, scale), data_dir, sets, scale, gray, progress, save_images)


def _evaluate_sets(
    upscale: Upscaler,
    data_dir: str | os.PathLike,
    sets: str | Iterable[str],
    scale: int,
    gray: str,
    progress: bool | str,
    save_images: str | os.PathLike | None,
) -> dict:
    if gray not in GRAY_CONVENTIONS:
        raise UsageError(f"gray convention must be one of {', '.join(GRAY_CONVENTIONS)}, not {gray!r}")
    names = [s.strip() for s in sets.split(",")] if isinstance(sets, str) else list(sets)
    benchmarks = [BenchmarkSet(data_dir, name, scale) for name in names if name]  # fail fast on a missing set
    return {b.name: _evaluate_set(upscale, b, gray, progress, save_images) for b in benchmarks}


def _evaluate_set(upscale: Upscaler, bench: BenchmarkSet, gray: str, progress: bool | str, save_images) -> dict:
    from .progress import LOG_INTERVAL_S, Progress, progress_mode

    s = bench.scale
    per_image = {}
    mode = progress if isinstance(progress, str) else progress_mode(quiet=not progress)
    meter = Progress(len(bench), f"{bench.name} x{s}", mode, unit="image", interval=LOG_INTERVAL_S)
    for img in bench:
        sr = upscale(img.lr)
        meter.update()
        if sr.shape != img.hr.shape:
            raise UsageError(f"{bench.name}/{img.name}: the output is {sr.shape[1]}×{sr.shape[0]}, the modcropped HR "
                             f"is {img.hr.shape[1]}×{img.hr.shape[0]}: does the model really upscale x{s}?")
        if save_images is not None:
            write_image(sr, Path(save_images) / bench.name / f"{img.name}.png")
        hr = img.hr[..., 0] if img.hr_is_gray else img.hr  # H×W tells the metrics this HR image is grayscale
        per_image[img.name] = {"psnr_y": psnr_y(sr, hr, s, gray=gray), "ssim_y": ssim_y(sr, hr, s, gray=gray)}
    meter.close()
    return {
        "psnr_y": float(np.mean([v["psnr_y"] for v in per_image.values()])),
        "ssim_y": float(np.mean([v["ssim_y"] for v in per_image.values()])),
        "images": len(per_image),
        "lr_generated": bench.lr_generated,
        "per_image": per_image,
    }
