"""Image and file I/O: tolerant readers with clear errors, atomic writers (no half-written outputs)."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The images (by suffix, see ``IMAGE_SUFFIXES``) directly inside ``folder``, sorted by name."""
    return sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


class ImageReadError(ValueError):
    """An input image is missing, unreadable or truncated."""


def read_image(path: str | os.PathLike) -> np.ndarray:
    """Read an image as uint8 RGB ``H×W×3`` (grayscale is replicated; alpha is dropped)."""
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"input not found: {path}")
    if path.is_dir():
        raise ImageReadError(f"{path} is a directory, not an image")
    try:
        with Image.open(path) as img:
            img.load()  # forces a full decode so truncated files fail here, not later
            if img.mode not in ("RGB", "L"):
                img = img.convert("RGBA").convert("RGB") if "A" in img.mode else img.convert("RGB")
            arr = np.array(img)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise ImageReadError(f"cannot read image {path}: {exc} (is it a complete PNG/JPEG/WebP file?)") from exc
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return np.ascontiguousarray(arr[:, :, :3])


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


def write_image(img: np.ndarray, path: str | os.PathLike) -> Path:
    """Write uint8 ``H×W×3`` atomically; the format follows the suffix (PNG when there is none we know)."""
    path = Path(path)
    fmt = {".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP", ".tif": "TIFF", ".tiff": "TIFF"}.get(
        path.suffix.lower(), "PNG"
    )
    options = {"quality": 95} if fmt in ("JPEG", "WEBP") else {}
    with atomic_path(path) as tmp:
        Image.fromarray(img).save(tmp, format=fmt, **options)
    return path
