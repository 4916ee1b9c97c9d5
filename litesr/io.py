"""Image and file I/O: tolerant readers with clear errors, atomic writers (no half-written outputs)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images (by suffix, see ``IMAGE_SUFFIXES``) directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageReadError(ValueError):
    """An input image is missing, unreadable or truncated."""


@dataclass
class Picture:
    """A decoded image: uint8 RGB, plus what the upscaler must carry over to its output."""

    rgb: np.ndarray  # H×W×3 uint8 (grayscale replicated)
    alpha: np.ndarray | None = None  # H×W uint8 transparency, if the file has any
    grayscale: bool = False  # the file stores one intensity channel


def read_picture(path: str | os.PathLike) -> Picture:
    """Decode an image fully (truncated files fail here), upright per its EXIF orientation.

    Palette and CMYK images become RGB; 16-bit and 32-bit grayscale are scaled to 8 bits, not clipped.
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"input not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a directory, not an image")
    try:
        with Image.open(path) as img:
            img.load()  # forces a full decode so truncated files fail here, not later
            img = ImageOps.exif_transpose(img)
            return picture_from_pil(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc} (is it a complete PNG/JPEG/WebP file?)") from exc


def picture_from_pil(img: Image.Image) -> Picture:
    """The :class:`Picture` of a loaded PIL image (any mode): RGB uint8, alpha if it has any, grayscale flag."""
    alpha = None
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        alpha = np.array(img.getchannel("A"))
        img = img.convert("L" if img.mode in ("LA", "La") else "RGB")
    if img.mode.startswith("I;16") or img.mode in ("I", "F"):
        wide = np.array(img).astype(np.float64)
        if img.mode.startswith("I;16"):
            top = 65535.0
        elif img.mode == "I":  # 16-bit PNGs open as "I" in some Pillow versions
            top = 65535.0 if wide.max() > 255 else 255.0
        else:  # float images: [0, 1] or [0, 255]
            top = 1.0 if wide.max() <= 1.0 else 255.0
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


def image_to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 ``H×W×3`` → float ``1×3×H×W`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)


def tensor_to_image(x: torch.Tensor) -> np.ndarray:
    """float ``1×3×H×W`` (or ``3×H×W``) in [0, 1] → uint8 ``H×W×3``, clamped and rounded."""
    if x.dim() == 4:
        x = x[0]
    return x.detach().float().clamp(0, 1).mul(255.0).round().byte().permute(1, 2, 0).cpu().numpy()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on failure delete it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


#: Output formats by suffix, and whether they can store transparency.
FORMATS = {".png": ("PNG", True), ".jpg": ("JPEG", False), ".jpeg": ("JPEG", False), ".webp": ("WEBP", True),
           ".bmp": ("BMP", False), ".tif": ("TIFF", True), ".tiff": ("TIFF", True)}


def keeps_alpha(path: str | os.PathLike) -> bool:
    """Whether the format chosen by ``path``'s suffix stores transparency."""
    return FORMATS.get(Path(path).suffix.lower(), ("PNG", True))[1]


def write_image(img: np.ndarray, path: str | os.PathLike, alpha: np.ndarray | None = None,
                grayscale: bool = False) -> Path:
    """Write uint8 ``H×W×3`` atomically; the format follows the suffix (PNG when there is none we know).

    ``alpha`` (H×W uint8) is stored where the format can hold it; ``grayscale`` writes one channel (BT.601 luma).
    """
    path = Path(path)
    fmt, has_alpha = FORMATS.get(path.suffix.lower(), ("PNG", True))
    picture = to_pil(img, alpha if has_alpha else None, grayscale)
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        picture.save(tmp, format=fmt, **options)
    return path


def to_pil(rgb: np.ndarray, alpha: np.ndarray | None = None, grayscale: bool = False) -> Image.Image:
    """uint8 ``H×W×3`` (+ ``H×W`` alpha) → PIL image; ``grayscale`` keeps one channel (BT.601 luma)."""
    picture = Image.fromarray(rgb)
    if grayscale:
        picture = picture.convert("L")
    if alpha is not None:
        picture.putalpha(Image.fromarray(alpha))
    return picture
