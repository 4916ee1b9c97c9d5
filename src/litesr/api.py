"""The Python-facing upscaler: ``litesr.upscale(image)`` for PIL images, arrays and paths, and
:func:`upscale_picture`, the one picture pipeline (model for the RGB, bicubic for the alpha, metadata carried over)
that the command line shares."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch
from torch import nn

from .device import DEFAULT_PRECISION, PRECISION_CHOICES
from .io import Picture
from .models.registry import SCALES
from .runner import Runner
from .tiling import DEFAULT_TILE, InferenceOptions, join_strips, upscale_strips


def upscale(
    image,
    model: nn.Module | Runner | str | None = None,
    *,
    scale: int | None = None,
    tile: int | None = DEFAULT_TILE,
    overlap: int | None = None,
    device: str | torch.device | None = None,
    precision: str = DEFAULT_PRECISION,
    self_ensemble: bool = False,
    max_pixels: int | None = None,
):
    """Super-resolve one image and return it in the form it came in.

    ``model``: an ``nn.Module`` (or a :class:`~litesr.runner.Runner`: an ONNX or OpenVINO one), a checkpoint path,
    a name from litesr's weights table (``"elan-light-x4-frl"``, ``"swinir-light-x2-official"``; see ``litesr
    models``), a variant name (``"elan-light"``: its default weights at ``scale``), or None for the default model of
    ``scale`` (default x4). What comes back, for each kind of ``image``:

    - a PIL image: a PIL image read as ``litesr upscale`` reads the same file (one pipeline): turned upright by
      its EXIF orientation; of the same mode family, ``L``/``1`` → ``L``, ``LA`` → ``LA``, ``RGBA``/``PA`` and
      ``P`` with transparency → ``RGBA`` (alpha upscaled bicubically), ``RGB``/``P``/``CMYK``/others → ``RGB``;
      deep images keep their depth, ``I;16`` → ``I;16``, ``I`` → ``I``, ``F`` → ``F`` (same white level, 1.0 or
      255); its ``.info`` carries the input's ICC profile (``icc_profile``) and EXIF (``exif``, orientation
      removed).
    - a uint8 or uint16 numpy array, ``H×W``, ``H×W×1``, ``H×W×3`` (RGB) or ``H×W×4`` (RGBA): an array of the same
      dtype and channels (read-only arrays, such as ``np.asarray(pil)``, are fine).
    - a path (``str`` or ``os.PathLike``): a numpy array of the file's pixels as ``litesr upscale`` reads them
      (upright, 16-bit kept): ``H×W`` for a grayscale file, ``H×W×4`` (RGBA) for one with transparency, else
      ``H×W×3`` (RGB); uint16 for a 16-bit file, else uint8. Metadata is not returned (``litesr upscale`` writes
      it into its output file).

    ``tile`` and ``overlap``: the LR tile side (None: the whole image at once) and the LR context around each tile
    (None: the model's default, see :func:`litesr.tiling.tile_context`). ``max_pixels`` refuses larger inputs (a
    path's size is read from its header). Wrong arguments raise
    ``TypeError``/``ValueError`` naming the argument.

        >>> big = litesr.upscale(Image.open("photo.png"))             # the default ELAN-light x4
        >>> big = litesr.upscale(array, "elan-light-x4-291")           # named weights (litesr models)
        >>> big = litesr.upscale(array, "IMDN_x2.pth")                 # any supported checkpoint
    """
    import os

    from PIL import Image

    from .device import pick_device
    from .io import picture_from_image, read_picture
    from .pretrained import resolve_model
    from .runner import as_runner

    _check_upscale_arguments(image, model, scale, tile, overlap, precision, max_pixels)
    if isinstance(model, (nn.Module, Runner)):
        if scale is not None and int(model.scale) != int(scale):
            raise ValueError(f"upscale: the model is a x{model.scale} model but x{scale} was requested (scale={scale})")
        dev = pick_device(device) if device is not None else None
    else:
        dev = pick_device(None if device is None else str(device))
        model = resolve_model(None if model is None else os.fspath(model), None, scale, dev)
    if isinstance(model, nn.Module):
        dev = dev if dev is not None else next(model.parameters()).device
        model = (model.eval() if model.training else model).to(dev)  # eval() would drop its derived weights
    runner = as_runner(model, dev, precision)
    if isinstance(image, Image.Image):
        picture = picture_from_image(image, keep_depth=True, metadata=True)  # as `litesr upscale` reads a file
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
    options = InferenceOptions(tile=tile, overlap=overlap, self_ensemble=self_ensemble)
    result = upscale_picture(runner, picture, options).whole()
    rgb, alpha = result.rgb, result.alpha
    if isinstance(image, Image.Image):
        return _pil_like(result, image)
    if isinstance(image, np.ndarray):
        if image.ndim == 2 or image.shape[2] == 1:
            gray = rgb[..., 0] if picture.grayscale else rgb.mean(axis=2).round().astype(rgb.dtype)
            return gray if image.ndim == 2 else gray[..., None]
        if image.shape[2] == 4:
            a = alpha if alpha is not None else np.full(rgb.shape[:2], np.iinfo(rgb.dtype).max, rgb.dtype)
            return np.dstack([rgb, a.astype(rgb.dtype)])
        return rgb
    from .io import luma

    if picture.grayscale:  # a path: the file's own channels
        return luma(rgb) if alpha is None else np.dstack([luma(rgb), alpha.astype(rgb.dtype)])
    return rgb if alpha is None else np.dstack([rgb, alpha.astype(rgb.dtype)])


#: PIL modes with transparency, and the mode each comes back in.
_ALPHA_MODES = {"RGBA": "RGBA", "RGBa": "RGBA", "PA": "RGBA", "LA": "LA", "La": "LA"}


def _pil_like(result: Picture, source):
    """The upscaled ``result`` as a PIL image of ``source``'s mode family (see :func:`upscale`), metadata in
    ``.info``."""
    from PIL import Image

    from .io import luma, to_bits, white_level

    mode = source.mode
    rgb = result.rgb
    if mode.startswith("I;16") or mode in ("I", "F"):
        gray = luma(rgb)
        if mode == "F":
            full = 65535.0 if gray.dtype == np.uint16 else 255.0
            out = Image.fromarray((gray.astype(np.float64) * (white_level(source) / full)).astype(np.float32), "F")
        elif mode == "I":
            out = Image.fromarray(gray.astype(np.int32), "I")
        else:
            out = Image.fromarray(to_bits(gray, True))  # I;16
    else:
        rgb = to_bits(rgb, False)
        wanted = _ALPHA_MODES.get(mode) or ("RGBA" if mode == "P" and "transparency" in source.info else None)
        gray = mode in ("L", "1", "LA", "La")
        out = Image.fromarray(luma(rgb) if gray else rgb, "L" if gray else "RGB")
        if wanted is not None:
            alpha = result.alpha
            alpha = np.full(rgb.shape[:2], 255, np.uint8) if alpha is None else to_bits(np.asarray(alpha), False)
            out.putalpha(Image.fromarray(alpha, "L"))
    if result.icc:
        out.info["icc_profile"] = result.icc
    if result.exif:
        out.info["exif"] = result.exif
    return out


@dataclass
class UpscaledPicture:
    """A picture upscaled lazily: its RGB as horizontal strips (computed as they are consumed, once), its alpha as
    rows computed on demand, and the source's metadata (grayscale, bit depth, ICC, EXIF, lossless) to write it
    with. ``whole()`` computes everything into one :class:`~litesr.io.Picture`."""

    strips: Iterator[np.ndarray]
    alpha: UpscaledAlpha | None
    width: int
    height: int
    source: Picture

    def whole(self) -> Picture:
        rgb = join_strips(self.strips, self.height, self.width, self.source.rgb.dtype)
        alpha = None if self.alpha is None else np.asarray(self.alpha)
        return dataclasses.replace(self.source, rgb=rgb, alpha=alpha)


def upscale_picture(runner: Runner, picture: Picture,
                    options: InferenceOptions = InferenceOptions()) -> UpscaledPicture:
    """The one way a picture is upscaled, by ``litesr upscale`` and ``litesr.upscale`` alike: the RGB by the runner,
    tile by tile (:func:`litesr.tiling.upscale_strips`), the transparency by bicubic interpolation, the rest of the
    picture (grayscale, depth, colour profile, EXIF) carried over. Nothing is computed until the strips are read."""
    s = runner.scale
    h, w = picture.rgb.shape[:2]
    strips = upscale_strips(runner, picture.rgb, options)
    alpha = None if picture.alpha is None else UpscaledAlpha(picture.alpha, s)
    return UpscaledPicture(strips, alpha, w * s, h * s, picture)


def _picture_from_array(image: np.ndarray):
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
        hint = "; for a tensor use litesr.tiling.upscale_tensor(model, x)" if isinstance(image, torch.Tensor) else ""
        raise TypeError(f"upscale: image must be a PIL image, a numpy array or a path, got {type(image).__name__}"
                        + hint)
    if model is not None and not isinstance(model, (nn.Module, Runner, str, os.PathLike)):
        raise TypeError(f"upscale: model must be an nn.Module, a checkpoint path, a variant name or None, got "
                        f"{type(model).__name__}")
    if scale is not None and (isinstance(scale, bool) or not isinstance(scale, int) or scale not in SCALES):
        raise ValueError(f"upscale: scale must be one of {', '.join(map(str, SCALES))} or None, got {scale!r}")
    if tile is not None and (isinstance(tile, bool) or not isinstance(tile, int) or tile < 1):
        raise ValueError(f"upscale: tile must be a positive int or None (whole image), got {tile!r}")
    if overlap is not None and (isinstance(overlap, bool) or not isinstance(overlap, int) or overlap < 0):
        raise ValueError(f"upscale: overlap must be an int >= 0 or None (the model's default), got {overlap!r}")
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
