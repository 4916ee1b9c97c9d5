"""Upscaling images of any size in bounded memory: overlapping tiles, each keeping only its central core.

Every output pixel comes from the one tile whose core contains it, computed with at least ``overlap`` LR pixels
of real context on every side (or the true image border). So the result does not depend on where tiles fall
beyond what the model sees past ``overlap`` pixels, and there are no blending seams to hide.
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Iterator

import numpy as np
import torch
from torch import nn

from .errors import UsageError

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 32

#: Concrete compute precisions. fp32 matches the official code (``eval``'s default); bf16/fp16 run the model under
#: autocast (bf16: 1.4-1.5x faster than fp32 for ELAN-light on an AVX-512 BF16 CPU, benchmarks/floor.py; fp16 is for GPUs).
PRECISIONS = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}

#: What ``upscale`` runs in unless told otherwise (see :func:`resolve_precision`); ``eval`` keeps fp32.
DEFAULT_PRECISION = "auto"

#: The values ``--precision`` accepts: ``auto`` and the concrete precisions.
PRECISION_CHOICES = ("auto", *PRECISIONS)


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bf16 natively: CUDA GPUs with bf16, CPUs with AVX-512 BF16 or AMX."""
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
        return any(probe() for probe in probes if probe is not None)
    return False


def resolve_precision(model: nn.Module, device: torch.device, precision: str) -> str:
    """The concrete precision (a key of ``PRECISIONS``) that ``precision`` means for ``model`` on ``device``.

    ``auto``: bf16 where the hardware runs it natively and it pays for this architecture (CUDA: every
    architecture; CPU: those registered with ``cpu_bf16``, decided by measurement), else fp32. Never fp16:
    Swin-type models overflow in fp16 (NaN/black output), so fp16 is only ever used when asked for.
    """
    if precision != "auto":
        if precision not in PRECISIONS:
            raise UsageError(f"precision must be one of {', '.join(PRECISION_CHOICES)}, not {precision!r}")
        return precision
    from .models.registry import ARCHITECTURES

    device = torch.device(device)
    if not native_bf16(device):
        return "fp32"
    if device.type == "cuda":
        return "bf16"
    arch = ARCHITECTURES.get(getattr(model, "arch_name", ""))
    return "bf16" if arch is not None and arch.cpu_bf16 else "fp32"


def precision_context(device: torch.device, precision: str) -> ContextManager:
    """Autocast to ``precision`` on ``device`` (a no-op for fp32); the model's output is cast back to float32."""
    if precision not in PRECISIONS:
        raise UsageError(f"precision must be one of {', '.join(PRECISIONS)}, not {precision!r}")
    dtype = PRECISIONS[precision]
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=dtype)


