"""Benchmark sets in the EDSR layout.

``<root>/<Set>/HR/<name>.png`` and ``<root>/<Set>/LR_bicubic/X<s>/<name>x<s>.png``.

Every HR image is cropped to a multiple of the scale at the top-left (``modcrop``), which is what the LR files were
made from, so a pair always satisfies ``HR size == LR size × s``. A set shipped without an ``LR_bicubic/X<s>``
folder (the Urban100 subset here) gets its LR images made on the fly with the MATLAB-compatible resize; a folder
that exists but lacks a file is an error, since silently mixing shipped and generated LR images would skew a mean.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np

from ..errors import LitesrError, NotFoundError
from ..io import image_files, is_grayscale_file, read_image
from .imresize import imresize, modcrop

__all__ = ["BenchmarkImage", "BenchmarkSet", "BenchmarkNotFoundError", "BenchmarkMismatchError", "available_sets"]


class BenchmarkNotFoundError(NotFoundError):
    """A data directory, set, or LR file is missing; the message names the path."""


class BenchmarkMismatchError(LitesrError, ValueError):
    """An HR/LR pair whose sizes do not correspond at the requested scale; the message names both files."""


@dataclass(frozen=True)
class BenchmarkImage:
    """One evaluation pair. ``hr`` is already modcropped; both are uint8 RGB ``H×W×3`` (gray replicated)."""

    name: str
    hr: np.ndarray
    lr: np.ndarray
    hr_is_gray: bool  # the HR file has one channel: matters for the 'raw' gray scoring convention
    lr_generated: bool


def available_sets(root: str | os.PathLike) -> list[str]:
    """Names of the sub-directories of ``root`` that have an ``HR`` folder."""
    root = Path(root)
    if not root.is_dir():
        raise BenchmarkNotFoundError(f"benchmark data directory not found: {root}")
    return sorted(p.name for p in root.iterdir() if (p / "HR").is_dir())


class BenchmarkSet:
    """The (HR, LR) pairs of one set at one scale, read lazily in file-name order."""

    def __init__(self, root: str | os.PathLike, name: str, scale: int) -> None:
        self.root, self.name, self.scale = Path(root), name, int(scale)
        self.hr_dir = self.root / name / "HR"
        if not self.hr_dir.is_dir():
            sets = available_sets(self.root)
            raise BenchmarkNotFoundError(
                f"no benchmark set {name!r} under {self.root} (expected {self.hr_dir}); "
                f"sets found there: {', '.join(sets) if sets else 'none'}"
            )
        self.hr_paths = image_files(self.hr_dir)
        if not self.hr_paths:
            raise BenchmarkNotFoundError(f"no images in {self.hr_dir}")
        self.lr_dir = self.root / name / "LR_bicubic" / f"X{self.scale}"
        self.lr_generated = not self.lr_dir.is_dir()

    def __len__(self) -> int:
        return len(self.hr_paths)

    def __iter__(self) -> Iterator[BenchmarkImage]:
        for hr_path in self.hr_paths:
            yield self.load(hr_path)

    def load(self, hr_path: Path) -> BenchmarkImage:
        s = self.scale
        hr = modcrop(read_image(hr_path), s)
        if self.lr_generated:
            lr = imresize(hr, 1 / s)
        else:
            lr_path = self.lr_dir / f"{hr_path.stem}x{s}{hr_path.suffix}"
            if not lr_path.exists():
                raise BenchmarkNotFoundError(
                    f"missing LR image {lr_path} for {hr_path}; restore it, or remove {self.lr_dir} to have every "
                    "LR image of the set generated with the MATLAB-compatible bicubic resize"
                )
            lr = read_image(lr_path)
            if (lr.shape[0] * s, lr.shape[1] * s) != hr.shape[:2]:
                raise BenchmarkMismatchError(
                    f"{lr_path} is {lr.shape[1]}×{lr.shape[0]}, but {hr_path} cropped to a multiple of {s} is "
                    f"{hr.shape[1]}×{hr.shape[0]} (expected LR {hr.shape[1] // s}×{hr.shape[0] // s}): "
                    f"wrong scale folder or not the same image?"
                )
        return BenchmarkImage(hr_path.stem, hr, lr, is_grayscale_file(hr_path), self.lr_generated)
