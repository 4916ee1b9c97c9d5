"""Reading images: tolerant decoders with clear errors (truncated, animated, too large), upright per EXIF, 16-bit
kept (with litesr's own decoder for the 16-bit colour PNGs Pillow reads as 8 bits), ICC and EXIF carried over."""

from __future__ import annotations

import contextlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..errors import LitesrError

#: Default input limit of ``read_picture(..., max_pixels=...)`` and ``litesr upscale --max-pixels``: 50 MP, a
#: 8660×5773 photo; its ×4 output alone is 800 MP. Pillow's own guard would warn at 89 MP and fail at 179 MP.
DEFAULT_MAX_PIXELS = 50_000_000


class ImageReadError(LitesrError, ValueError):
    """An input image is missing, unreadable, truncated, animated or too large; the message names it."""


@dataclass
class Picture:
    """A decoded image, plus what the upscaler must carry over to its output.

    ``rgb`` is uint8, or uint16 for a 16-bit file read with ``keep_depth``; ``alpha`` has the same dtype.
    """

    rgb: np.ndarray  # H×W×3 (grayscale replicated)
    alpha: np.ndarray | None = None  # H×W transparency, if the file has any
    grayscale: bool = False  # the file stores one intensity channel
    icc: bytes | None = None  # ICC profile, when it describes the colour space of ``rgb`` (RGB, or GRAY if gray)
    exif: bytes | None = None  # EXIF block, orientation removed (the pixels are upright already)
    lossless: bool = True  # the file was stored losslessly (PNG, TIFF, BMP, GIF, lossless WebP)
    format: str = ""  # Pillow's format name of the file

    @property
    def bits(self) -> int:
        return 16 if self.rgb.dtype == np.uint16 else 8


@contextlib.contextmanager
def _pixel_guard(max_pixels: int | None) -> Iterator[None]:
    """With our own limit, Pillow's global decompression-bomb guard (a warning, then an error) steps aside."""
    if max_pixels is None:
        yield
        return
    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        yield
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def read_picture(path: str | os.PathLike, *, max_pixels: int | None = None, first_frame: bool = False,
                 keep_depth: bool = False, metadata: bool = True) -> Picture:
    """Decode an image fully (truncated files fail here), upright per its EXIF orientation.

    Palette and CMYK images become RGB. 16-bit images stay 16-bit (uint16) with ``keep_depth``, else they are
    scaled to 8 bits, not clipped. ``max_pixels`` refuses larger images from their header, before decoding
    (the declared size of a 60000×60000 PNG costs nothing to read); 0 means no limit. Either way Pillow's own
    guard (a raw warning at 89 MP, an error at 179 MP) steps aside; None leaves it in place. An animation is
    refused unless ``first_frame``. ``metadata`` reads the ICC profile and EXIF to carry over.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"input not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a directory, not an image")
    if path.stat().st_size == 0:
        raise ImageReadError(f"cannot read image {path}: the file is empty (0 bytes)")
    try:
        with _pixel_guard(max_pixels), Image.open(path) as img:
            w, h = img.size
            if max_pixels and w * h > max_pixels:
                raise ImageReadError(
                    f"{path} is {w}x{h} = {w * h / 1e6:.0f} MP, above the limit of {max_pixels / 1e6:g} MP "
                    f"(a x4 output would be {16 * w * h / 1e6:,.0f} MP); raise it with --max-pixels "
                    "(max_pixels= in Python) if you mean it")
            frames = getattr(img, "n_frames", 1)
            if frames > 1 and not first_frame:
                raise ImageReadError(f"{path} is animated ({frames} frames); litesr upscales still images: pass "
                                     "--first-frame (first_frame=True in Python) to upscale its first frame")
            fmt = img.format or ""
            lossless = fmt in ("PNG", "TIFF", "BMP", "GIF") or (fmt == "WEBP" and _webp_is_lossless(path))
            deep = _png_16_bit_colour(path) if keep_depth and fmt == "PNG" else None
            if deep is not None:  # Pillow reads 16-bit colour PNGs as 8 bits: decode them here
                picture = _upright(_read_png_16(path, *deep), img.getexif().get(0x0112, 1))
                _carry_metadata(picture, img, metadata)
            else:
                img.load()  # forces a full decode so truncated files fail here, not later
                picture = picture_from_image(img, keep_depth=keep_depth, metadata=metadata)
    except ImageReadError:
        raise
    except UnidentifiedImageError as exc:
        raise ImageReadError(f"cannot read image {path}: not a PNG, JPEG, WebP, TIFF, BMP or GIF file (or a damaged "
                             "one)") from exc
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc} (is the file complete?)") from exc
    picture.lossless, picture.format = lossless, fmt
    return picture


def picture_from_image(img: Image.Image, *, keep_depth: bool = False, metadata: bool = True) -> Picture:
    """The :class:`Picture` of an opened PIL image, as ``litesr upscale`` reads a file: upright per its EXIF
    orientation, alpha kept, 16-bit and float depth kept with ``keep_depth``, and with ``metadata`` its ICC
    profile (where it describes the pixels) and EXIF (orientation removed) to carry over. ``litesr.upscale``
    reads PIL images through this too, so a PIL image and its file give the same result."""
    upright = ImageOps.exif_transpose(img)
    picture = picture_from_pil(upright if upright is not None else img, keep_depth=keep_depth)
    _carry_metadata(picture, img, metadata)
    return picture


def _carry_metadata(picture: Picture, img: Image.Image, metadata: bool) -> None:
    """Set ``picture``'s EXIF (orientation removed) and ICC profile from ``img`` (the image as opened)."""
    if not metadata:
        return
    picture.exif = _exif_without_orientation(img)
    icc = img.info.get("icc_profile")
    if icc and img.mode != "CMYK":  # a CMYK profile does not describe the RGB pixels made from it
        space = icc[16:20] if len(icc) >= 20 else b""
        if space == (b"GRAY" if picture.grayscale else b"RGB "):
            picture.icc = bytes(icc)


