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

from .errors import LitesrError, OutputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images (by suffix, see ``IMAGE_SUFFIXES``) directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageReadError(LitesrError, ValueError):
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
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on failure delete it.

    A failure to write (missing or read-only folder, full disk, a file where a folder should be) is an
    :class:`~litesr.errors.OutputError` that names ``path``, never the temporary file.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, LitesrError):
            raise write_error(path, exc) from exc
        raise


def write_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """The one-line error for a failed write of ``path`` (the real destination, whatever file failed)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason = "a file stands where a folder is needed on that path"
    return OutputError(f"cannot write {path}: {reason}")


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail now, before any computing, if ``path`` (a file, or a ``folder``) could not be written.

    Walks up to the nearest existing folder: it must be a folder and writable, and where the destination's own
    folder already exists a probe file is created and removed there (catching read-only file systems and
    permissions ``os.access`` cannot see). Returns ``path``. A full disk can only be found while writing.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; name a file")
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"cannot write into {path}: it is a file, not a folder")
    target = path if folder else path.parent
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".litesr-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise write_error(path, exc) from exc
    return path


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
