"""Training patches: HR folders with LR made by MATLAB-compatible bicubic, or paired HR/LR folders.

Sampling is a pure function of (seed, global sample number n): sample n belongs to epoch ``n // epoch_length``,
whose image order is a seeded permutation of the (repeated) image list, and its crop and flips come from a
generator seeded with (seed, n). So a run resumed at step k draws exactly the batches an uninterrupted run draws,
whatever the number of workers, and each DDP rank draws its own disjoint share.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset, Sampler

from ..errors import NotFoundError, UsageError
from ..io import IMAGE_SUFFIXES, image_files, read_image


@dataclass
class ImagePair:
    name: str
    hr: np.ndarray  # uint8 H×W×3, H and W multiples of the scale
    lr: np.ndarray  # uint8 (H/s)×(W/s)×3


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise NotFoundError(f"training data folder not found: {folder}")
    files = image_files(folder)
    if not files:
        raise NotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in training folder {folder}")
    return files


def load_hr_folders(folders: Sequence[str | Path], scale: int, min_hr_size: int = 0,
                    cache_dir: str | Path | None = None, hr_scales: Sequence[float] = (1.0,),
                    left_out: list[str] | None = None) -> list[ImagePair]:
    """Read HR images, modcrop them and make their LR with MATLAB bicubic (done once, kept in memory).

    ``hr_scales``: each image is used at each of these sizes, downscaled by MATLAB bicubic before its LR is made
    (1 0.9 0.8 0.7 0.6 is the scale augmentation VDSR and DRRN apply to the 291 images). Images smaller than
    ``min_hr_size`` (the HR patch) cannot give a patch and are left out (their names appended to ``left_out``,
    for the caller to say how many). With ``cache_dir``, decoded HR and
    resized arrays are kept there as ``.npy`` files and memory-mapped: a restarted (resumed) run skips decoding
    and resizing, and the data need not fit in RAM.
    """
    from .imresize import imresize, modcrop

    cache = ArrayCache(cache_dir) if cache_dir else None
    pairs = []
    for folder in folders:
        for path in list_images(folder):
            original = _cached(cache, path, "hr", lambda: read_image(path))
            for factor in hr_scales:
                tag = "" if factor == 1 else f"_s{factor:g}"
                hr = original if factor == 1 else _cached(cache, path, f"hr{tag}",
                                                          lambda: imresize(np.asarray(original), factor))
                hr = modcrop(hr, scale)
                if min(hr.shape[:2]) < min_hr_size:
                    if left_out is not None:
                        left_out.append(path.name + tag.replace("_s", "@"))
                    continue
                lr = _cached(cache, path, f"lr_x{scale}{tag}", lambda: imresize(np.asarray(hr), 1.0 / scale))
                pairs.append(ImagePair(path.name + tag.replace("_s", "@"), hr, lr))
    if not pairs:
        raise UsageError(f"no training image in {', '.join(map(str, folders))} is at least {min_hr_size} px "
                         "on both sides; lower --patch-size")
    return pairs


def load_paired_folders(hr_folder: str | Path, lr_folder: str | Path, scale: int,
                        cache_dir: str | Path | None = None) -> list[ImagePair]:
    """HR/LR folders matched by sorted order (names like ``0001.png`` / ``0001x4.png``); sizes must agree.

    ``cache_dir``: decoded images kept as memory-mapped ``.npy`` files, as in :func:`load_hr_folders`.
    """
    hr_files, lr_files = list_images(hr_folder), list_images(lr_folder)
    if len(hr_files) != len(lr_files):
        raise UsageError(f"{hr_folder} has {len(hr_files)} images but {lr_folder} has {len(lr_files)}")
    cache = ArrayCache(cache_dir) if cache_dir else None

    def decode(p: Path) -> np.ndarray:
        return _cached(cache, p, "image", lambda: read_image(p))

    pairs = []
    for hp, lp in zip(hr_files, lr_files):
        lr = decode(lp)
        hr = decode(hp)[: lr.shape[0] * scale, : lr.shape[1] * scale]
        if hr.shape[0] != lr.shape[0] * scale or hr.shape[1] != lr.shape[1] * scale:
            raise UsageError(f"{hp} ({hr.shape[1]}x{hr.shape[0]}) is smaller than x{scale} of {lp}")
        pairs.append(ImagePair(hp.name, hr, lr))
    return pairs


def _cached(cache: "ArrayCache | None", source: Path, kind: str, make) -> np.ndarray:
    """``make()``, kept in (and read back from) ``cache`` as ``source``'s ``kind`` entry when there is a cache."""
    return cache.get(source, kind, make) if cache else make()


