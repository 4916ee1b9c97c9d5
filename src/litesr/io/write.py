"""Writing images atomically, in the format their suffix names: PNG encoded strip by strip as the upscaler yields
them (memory: one strip), the other formats through Pillow; 16-bit, transparency, ICC and EXIF where the format
holds them."""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import Iterable

import numpy as np
from PIL import Image

from ..errors import OutputError
from .files import atomic_path
from .pixels import luma, to_bits, to_pil

#: Output formats by suffix, and whether they can store transparency.
FORMATS = {".png": ("PNG", True), ".jpg": ("JPEG", False), ".jpeg": ("JPEG", False), ".webp": ("WEBP", True),
           ".bmp": ("BMP", False), ".tif": ("TIFF", True), ".tiff": ("TIFF", True)}
#: Largest side each format can hold (PNG: none that matters).
MAX_SIDE = {"JPEG": 65535, "WEBP": 16383, "BMP": 2**31 - 1, "TIFF": 2**31 - 1, "PNG": 2**31 - 1}
#: Formats other than PNG are encoded by Pillow from the whole image in memory; above this many output bytes
#: litesr refuses them and asks for PNG, which it writes strip by strip in bounded memory.
MAX_HELD_OUTPUT_BYTES = 2**30


def keeps_alpha(path: str | os.PathLike) -> bool:
    """Whether the format chosen by ``path``'s suffix stores transparency."""
    return FORMATS.get(Path(path).suffix.lower(), ("PNG", True))[1]


def output_format(path: str | os.PathLike) -> str:
    """Pillow's name of the format ``path``'s suffix selects (PNG when there is none we know)."""
    return FORMATS.get(Path(path).suffix.lower(), ("PNG", True))[0]


def keeps_16_bit(path: str | os.PathLike, grayscale: bool, alpha: bool = False) -> bool:
    """PNG stores 16-bit gray and colour (with alpha too); TIFF (through Pillow) 16-bit gray without alpha only;
    the others 8 bits."""
    fmt = output_format(path)
    return fmt == "PNG" or (fmt == "TIFF" and grayscale and not alpha)


def check_output_size(path: str | os.PathLike, width: int, height: int, channels: int = 3) -> None:
    """Refuse, before computing, an output its format cannot hold or that Pillow would need whole in memory."""
    fmt = output_format(path)
    if max(width, height) > MAX_SIDE[fmt]:
        raise OutputError(f"cannot write {path}: {fmt} holds at most {MAX_SIDE[fmt]} pixels per side and the output "
                          f"is {width}x{height}; write .png")
    if fmt != "PNG" and width * height * channels > MAX_HELD_OUTPUT_BYTES:
        raise OutputError(f"cannot write {path}: a {width}x{height} {fmt} output would be held whole in memory "
                          f"({width * height * channels / 2**30:.1f} GiB); write .png, which litesr streams in "
                          "strips")


def write_image(img: np.ndarray, path: str | os.PathLike, alpha: np.ndarray | None = None,
                grayscale: bool = False) -> Path:
    """Write uint8 (or uint16) ``H×W×3`` atomically; the format follows the suffix (PNG when there is none we know).

    ``alpha`` (H×W) is stored where the format can hold it; ``grayscale`` writes one channel (BT.601 luma).
    """
    return write_strips(path, [img], img.shape[1], img.shape[0], alpha=alpha, grayscale=grayscale)