@dataclass(frozen=True)
class Tile:
    """Input window ``[y0:y1, x0:x1]`` of the LR image and the core ``[cy0:cy1, cx0:cx1]`` it is responsible for."""

    y0: int
    y1: int
    x0: int
    x1: int
    cy0: int
    cy1: int
    cx0: int
    cx1: int


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1) -> list[Tile]:
    """Cover an H×W image with cores of at most ``tile`` pixels, each padded by ``overlap`` pixels of context.

    With ``align`` (the model's window multiple), tile windows start on the same grid as the whole-image pass
    would use, so attention windows inside a tile coincide with the whole image's and only the outermost
    context differs.
    """
    if tile <= 0:
        raise UsageError(f"tile size must be positive, got {tile}")
    if overlap < 0:
        raise UsageError(f"tile overlap must be >= 0, got {overlap}")
    align = max(1, int(align))
    tile = max(align, tile - tile % align)
    overlap = -(-overlap // align) * align

    def spans(size: int) -> list[tuple[int, int, int, int]]:
        n = max(1, math.ceil(size / tile))
        step = -(-math.ceil(size / n) // align) * align  # near-equal cores on the alignment grid
        out = []
        for start in range(0, size, step):
            end = min(size, start + step)
            out.append((max(0, start - overlap), min(size, end + overlap), start, end))
        return out

    return [Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1)
            for y0, y1, cy0, cy1 in spans(height) for x0, x1, cx0, cx1 in spans(width)]


def plan_for(model: nn.Module, h: int, w: int, tile: int | None = DEFAULT_TILE,
             overlap: int = DEFAULT_OVERLAP) -> list[Tile]:
    """The tiles an H×W image is cut into for ``model``: one tile when it fits, else :func:`plan_tiles`."""
    if tile is None or (h <= tile and w <= tile):
        return [Tile(0, h, 0, w, 0, h, 0, w)]  # the whole image in one pass
    return plan_tiles(h, w, tile, overlap, getattr(model, "size_multiple", 1))


def upscale(
    image,
    model: nn.Module | str | None = None,
    *,
    scale: int | None = None,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    precision: str = DEFAULT_PRECISION,
    self_ensemble: bool = False,
    max_pixels: int | None = None,
):
    """Super-resolve one image and return it in the form it came in.

    ``image``: a PIL image, a uint8 or uint16 ``H×W`` / ``H×W×3`` / ``H×W×4`` numpy array, or a path. ``model``:
    an ``nn.Module``, a checkpoint path, a variant name with shipped weights (``"elan-light"``), or None for the
    shipped model of ``scale`` (default x4). PIL in → PIL out (transparency kept, upscaled bicubically); array in →
    array out, same dtype and channels; path in → uint8 (or, for a 16-bit file, uint16) ``H×W×3`` array.
    ``max_pixels`` refuses larger inputs (a path's size is read from its header). Wrong arguments raise
    ``TypeError``/``ValueError`` naming the argument.

        >>> big = litesr.upscale(Image.open("photo.png"))             # shipped ELAN-light x4
        >>> big = litesr.upscale(array, "IMDN_x2.pth")                 # any supported checkpoint
    """
    import os

    from PIL import Image

    from .io import picture_from_pil, read_picture, to_pil
    from .pretrained import resolve_model

    _check_upscale_arguments(image, model, scale, tile, overlap, precision, max_pixels)
    if isinstance(model, nn.Module):
        if scale is not None and int(model.scale) != int(scale):
            raise ValueError(f"upscale: the model is a x{model.scale} model but x{scale} was requested (scale={scale})")
        dev = pick_device(device) if device is not None else next(model.parameters()).device
    else:
        from .models import VARIANTS

        dev = pick_device(None if device is None else str(device))
        name = None if model is None else os.fspath(model)
        if name is not None and name.lower() in VARIANTS and not Path(name).exists():
            model = resolve_model(None, name, scale, dev)  # a variant name: its shipped weights
        else:
            model = resolve_model(name, None, scale, dev)
    model = model.eval().to(dev)
    if isinstance(image, Image.Image):
        picture = picture_from_pil(image)
    elif isinstance(image, np.ndarray):
        if image.ndim == 2 or image.shape[2] in (1, 3, 4):
            picture = _picture_from_array(image)
        else:
            raise ValueError(f"upscale: image array must be H×W, H×W×3 (RGB) or H×W×4 (RGBA), got shape "
                             f"{image.shape}")
    else:
        picture = read_picture(image, max_pixels=max_pixels, keep_depth=True, metadata=False)
    if max_pixels and picture.rgb.shape[0] * picture.rgb.shape[1] > max_pixels:
        h, w = picture.rgb.shape[:2]
        raise ValueError(f"upscale: image is {w}x{h} = {w * h:,} pixels, above max_pixels={max_pixels:,}")
    rgb = upscale_array(model, picture.rgb, tile=tile, overlap=overlap, device=dev, precision=precision,
                        self_ensemble=self_ensemble)
    alpha = None if picture.alpha is None else upscale_alpha(picture.alpha, model.scale)
    if isinstance(image, Image.Image):
        return to_pil(rgb, alpha, picture.grayscale)
    if isinstance(image, np.ndarray):
        if image.ndim == 2 or image.shape[2] == 1:
            gray = rgb[..., 0] if picture.grayscale else rgb.mean(axis=2).round().astype(rgb.dtype)
            return gray if image.ndim == 2 else gray[..., None]
        if image.shape[2] == 4:
            a = alpha if alpha is not None else np.full(rgb.shape[:2], np.iinfo(rgb.dtype).max, rgb.dtype)
            return np.dstack([rgb, a.astype(rgb.dtype)])
    return rgb


def _picture_from_array(image: np.ndarray):
    from .io import Picture

    gray = image.ndim == 2 or image.shape[2] == 1
    plane = image.reshape(image.shape[0], image.shape[1], -1)
    rgb = np.repeat(plane, 3, axis=2) if gray else plane[..., :3]
    alpha = plane[..., 3] if plane.shape[2] == 4 else None
    return Picture(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), gray)