class ArrayCache:
    """Arrays derived from image files, stored as ``.npy`` in one folder and memory-mapped when read back.

    An entry is keyed by the source's resolved path, size and modification time, so an edited image gets a new
    entry; files are written atomically, so concurrent writers (DDP ranks) and killed runs leave no broken entry.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)

    def path(self, source: Path, kind: str) -> Path:
        import hashlib

        st = source.stat()
        key = hashlib.sha1(f"{source.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:16]
        return self.folder / f"{source.stem}-{key}-{kind}.npy"

    def get(self, source: Path, kind: str, make) -> np.ndarray:
        from ..io import atomic_path

        path = self.path(Path(source), kind)
        if path.is_file():
            try:
                return np.load(path, mmap_mode="r")
            except (ValueError, OSError):  # not a complete .npy (should not happen: writes are atomic)
                pass
        array = np.ascontiguousarray(make())
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            np.save(f, array)
        return np.load(path, mmap_mode="r")


class PatchDataset(Dataset):
    """Map-style dataset indexed by the global sample number n (see module docstring)."""

    def __init__(self, pairs: list[ImagePair], scale: int, patch_size: int, repeat: int = 1, augment: bool = True,
                 seed: int = 0) -> None:
        if patch_size % scale:
            raise UsageError(f"HR patch size {patch_size} must be a multiple of the scale {scale}")
        self.pairs, self.scale, self.patch_size = pairs, scale, patch_size
        self.repeat, self.augment, self.seed = max(1, repeat), augment, seed
        self.epoch_length = len(pairs) * self.repeat
        self._order_cache: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:  # one epoch; samplers index beyond it
        return self.epoch_length

    def _image_of(self, n: int) -> ImagePair:
        epoch, pos = divmod(n, self.epoch_length)
        if self._order_cache is None or self._order_cache[0] != epoch:
            order = np.random.default_rng([self.seed, epoch]).permutation(self.epoch_length)
            self._order_cache = (epoch, order)
        return self.pairs[self._order_cache[1][pos] % len(self.pairs)]

    def __getitem__(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        pair = self._image_of(int(n))
        rng = np.random.default_rng([self.seed, 1, int(n)])
        lp = self.patch_size // self.scale
        h, w = pair.lr.shape[:2]
        top, left = int(rng.integers(0, h - lp + 1)), int(rng.integers(0, w - lp + 1))
        lr = pair.lr[top:top + lp, left:left + lp]
        s = self.scale
        hr = pair.hr[top * s:(top + lp) * s, left * s:(left + lp) * s]
        if self.augment:
            hflip, vflip, rot = rng.integers(0, 2, size=3)
            lr, hr = (_augment(a, hflip, vflip, rot) for a in (lr, hr))
        return _to_tensor(lr), _to_tensor(hr)


def _augment(img: np.ndarray, hflip: int, vflip: int, rot: int) -> np.ndarray:
    if hflip:
        img = img[:, ::-1]
    if vflip:
        img = img[::-1]
    if rot:
        img = img.transpose(1, 0, 2)
    return img


def _to_tensor(img: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))).float().div_(255.0)


class StepSampler(Sampler[int]):
    """Yields the global sample numbers of this rank's share of every batch, from ``start_step`` on, forever."""

    def __init__(self, batch_per_rank: int, rank: int = 0, world_size: int = 1, start_step: int = 0) -> None:
        self.batch, self.rank, self.world, self.start = batch_per_rank, rank, world_size, start_step

    def __iter__(self) -> Iterator[int]:
        for step in itertools.count(self.start):
            base = (step * self.world + self.rank) * self.batch
            yield from range(base, base + self.batch)

    def __len__(self) -> int:  # pragma: no cover - infinite; DataLoader never asks when we don't
        raise TypeError("StepSampler is infinite")