def _png_16_bit_colour(path: Path) -> tuple[int, int, int, int] | None:
    """(width, height, colour type, interlace) of a 16-bit colour or gray+alpha PNG, else None."""
    with open(path, "rb") as f:
        head = f.read(33)
    if len(head) < 33 or head[:8] != b"\x89PNG\r\n\x1a\n" or head[12:16] != b"IHDR":
        return None
    width, height, bits, color, _, _, interlace = struct.unpack(">IIBBBBB", head[16:29])
    return (width, height, color, interlace) if bits == 16 and color in (2, 4, 6) and not interlace else None


def _read_png_16(path: Path, width: int, height: int, color: int, interlace: int) -> Picture:
    """Decode a non-interlaced 16-bit RGB / RGBA / gray+alpha PNG to uint16 (Pillow keeps only 8 bits of these)."""
    channels = {2: 3, 4: 2, 6: 4}[color]
    data = bytearray()
    key = None
    with open(path, "rb") as f:
        f.read(8)
        while True:
            head = f.read(8)
            if len(head) < 8:
                raise OSError("truncated PNG file (no IEND chunk)")
            length, kind = struct.unpack(">I4s", head)
            body = f.read(length)
            f.read(4)
            if len(body) < length:
                raise OSError("truncated PNG file")
            if kind == b"IDAT":
                data += body
            elif kind == b"tRNS" and color == 2 and len(body) == 6:  # a colour key: pixels of that colour are clear
                key = struct.unpack(">HHH", body)
            elif kind == b"IEND":
                break
    bpp = 2 * channels
    stride = width * bpp
    try:
        raw = zlib.decompress(bytes(data))
    except zlib.error as exc:
        raise OSError(f"corrupt PNG data ({exc})") from exc
    if len(raw) < height * (stride + 1):
        raise OSError("truncated PNG file (image data ends early)")
    rows = np.frombuffer(raw, np.uint8, count=height * (stride + 1)).reshape(height, stride + 1)
    out = _unfilter(rows, width, bpp)
    pixels = out.view(">u2").reshape(height, width, channels).astype(np.uint16)
    if channels == 2:
        rgb, alpha, gray = np.repeat(pixels[..., :1], 3, axis=2), pixels[..., 1], True
    else:
        rgb, alpha, gray = pixels[..., :3], (pixels[..., 3] if channels == 4 else None), False
        if key is not None:
            alpha = np.where((rgb == np.array(key, np.uint16)).all(axis=2), 0, 65535).astype(np.uint16)
    if alpha is not None and alpha.min() == 65535:
        alpha = None
    return Picture(np.ascontiguousarray(rgb), None if alpha is None else np.ascontiguousarray(alpha), gray)