def _check_upscale_arguments(image, model, scale, tile, overlap, precision, max_pixels) -> None:
    """The checks of ``upscale``'s arguments: each error names the argument and what it accepts."""
    import os

    from PIL import Image

    if isinstance(image, np.ndarray):
        if image.dtype not in (np.uint8, np.uint16):
            raise ValueError(f"upscale: image array must be uint8 or uint16 (0..255 / 0..65535), got {image.dtype}; "
                             "convert floats with (a * 255).round().astype(np.uint8)")
        if image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
            raise ValueError(f"upscale: image array must be H×W, H×W×3 or H×W×4 with H, W >= 1, got shape "
                             f"{image.shape}")
    elif not isinstance(image, (Image.Image, str, os.PathLike)):
        hint = "; for a tensor use litesr.inference.upscale_tensor(model, x)" if isinstance(image, torch.Tensor) else ""
        raise TypeError(f"upscale: image must be a PIL image, a numpy array or a path, got {type(image).__name__}"
                        + hint)
    if model is not None and not isinstance(model, (nn.Module, str, os.PathLike)):
        raise TypeError(f"upscale: model must be an nn.Module, a checkpoint path, a variant name or None, got "
                        f"{type(model).__name__}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale not in (2, 3, 4)):
        raise ValueError(f"upscale: scale must be 2, 3, 4 or None, got {scale!r}")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"upscale: tile must be a positive int or None (whole image), got {tile!r}")
    if isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0:
        raise ValueError(f"upscale: overlap must be an int >= 0, got {overlap!r}")
    if precision not in PRECISION_CHOICES:
        raise ValueError(f"upscale: precision must be one of {', '.join(PRECISION_CHOICES)}, got {precision!r}")
    if max_pixels is not None and (isinstance(max_pixels, bool) or not isinstance(max_pixels, int) or max_pixels < 0):
        raise ValueError(f"upscale: max_pixels must be an int >= 0 or None, got {max_pixels!r}")


def upscale_alpha(alpha, scale: int):
    """Transparency is not image content the models were trained on: it is upscaled by bicubic interpolation
    (uint8, or uint16 through a float image)."""
    from PIL import Image

    h, w = alpha.shape
    if alpha.dtype == np.uint16:
        big = Image.fromarray(alpha.astype(np.float32)).resize((w * scale, h * scale), Image.Resampling.BICUBIC)
        return np.clip(np.round(np.array(big)), 0, 65535).astype(np.uint16)
    return np.array(Image.fromarray(alpha).resize((w * scale, h * scale), Image.Resampling.BICUBIC))


