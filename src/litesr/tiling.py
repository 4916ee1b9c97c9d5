"""Upscaling arrays and tensors of any size in bounded memory: overlapping tiles, each keeping only its core.

Every output pixel comes from the one tile whose core contains it, computed with at least ``overlap`` LR pixels
of real context on every side (or the true image border). So the result does not depend on where tiles fall
beyond what the model sees past ``overlap`` pixels, and there are no blending seams to hide.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Iterator

import numpy as np
import torch
from torch import nn

from .device import release_freed_memory, self_ensemble_forward
from .errors import UsageError
from .runner import Runner, as_runner

DEFAULT_TILE = 256
DEFAULT_OVERLAP = 16


def default_tile(runner: Runner) -> int:
    """The LR tile ``litesr upscale`` takes when none is given: the runner's ``large_tile`` where freed memory
    blocks are kept for reuse (:func:`litesr.device.reuse_freed_memory`, as the command line runs), else its
    ``base_tile``, else :data:`DEFAULT_TILE`. Without reuse each large tensor is page-faulted in anew, and a 544²
    forward cost 1.6-2.2× a 256² one per pixel; with it, 0.8-1.1× (``docs/performance.md`` §2.3). ESRT's
    ``base_tile`` is smaller: its attention's cost grows with the tile's area."""
    from .device import freed_memory_reused

    if runner.large_tile and freed_memory_reused():
        return runner.large_tile
    return runner.base_tile or DEFAULT_TILE


@dataclass(frozen=True)
class InferenceOptions:
    """How an image goes through a runner (:class:`~litesr.runner.Runner`: what computes, where, in which precision).

    ``tile``: the largest LR tile side (None: the whole image in one pass); ``overlap``: LR pixels of context
    around each tile (None: the runner's ``tile_overlap``, else :data:`DEFAULT_OVERLAP`; never less than its
    ``tile_context``); ``self_ensemble``: the mean of the 8
    flips/transpositions of every tile (8× the time); ``progress``: True for a bar, or a factory
    ``progress(total_tiles, description)`` of an object with ``update(n)`` and ``close()``
    (``litesr.progress.tile_progress``); ``description``: what the progress calls the image.
    """

    tile: int | None = DEFAULT_TILE
    overlap: int | None = None
    self_ensemble: bool = False
    progress: bool | Callable[[int, str], object] = False
    description: str = "tiles"


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


def plan_tiles(height: int, width: int, tile: int, overlap: int, align: int = 1,
               uniform: bool = False) -> list[Tile]:
    """Cover an H×W image with cores of at most ``tile`` pixels, each padded by ``overlap`` pixels of context.

    With ``align`` (the model's window multiple), tile windows start on the same grid as the whole-image pass
    would use, so attention windows inside a tile coincide with the whole image's and only the outermost
    context differs. That needs twice the overlap on the grid, not the overlap itself: the overlap is rounded up
    to a multiple of half the grid (GRFormer's 32-pixel grid keeps 16 pixels of context, not 32), and the cores'
    inner borders sit that far past the grid, so each window starts on it. With ``uniform``, every window has one
    size (those at the bottom or right border may end past the image by less than ``align`` per tile, and the tiler
    pads them as the model pads an image), and the tiles at the borders have larger cores, since they need context
    on one side only: a runtime compiled for static shapes (OpenVINO) then compiles one shape per image, for no
    more work than uneven windows.
    """
    if tile <= 0:
        raise UsageError(f"tile size must be positive, got {tile}")
    if overlap < 0:
        raise UsageError(f"tile overlap must be >= 0, got {overlap}")
    align = max(1, int(align))
    tile = max(align, tile - tile % align)
    half = align // 2 if align % 2 == 0 else align
    overlap = -(-overlap // half) * half
    # inner core borders at offset (mod align) from the grid, so every window start (border − overlap) is on it
    offset = overlap % align

    def spans(size: int) -> list[tuple[int, int, int, int]]:
        if size <= tile:
            return [(0, size, 0, size)]
        n = math.ceil(size / tile)
        if uniform:
            # n windows of one length L on the grid, each overlapping the next by 2·overlap; the edge tiles'
            # cores take the context they need on one side only, so no window computes more than its share
            length = -(-(size + 2 * overlap * (n - 1)) // (n * align)) * align
            starts = [i * (length - 2 * overlap) for i in range(n)]
            return [(a, min(size, a + length), a + overlap if i else 0, min(size, a + length - overlap)
                     if i < n - 1 else size) for i, a in enumerate(starts)]
        # near-equal cores on the grid of a virtual image that starts (align − offset) pixels early, so the borders
        # land at offset (mod align) and no core is longer than the tile
        early = (align - offset) % align
        n = max(1, math.ceil((size + early) / tile))
        step = -(-math.ceil((size + early) / n) // align) * align
        borders = [0] + [b - early for b in range(step, size + early, step)] + [size]
        return [(max(0, start - overlap), min(size, end + overlap), start, end)
                for start, end in zip(borders, borders[1:])]

    return [Tile(y0, y1, x0, x1, cy0, cy1, cx0, cx1)
            for y0, y1, cy0, cy1 in spans(height) for x0, x1, cx0, cx1 in spans(width)]


def tile_context(runner: Runner, overlap: int | None = None) -> int:
    """The LR context each tile of ``runner`` gets when ``overlap`` is asked (None: the runner's own default)."""
    if overlap is None:
        overlap = runner.tile_overlap or DEFAULT_OVERLAP
    return max(overlap, runner.tile_context)


def plan_for(runner: Runner | nn.Module, h: int, w: int, tile: int | None = DEFAULT_TILE,
             overlap: int | None = None) -> list[Tile]:
    """The tiles an H×W image is cut into for ``runner`` (or a model's :class:`~litesr.runner.TorchRunner`): one tile
    when it fits, else :func:`plan_tiles` with :func:`tile_context` (and windows of one size for a runner of static
    shapes)."""
    if tile is None or (h <= tile and w <= tile):
        return [Tile(0, h, 0, w, 0, h, 0, w)]  # the whole image in one pass
    runner = as_runner(runner)
    return plan_tiles(h, w, tile, tile_context(runner, overlap), runner.size_multiple, uniform=runner.static_shape)



def seam_mask(tiles: list[Tile], height: int, width: int, scale: int, reach: int = 4) -> np.ndarray:
    """The ``scale·H × scale·W`` output pixels within ``reach`` LR pixels of a boundary between two tiles' cores:
    where a tiled result can differ from the whole-image pass (what ``tests`` and ``benchmarks/tile_seams.py``
    compare)."""
    mask = np.zeros((height * scale, width * scale), dtype=bool)
    for t in tiles:
        for c in {t.cy0, t.cy1} - {0, height}:
            mask[max(0, c - reach) * scale:(c + reach) * scale, :] = True
        for c in {t.cx0, t.cx1} - {0, width}:
            mask[:, max(0, c - reach) * scale:(c + reach) * scale] = True
    return mask

class _Tiler:
    """What every tiled upscaling shares: the tile plan, the forward of one tile, and cutting out its core."""

    def __init__(self, runner: Runner, options: InferenceOptions) -> None:
        self.runner, self.options = runner, options
        self.scale = runner.scale
        self.shape: tuple[int, int] | None = None  # the one window size a static-shape runner is given
        self.last_size = 0  # the last forward's input elements

    def plan(self, h: int, w: int) -> list[Tile]:
        tiles = plan_for(self.runner, h, w, self.options.tile, self.options.overlap)
        self.shape = None
        if self.runner.static_shape and len(tiles) > 1:  # one window size for every tile
            self.shape = (max(t.y1 - t.y0 for t in tiles), max(t.x1 - t.x0 for t in tiles))
        return tiles

    def forward(self, patch: torch.Tensor) -> torch.Tensor:
        if self.shape is not None and tuple(patch.shape[-2:]) != self.shape:
            from .models.blocks import pad_to_multiple  # reflected at the bottom/right, as the models pad

            h, w = patch.shape[-2:]
            return self.forward(pad_to_multiple(patch, self.shape))[..., :h * self.scale, :w * self.scale]
        if patch.numel() > self.last_size:  # a larger shape: the blocks kept from a smaller one seldom fit it
            release_freed_memory()
        self.last_size = patch.numel()
        patch = patch.to(self.runner.device)
        y = self_ensemble_forward(self.runner, patch) if self.options.self_ensemble else self.runner(patch)
        return y.float().cpu()

    def core(self, y: torch.Tensor, t: Tile) -> torch.Tensor:
        """The part of a tile's output that the tile is responsible for."""
        s = self.scale
        top, left = (t.cy0 - t.y0) * s, (t.cx0 - t.x0) * s
        return y[..., top:top + (t.cy1 - t.cy0) * s, left:left + (t.cx1 - t.cx0) * s]

    def tiles(self, tiles: list[Tile]) -> Iterator[Tile]:
        progress = self.options.progress
        factory = progress if callable(progress) else _progress
        shown = progress and (len(tiles) > 1 or callable(progress))
        bar = factory(len(tiles), self.options.description) if shown else None
        for t in tiles:
            yield t
            if bar is not None:
                bar.update(1)
        if bar is not None:
            bar.close()


@torch.inference_mode()
def upscale_tensor(runner: Runner | nn.Module, x: torch.Tensor,
                   options: InferenceOptions = InferenceOptions()) -> torch.Tensor:
    """Super-resolve ``x`` (N×3×H×W in [0,1], any device) tile by tile; returns the output (float32) on the CPU.

    ``runner``: a :class:`~litesr.runner.Runner`, or a model (run in PyTorch where its parameters are, in fp32;
    ``TorchRunner(model, device, precision)`` for others). ``options.tile=None`` (or a tile larger than the image)
    runs the whole image in one pass.
    """
    tiler = _Tiler(as_runner(runner), options)
    n, c, h, w = x.shape
    plan = tiler.plan(h, w)
    if len(plan) == 1:
        return tiler.forward(x)
    s = tiler.scale
    out = torch.empty(n, c, h * s, w * s, dtype=torch.float32)
    for t in tiler.tiles(plan):
        y = tiler.forward(x[..., t.y0:t.y1, t.x0:t.x1])
        out[..., t.cy0 * s:t.cy1 * s, t.cx0 * s:t.cx1 * s] = tiler.core(y, t)
    return out


@torch.inference_mode()
def upscale_array(runner: Runner | nn.Module, image: np.ndarray,
                  options: InferenceOptions = InferenceOptions()) -> np.ndarray:
    """uint8 ``H×W×3`` → uint8 ``sH×sW×3``, the same pixels as ``tensor_to_image(upscale_tensor(...))``
    (uint16 in → uint16 out, the model seeing ``v / 65535``).

    Only one tile is ever held in float: the result is written straight into the integer output, a quarter of a
    float32 one, so the memory of a large image is its input and output bytes plus one tile's working set.
    To hold only one strip of the output, use :func:`upscale_strips`.
    """
    runner = as_runner(runner)
    h, w = image.shape[:2]
    s = runner.scale
    return join_strips(upscale_strips(runner, image, options), h * s, w * s, image.dtype)


def join_strips(strips: Iterator[np.ndarray], height: int, width: int, dtype) -> np.ndarray:
    """The ``height×width×3`` image that :func:`upscale_strips` yields strip by strip, filled in place."""
    out = np.empty((height, width, 3), dtype=dtype)
    row = 0
    for strip in strips:
        out[row:row + len(strip)] = strip
        row += len(strip)
    return out


@torch.inference_mode()
def upscale_strips(runner: Runner | nn.Module, image: np.ndarray,
                   options: InferenceOptions = InferenceOptions()) -> Iterator[np.ndarray]:
    """Yield the output of uint8 (or uint16) ``H×W×3`` as horizontal strips, top to bottom: one row of tiles each.

    Whoever consumes the strips (``litesr.io.write_strips`` encodes PNG as they come) holds one strip, not the
    whole output.
    """
    from .io import channels_last_batch, image_to_tensor, tensor_to_image

    if image.dtype not in (np.uint8, np.uint16) or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be a uint8 or uint16 H×W×3 array, got {image.dtype} {image.shape}")
    deep = image.dtype == np.uint16
    tiler = _Tiler(as_runner(runner), options)
    h, w = image.shape[:2]
    s = tiler.scale
    strip = None
    for t in tiler.tiles(tiler.plan(h, w)):
        if t.cx0 == 0:
            if strip is not None:
                yield strip
            strip = np.empty(((t.cy1 - t.cy0) * s, w * s, 3), dtype=image.dtype)
        patch = image[t.y0:t.y1, t.x0:t.x1]
        if deep:
            x = channels_last_batch(torch.from_numpy(patch.astype(np.float32)).div_(65535.0))
            core = tiler.core(tiler.forward(x), t)[0].clamp(0, 1).mul(65535.0).round()
            strip[:, t.cx0 * s:t.cx1 * s] = core.to(torch.int32).permute(1, 2, 0).numpy().astype(np.uint16)
        else:
            strip[:, t.cx0 * s:t.cx1 * s] = tensor_to_image(tiler.core(tiler.forward(image_to_tensor(patch)), t))
    if strip is not None:
        yield strip


def _progress(total: int, description: str):
    from .progress import Progress

    return Progress(total, description, "bar", interval=None)  # ``progress=True``: a bar, wherever stderr goes