def _unfilter(rows: np.ndarray, width: int, bpp: int) -> np.ndarray:
    """PNG scanlines (each led by its filter type) → the image's bytes, ``height × width·bpp`` uint8.

    None, Sub and Up rows are undone a row at a time (Sub: a running sum mod 256 along each byte lane of the
    pixel). Average and Paeth need each byte's decoded left neighbour, so the rows from the first to the last of
    those are undone together along anti-diagonals (:func:`_unfilter_diagonals`), all types alike."""
    height = rows.shape[0]
    kinds, lines = rows[:, 0], rows[:, 1:]
    if height and kinds.max() > 4:
        raise OSError(f"corrupt PNG data (filter type {kinds[kinds > 4][0]})")
    out = np.empty((height, width * bpp), np.uint8)
    hard = np.flatnonzero(kinds >= 3)
    first, last = (hard[0], hard[-1] + 1) if hard.size else (height, height)
    prev = np.zeros(width * bpp, np.uint8)
    for y in range(first):
        prev = out[y] = _unfilter_row(kinds[y], lines[y], prev, width, bpp)
    if hard.size:
        out[first:last] = _unfilter_diagonals(lines[first:last], kinds[first:last], prev, width, bpp)
        prev = out[last - 1]
    for y in range(last, height):
        prev = out[y] = _unfilter_row(kinds[y], lines[y], prev, width, bpp)
    return out


def _unfilter_row(kind: int, line: np.ndarray, prev: np.ndarray, width: int, bpp: int) -> np.ndarray:
    """One scanline of filter type None, Sub or Up, undone."""
    if kind == 0:
        return line
    if kind == 1:  # a running sum (mod 256) along each byte lane of the pixel
        return np.cumsum(line.reshape(width, bpp), axis=0, dtype=np.uint64).astype(np.uint8).reshape(-1)
    return line + prev


def _unfilter_diagonals(lines: np.ndarray, kinds: np.ndarray, up: np.ndarray, width: int, bpp: int) -> np.ndarray:
    """Undo the filters of ``lines`` (any of the five types; ``up``: the decoded row above them) one anti-diagonal
    of pixels at a time: pixel (y, x) needs (y, x-1), (y-1, x) and (y-1, x-1), all on the two diagonals before
    its own, so each diagonal is a few numpy operations over its pixels and byte lanes, height + width - 1 steps.

    The decoded bytes sit in a zero-bordered (height+1) × (width+1) grid of pixels, flattened, the row above in its
    first row: the pixels of one diagonal are then every ``width``-th pixel, a strided slice, and their left, upper
    and upper-left neighbours the same slice moved back by 1, width + 1 and width + 2. The grid is uint8, as big as
    the image's bytes; only each diagonal is widened to int16."""
    height, w = len(lines), width
    grid = np.zeros(((height + 1) * (w + 1), bpp), np.uint8)
    grid[1:w + 1] = up.reshape(w, bpp)
    filtered = lines.reshape(height * w, bpp)  # pixel (y, x) at y*w + x
    one_kind = int(kinds[0]) if (kinds == kinds[0]).all() else None
    kinds = kinds.astype(np.int16)[:, None]
    for t in range(height + w - 1):
        y0, y1 = max(0, t - w + 1), min(height - 1, t)
        n = y1 - y0 + 1
        at = y0 * w + w + t + 2  # grid index of pixel (y0, t - y0)
        span = (n - 1) * w + 1
        a = grid[at - 1:at - 1 + span:w].astype(np.int16)  # left
        b = grid[at - w - 1:at - w - 1 + span:w].astype(np.int16)  # up
        c = grid[at - w - 2:at - w - 2 + span:w].astype(np.int16)  # up-left
        f0 = y0 * (w - 1) + t
        f = filtered[f0:f0 + (n - 1) * (w - 1) + 1:max(w - 1, 1)]
        if one_kind == 3:
            pred = (a + b) >> 1
        else:
            pa, pb, pc = np.abs(b - c), np.abs(a - c), np.abs(a + b - 2 * c)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, b, c))
            if one_kind is None:
                k = kinds[y0:y1 + 1]
                pred = np.where(k == 4, pred, np.where(k == 3, (a + b) >> 1, np.where(k == 2, b, k * a)))
        grid[at:at + span:w] = (f + pred) & 0xFF
    return grid.reshape(height + 1, w + 1, bpp)[1:, 1:].reshape(height, w * bpp)


