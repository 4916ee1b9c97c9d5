"""litesr's 16-bit colour PNG decoder (Pillow keeps only 8 bits of those): every filter type, bit for bit."""

import struct
import zlib

import numpy as np
import pytest

from litesr.io import read_picture, write_image
from litesr.io.read import _png_16_bit_colour, _unfilter

FILTERS = {"none": 0, "sub": 1, "up": 2, "average": 3, "paeth": 4}


def reference_unfilter(rows: np.ndarray, width: int, bpp: int) -> np.ndarray:
    """The PNG specification's reconstruction, a byte at a time (litesr's decoder before it was vectorised)."""
    height, stride = rows.shape[0], width * bpp
    out = np.empty((height, stride), np.uint8)
    prev = bytes(stride)
    for y in range(height):
        kind, cur = rows[y, 0], bytearray(rows[y, 1:].tobytes())
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if kind == 1:
                cur[i] = (cur[i] + a) & 0xFF
            elif kind == 2:
                cur[i] = (cur[i] + b) & 0xFF
            elif kind == 3:
                cur[i] = (cur[i] + ((a + b) >> 1)) & 0xFF
            elif kind == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                cur[i] = (cur[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xFF
        out[y] = np.frombuffer(bytes(cur), np.uint8)
        prev = bytes(cur)
    return out


def filter_rows(raw: np.ndarray, kinds: list[int], bpp: int) -> np.ndarray:
    """Image bytes → scanlines, row y filtered with ``kinds[y]`` (the encoder's side of each filter)."""
    x = raw.astype(np.int16)
    up = np.vstack([np.zeros_like(x[:1]), x[:-1]])
    left = np.zeros_like(x)
    left[:, bpp:] = x[:, :-bpp]
    upleft = np.zeros_like(x)
    upleft[:, bpp:] = up[:, :-bpp]
    pa, pb, pc = np.abs(up - upleft), np.abs(left - upleft), np.abs(left + up - 2 * upleft)
    paeth = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, up, upleft))
    predictions = [np.zeros_like(x), left, up, (left + up) >> 1, paeth]
    lines = [((x[y] - predictions[k][y]) & 0xFF).astype(np.uint8) for y, k in enumerate(kinds)]
    return np.column_stack([np.array(kinds, np.uint8), np.array(lines)])


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def write_png_16(path, pixels: np.ndarray, kinds: list[int], interlace: int = 0) -> None:
    """A 16-bit PNG of ``pixels`` (H×W×C uint16, C = 2, 3 or 4), row y filtered with ``kinds[y]``."""
    height, width, channels = pixels.shape
    raw = np.ascontiguousarray(pixels, ">u2").view(np.uint8).reshape(height, -1)
    scanlines = filter_rows(raw, kinds, 2 * channels)
    header = struct.pack(">IIBBBBB", width, height, 16, {2: 4, 3: 2, 4: 6}[channels], 0, 0, interlace)
    with open(path, "wb") as f:
        f.write(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header) + _chunk(b"IDAT", zlib.compress(scanlines.tobytes()))
                + _chunk(b"IEND", b""))


def row_kinds(pattern: str, height: int, rng) -> list[int]:
    if pattern in FILTERS:
        return [FILTERS[pattern]] * height
    if pattern == "mixed":
        return list(rng.integers(0, 5, height))
    return [(1, 2, 0)[y % 3] if y < height // 3 or y >= 2 * height // 3 else (3, 4)[y % 2] for y in range(height)]


@pytest.mark.parametrize("channels", [2, 3, 4])  # gray+alpha, RGB, RGBA
@pytest.mark.parametrize("pattern", [*FILTERS, "mixed", "hard-in-the-middle"])
@pytest.mark.parametrize("size", [(1, 1), (1, 9), (9, 1), (13, 17), (17, 13)])
def test_every_filter_decodes_bit_exactly(tmp_path, channels, pattern, size):
    rng = np.random.default_rng(zlib.crc32(repr((channels, pattern, size)).encode()))
    height, width = size
    pixels = rng.integers(0, 65536, (height, width, channels), dtype=np.uint16)
    if channels != 3:
        pixels[..., -1] = np.minimum(pixels[..., -1], 65534)  # an alpha all opaque would read as none
    kinds = row_kinds(pattern, height, rng)
    path = tmp_path / "deep.png"
    write_png_16(path, pixels, kinds)
    assert _png_16_bit_colour(path) is not None  # read by litesr's decoder, not Pillow's
    picture = read_picture(path, keep_depth=True)
    rgb = np.repeat(pixels[..., :1], 3, axis=2) if channels == 2 else pixels[..., :3]
    assert picture.rgb.dtype == np.uint16 and np.array_equal(picture.rgb, rgb)
    assert np.array_equal(picture.alpha, pixels[..., -1]) if channels != 3 else picture.alpha is None
    scanlines = filter_rows(np.ascontiguousarray(pixels, ">u2").view(np.uint8).reshape(height, -1), kinds,
                            2 * channels)
    assert np.array_equal(_unfilter(scanlines, width, 2 * channels),
                          reference_unfilter(scanlines, width, 2 * channels))


@pytest.mark.parametrize("bpp", [1, 3, 4, 6, 8])
def test_random_scanlines_unfilter_as_the_specification_says(bpp):
    """Any bytes under any filter types (every wrap-around and Paeth tie), against the byte-at-a-time decoder."""
    rng = np.random.default_rng(bpp)
    for height, width in [(1, 1), (2, 1), (1, 5), (7, 11), (11, 7), (24, 24)]:
        rows = rng.integers(0, 256, (height, width * bpp + 1), dtype=np.uint8)
        rows[:, 0] = rng.integers(0, 5, height)
        rows[rng.random((height, width * bpp + 1)) < 0.3] = 0  # ties and zeros
        rows[:, 0] = rng.integers(0, 5, height)
        assert np.array_equal(_unfilter(rows, width, bpp), reference_unfilter(rows, width, bpp)), (height, width)
    rows[3, 0] = 5
    with pytest.raises(OSError, match="filter type 5"):
        _unfilter(rows, 24, bpp)


def test_litesr_png_writer_reads_back_and_interlaced_files_go_to_pillow(tmp_path):
    rng = np.random.default_rng(0)
    deep = rng.integers(0, 65536, (19, 23, 3), dtype=np.uint16)
    write_image(deep, tmp_path / "own.png")  # litesr's writer: Paeth on every row
    assert np.array_equal(read_picture(tmp_path / "own.png", keep_depth=True).rgb, deep)
    write_png_16(tmp_path / "interlaced.png", deep, [0] * 19, interlace=1)  # a header that says Adam7
    assert _png_16_bit_colour(tmp_path / "interlaced.png") is None  # interlaced files are left to Pillow