def write_strips(path: str | os.PathLike, strips: Iterable[np.ndarray], width: int, height: int, *,
                 alpha: np.ndarray | None = None, grayscale: bool = False, icc: bytes | None = None,
                 exif: bytes | None = None, quality: int = 95, lossless: bool = False) -> Path:
    """Write an image given as horizontal strips (``h×width×3`` arrays, top to bottom), atomically.

    PNG is encoded as the strips arrive, so only one strip is ever held (plus ``alpha``, when there is one);
    the other formats are assembled and handed to Pillow. uint16 strips stay 16-bit where the format can
    (:func:`keeps_16_bit`), else they are rounded to 8 bits. ``icc``/``exif`` are embedded where the format can
    hold them; ``quality`` sets JPEG and lossy WebP; ``lossless`` makes WebP lossless. ``alpha`` is an ``H×W``
    array, or anything sliced by rows like one (``litesr.api.UpscaledAlpha`` computes the rows asked).
    """
    path = Path(path)
    fmt, has_alpha = FORMATS.get(path.suffix.lower(), ("PNG", True))
    alpha = alpha if has_alpha else None
    with atomic_path(path) as tmp:
        if fmt == "PNG":
            _write_png_stream(tmp, strips, width, height, alpha, grayscale, icc, exif)
            return path
        deep = keeps_16_bit(path, grayscale, alpha is not None)
        parts = [to_bits(strip, deep) for strip in strips]
        rgb = parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)
        del parts
        if rgb.dtype == np.uint16:  # 16-bit gray TIFF
            picture = Image.fromarray(luma(rgb))
        else:
            picture = to_pil(rgb, None if alpha is None else to_bits(np.asarray(alpha), False), grayscale)
        options: dict = {}
        if fmt in ("JPEG", "WEBP"):
            options["quality"] = int(quality)
        if fmt == "WEBP" and lossless:
            options.update(lossless=True, quality=100)
        if icc and fmt in ("JPEG", "WEBP", "TIFF"):
            options["icc_profile"] = icc
        if exif and fmt in ("JPEG", "WEBP", "TIFF"):
            options["exif"] = exif
        picture.save(tmp, format=fmt, **options)
    return path


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


#: zlib settings of the PNG encoder: level 4 with the filtered strategy (zlib's tuning for filtered image rows).
#: On x4 outputs of litesr upscale (2-core EPYC), against zlib's default level 6: 39 MP in 1.9 s instead of 7.3 s
#: and 10 MP in 0.58 s instead of 2.0 s (a 1920x1284 input's whole upscale ~14 % faster), files 4-5 % larger (2 %
#: smaller on a 0.3 MP one); level 1 was 8x faster but 8-25 % larger, level 5 2x faster and 2 % larger.
PNG_ZLIB = (4, zlib.DEFLATED, 15, 8, zlib.Z_FILTERED)


def _write_png_stream(path: Path, strips: Iterable[np.ndarray], width: int, height: int, alpha: np.ndarray | None,
                      grayscale: bool, icc: bytes | None, exif: bytes | None) -> None:
    """A PNG encoder that takes the image strip by strip (Paeth filter, :data:`PNG_ZLIB`): memory is one strip."""
    channels = (1 if grayscale else 3) + (alpha is not None)
    bits = None
    with open(path, "wb") as f:
        z = zlib.compressobj(*PNG_ZLIB)
        prev = None
        rows_done = 0
        for strip in strips:
            if bits is None:
                bits = 16 if strip.dtype == np.uint16 else 8
                color = {1: 0, 2: 4, 3: 2, 4: 6}[channels]
                f.write(b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, bits,
                                                                                 color, 0, 0, 0)))
                if icc:
                    f.write(_png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc)))
                if exif:
                    f.write(_png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif))
            n = strip.shape[0]
            planes = [luma(strip)[..., None] if grayscale else strip]
            if alpha is not None:
                planes.append(to_bits(alpha[rows_done:rows_done + n], bits == 16)[..., None])
            pixels = np.concatenate(planes, axis=2) if len(planes) > 1 else planes[0]
            pixels = np.ascontiguousarray(pixels, dtype=">u2" if bits == 16 else np.uint8)
            raw = pixels.view(np.uint8).reshape(n, -1)
            for i in range(0, n, 16):  # bounded temporaries, whatever the strip height
                block = raw[i:i + 16]
                data = _paeth_rows(block, prev, channels * bits // 8)
                prev = block[-1]
                out = z.compress(data)
                if out:
                    f.write(_png_chunk(b"IDAT", out))
            rows_done += n
        if rows_done != height:
            raise ValueError(f"PNG stream got {rows_done} rows for a {height}-row image")  # a bug, not user error
        f.write(_png_chunk(b"IDAT", z.flush()) + _png_chunk(b"IEND", b""))


def _paeth_rows(rows: np.ndarray, prev: np.ndarray | None, bpp: int) -> bytes:
    """Rows of bytes → PNG scanlines with filter 4 (Paeth), each led by its filter-type byte."""
    x = rows.astype(np.int16)
    up = np.empty_like(x)
    up[0] = 0 if prev is None else prev
    up[1:] = x[:-1]
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    p = left + up - upleft
    pa, pb, pc = np.abs(p - left), np.abs(p - up), np.abs(p - upleft)
    pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    filtered = ((x - pred) & 0xFF).astype(np.uint8)
    return np.concatenate([np.full((len(rows), 1), 4, np.uint8), filtered], axis=1).tobytes()