def _upright(picture: Picture, orientation: int) -> Picture:
    """Apply an EXIF orientation (1-8) to a picture's arrays, as ``ImageOps.exif_transpose`` does to an image."""
    ops = {2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, 1)[::-1],
           8: lambda a: np.rot90(a, 1)}
    op = ops.get(int(orientation or 1))
    if op is None:
        return picture
    picture.rgb = np.ascontiguousarray(op(picture.rgb))
    if picture.alpha is not None:
        picture.alpha = np.ascontiguousarray(op(picture.alpha))
    return picture


def _exif_without_orientation(img: Image.Image) -> bytes | None:
    try:
        exif = img.getexif()
    except Exception:  # a damaged EXIF block is no reason to refuse the pixels  # noqa: BLE001
        return None
    if not exif:
        return None
    copy = Image.Exif()  # a copy: the image's own Exif must keep its orientation for exif_transpose
    copy.load(exif.tobytes())
    copy.pop(0x0112, None)  # orientation: the pixels are turned upright on reading
    return copy.tobytes() if len(copy) else None


def _webp_is_lossless(path: Path) -> bool:
    """A WebP file whose first chunk (after any extended-format header) is VP8L is lossless."""
    with open(path, "rb") as f:
        head = f.read(64)
    return b"VP8L" in head and b"VP8 " not in head


def picture_from_pil(img: Image.Image, keep_depth: bool = False) -> Picture:
    """The :class:`Picture` of a loaded PIL image (any mode): RGB, alpha if it has any, grayscale flag.

    8-bit unless ``keep_depth`` and the image is 16-bit (Pillow holds those as ``I;16*`` or ``I``): then uint16.
    """
    alpha = None
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    elif img.mode in ("RGB", "L") and img.info.get("transparency") is not None:
        img = img.convert("RGBA" if img.mode == "RGB" else "LA")  # a colour key (PNG tRNS): kept as alpha
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.array(img.getchannel("A"))
        img = img.convert("L" if img.mode in ("LA", "La") else "RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        wide = np.array(img).astype(np.float64)
        top = white_level(img)
        if keep_depth and (top == 65535.0 or img.mode == "F"):  # floats keep 16 bits of their precision
            deep = np.clip(np.round(wide * (65535.0 / top)), 0, 65535).astype(np.uint16)
            rgb = np.ascontiguousarray(np.repeat(deep[:, :, None], 3, axis=2))
            if alpha is not None:
                alpha = None if alpha.min() == 255 else alpha.astype(np.uint16) * 257
            return Picture(rgb, alpha, True)
        img = Image.fromarray(np.clip(np.round(wide * (255.0 / top)), 0, 255).astype(np.uint8))
    grayscale = img.mode in ("L", "1")
    if img.mode not in ("RGB", "L"):
        img = img.convert("RGB")
    arr = np.array(img)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    if alpha is not None and alpha.min() == 255:
        alpha = None  # an opaque alpha channel carries nothing
    return Picture(np.ascontiguousarray(arr[:, :, :3]), alpha, grayscale)


def white_level(img: Image.Image) -> float:
    """The value of white in a wide PIL image: 65535 for ``I;16*`` (and an ``I`` image above 255: 16-bit PNGs
    open as ``I`` in some Pillow versions), 255 for other ``I``; 1.0 or 255 for ``F`` (by its largest value)."""
    if img.mode.startswith("I;16"):
        return 65535.0
    if img.mode == "I":
        return 65535.0 if np.asarray(img).max(initial=0) > 255 else 255.0
    if img.mode == "F":
        return 1.0 if np.asarray(img).max(initial=0) <= 1.0 else 255.0
    return 255.0


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as uint8 RGB ``H×W×3`` (grayscale is replicated; alpha is dropped)."""
    return read_picture(path).rgb


def is_grayscale_file(path: str | os.PathLike) -> bool:
    """True when the file stores one intensity channel (``read_image`` replicates it to RGB).

    Scoring needs to know: the MATLAB-era tables score a grayscale image on its raw intensities, not on the Y of
    the replicated RGB (see ``litesr.metrics``). Reads the header only.
    """
    try:
        with Image.open(path) as img:
            return img.getbands() in (("L",), ("L", "A"), ("1",), ("I",), ("F",))
    except (UnidentifiedImageError, OSError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc} (is it a complete PNG/JPEG/WebP file?)") from exc