class UpscaledAlpha:
    """:func:`upscale_alpha` of ``alpha``, computed for the rows asked (``lazy[r0:r1]``), so that a streamed output
    never holds the whole upscaled transparency. Each slice resizes only the input rows it needs plus 3 rows of
    context (bicubic reads 2), so its pixels equal those of the whole-image resize (tested)."""

    def __init__(self, alpha: np.ndarray, scale: int) -> None:
        self.alpha, self.scale = alpha, int(scale)
        self.shape = (alpha.shape[0] * self.scale, alpha.shape[1] * self.scale)
        self.dtype = alpha.dtype

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, rows: slice) -> np.ndarray:
        start, stop, _ = rows.indices(self.shape[0])
        s, h = self.scale, self.alpha.shape[0]
        a0, a1 = max(0, start // s - 3), min(h, -(-stop // s) + 3)
        return upscale_alpha(self.alpha[a0:a1], s)[start - a0 * s:stop - a0 * s]

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        whole = upscale_alpha(self.alpha, self.scale)
        return whole if dtype is None else whole.astype(dtype)


class _TiledRunner:
    """What every tiled upscaling shares: the tile plan, the forward of one tile, and cutting out its core."""

    def __init__(self, model: nn.Module, tile: int | None, overlap: int, device, precision: str,
                 self_ensemble: bool) -> None:
        self.model, self.tile, self.overlap = model, tile, overlap
        self.device = torch.device(device) if device is not None else next(model.parameters()).device
        self.precision = resolve_precision(model, self.device, precision)
        self.self_ensemble = self_ensemble
        self.scale = int(model.scale)

    def plan(self, h: int, w: int) -> list[Tile]:
        return plan_for(self.model, h, w, self.tile, self.overlap)

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        with precision_context(self.device, self.precision):
            patch = patch.to(self.device)
            y = self_ensemble_forward(self.model, patch) if self.self_ensemble else self.model(patch)
            return y.float().cpu()

    def core(self, y: torch.Tensor, t: Tile) -> torch.Tensor:
        """The part of a tile's output that the tile is responsible for."""
        s = self.scale
        top, left = (t.cy0 - t.y0) * s, (t.cx0 - t.x0) * s
        return y[..., top:top + (t.cy1 - t.cy0) * s, left:left + (t.cx1 - t.cx0) * s]

    def tiles(self, tiles: list[Tile], progress, description: str) -> Iterator[Tile]:
        factory = progress if callable(progress) else _progress
        bar = factory(len(tiles), description) if progress and (len(tiles) > 1 or callable(progress)) else None
        for t in tiles:
            yield t
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()


@torch.inference_mode()
def upscale_tensor(
    model: nn.Module,
    x: torch.Tensor,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    progress: bool = False,
    description: str = "tiles",
    precision: str = "fp32",
    self_ensemble: bool = False,
) -> torch.Tensor:
    """Super-resolve ``x`` (N×3×H×W in [0,1], any device) tile by tile; returns the output (float32) on the CPU.

    ``tile=None`` (or a tile larger than the image) runs the whole image in one pass. ``precision``: see
    ``PRECISIONS``. ``self_ensemble`` averages the 8 flips/transpositions of every tile (8× the time).
    """
    runner = _TiledRunner(model, tile, overlap, device, precision, self_ensemble)
    n, c, h, w = x.shape
    plan = runner.plan(h, w)
    if len(plan) == 1:
        return runner.forward(x)
    s = runner.scale
    out = torch.empty(n, c, h * s, w * s, dtype=torch.float32)
    for t in runner.tiles(plan, progress, description):
        y = runner.forward(x[..., t.y0:t.y1, t.x0:t.x1])
        out[..., t.cy0 * s:t.cy1 * s, t.cx0 * s:t.cx1 * s] = runner.core(y, t)
    return out


@torch.inference_mode()
def upscale_array(
    model: nn.Module,
    image: np.ndarray,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    progress=False,
    description: str = "tiles",
    precision: str = "fp32",
    self_ensemble: bool = False,
) -> np.ndarray:
    """uint8 ``H×W×3`` → uint8 ``sH×sW×3``, the same pixels as ``tensor_to_image(upscale_tensor(...))``
    (uint16 in → uint16 out, the model seeing ``v / 65535``).

    Only one tile is ever held in float: the result is written straight into the integer output, a quarter of a
    float32 one, so the memory of a large image is its input and output bytes plus one tile's working set.
    To hold only one strip of the output, use :func:`upscale_strips`.
    """
    h, w = image.shape[:2]
    s = int(model.scale)
    out = np.empty((h * s, w * s, 3), dtype=image.dtype)
    row = 0
    for strip in upscale_strips(model, image, tile, overlap, device, progress, description, precision,
                                self_ensemble):
        out[row:row + len(strip)] = strip
        row += len(strip)
    return out


@torch.inference_mode()
def upscale_strips(
    model: nn.Module,
    image: np.ndarray,
    tile: int | None = DEFAULT_TILE,
    overlap: int = DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
    progress=False,
    description: str = "tiles",
    precision: str = "fp32",
    self_ensemble: bool = False,
) -> Iterator[np.ndarray]:
    """Yield the output of uint8 (or uint16) ``H×W×3`` as horizontal strips, top to bottom: one row of tiles each.

    Whoever consumes the strips (``litesr.io.write_strips`` encodes PNG as they come) holds one strip, not the
    whole output. ``progress``: True for a bar, or a factory ``progress(total_tiles, description)`` returning an
    object with ``update(n)`` and ``close()``.
    """
    from .io import image_to_tensor, tensor_to_image

    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 or uint16 H×W×3 array, got {image.dtype} {image.shape}")
    deep = image.dtype == np.uint16
    runner = _TiledRunner(model, tile, overlap, device, precision, self_ensemble)
    h, w = image.shape[:2]
    s = runner.scale
    strip = None
    for t in runner.tiles(runner.plan(h, w), progress, description):
        if t.cx0 == 0:
            if strip is not None:
                yield strip
            strip = np.empty(((t.cy1 - t.cy0) * s, w * s, 3), dtype=image.dtype)
        patch = image[t.y0:t.y1, t.x0:t.x1]
        if deep:
            x = torch.from_numpy(patch.astype(np.float32)).div_(65535.0).permute(2, 0, 1).unsqueeze(0)
            core = runner.core(runner.forward(x), t)[0].clamp(0, 1).mul(65535.0).round()
            strip[:, t.cx0 * s:t.cx1 * s] = core.to(torch.int32).permute(1, 2, 0).numpy().astype(np.uint16)
        else:
            strip[:, t.cx0 * s:t.cx1 * s] = tensor_to_image(runner.core(runner.forward(image_to_tensor(patch)), t))
    if strip is not None:
        yield strip


def self_ensemble_forward(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Geometric self-ensemble (EDSR ``forward_x8``): mean of the outputs for the 8 flips/transpositions of ``x``,
    each mapped back to the original orientation."""
    outputs = []
    for transpose in (False, True):
        for flip_h in (False, True):
            for flip_v in (False, True):
                dims = [d for d, on in ((-1, flip_h), (-2, flip_v)) if on]
                t = x.flip(dims) if dims else x
                t = t.transpose(-2, -1) if transpose else t
                y = model(t).float()
                y = y.transpose(-2, -1) if transpose else y
                outputs.append(y.flip(dims) if dims else y)
    return torch.stack(outputs).mean(dim=0)


def _progress(total: int, description: str):
    from tqdm import tqdm

    return tqdm(total=total, desc=description, unit="tile", leave=False, dynamic_ncols=True)


def reuse_freed_memory() -> bool:
    """Ask glibc to keep freed large blocks for reuse instead of returning them to the OS (``mallopt``).

    A forward allocates and frees many tensors of several MiB; by default glibc serves each from a fresh
    ``mmap`` and unmaps it when freed, so every one is page-faulted in again. Keeping them (mmap threshold 1 GiB,
    trim threshold 2 GiB) made the shipped ELAN-light x4 forward at LR 128² 1.18-1.35x faster on a 2-core EPYC
    (fp32 and bf16; ``benchmarks/malloc_reuse.py``), at the cost of a resident set that stays at its peak. Process
    wide, so only the command line calls it (``litesr upscale``/``eval``). Returns whether it applied (glibc only).
    """
    import ctypes
    import ctypes.util
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        m_trim_threshold, m_mmap_threshold = -1, -3
        return bool(libc.mallopt(m_mmap_threshold, 1 << 30)) and bool(libc.mallopt(m_trim_threshold, 1 << 31))
    except (OSError, AttributeError):  # not glibc (musl has no mallopt)
        return False


def pick_device(name: str | torch.device | None) -> torch.device:
    """``auto`` (or None) → cuda, then mps, then cpu; otherwise the named device, checked to exist here."""
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError, ValueError):
        raise UsageError(f"unknown device {str(name)!r}: use cpu, cuda, cuda:N, mps or auto") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"device {str(name)!r} requested but CUDA is not available here; use cpu (or auto)")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"device {str(name)!r} requested but this machine has {torch.cuda.device_count()} "
                             "CUDA device(s); use cuda:0 or auto")
    elif device.type == "mps":
        if getattr(torch.backends, "mps", None) is None or not torch.backends.mps.is_available():
            raise UsageError(f"device {str(name)!r} requested but MPS is not available here; use cpu (or auto)")
    elif device.type != "cpu":
        raise UsageError(f"device {str(name)!r} is not supported: use cpu, cuda, cuda:N, mps or auto")
    return device
