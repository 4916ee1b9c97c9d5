"""Registry of architectures (families) and their named variants.

An *architecture* is one network class: it knows how to build itself from a config and how to read that config
back out of a state dict (so checkpoints of non-standard widths/depths load, as in spandrel).
A *variant* is a named configuration of an architecture published in a paper (``elan-light``, ``elan``).

Model modules register themselves on import (see ``litesr/models/__init__.py``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ..errors import LitesrError, UnknownNameError

StateDict = Mapping[str, torch.Tensor]

#: The upscaling factors litesr's models, recipes and commands support.
SCALES: tuple[int, ...] = (2, 3, 4)


class CheckpointError(LitesrError, ValueError):
    """A checkpoint does not fit the requested or detected architecture (message says which key and why)."""


@dataclass(frozen=True)
class Architecture:
    """One network family.

    build:        ``build(scale=s, **config) -> nn.Module``; config holds everything but the scale.
    detect:       ``detect(state_dict) -> config | None``; ``None`` when the keys are not this family's.
                  The returned config includes ``scale``; ``None`` when the weights do not determine it (PAN x2
                  and x3 share every shape), and the caller must then name it. Raise :class:`CheckpointError`
                  when the keys are this family's but inconsistent (e.g. an impossible shape).
    ignored_keys: regex of official keys that hold *computed* buffers (relative position index, attention masks):
                  accepted in a checkpoint and discarded, never required.
    official_buffers: ``official_buffers(model, img_size) -> {key: tensor}``, those computed buffers as the
                  official constructor makes them, for files the official code must load strictly.
    cpu_bf16:     whether ``--precision auto`` runs this family in bf16 on a CPU with native bf16 (AVX-512 BF16 or
                  AMX): set only where bf16 autocast was measured faster than fp32 there (see each registration).
                  On CUDA auto means bf16 for every family that supports it.
    size_multiple: ``size_multiple(config) -> int``: the multiple the model pads its input to internally (its
                  windows); inputs and tiles aligned to it need no padding. The tiling hint, and the padding the
                  model itself applies (``SRModel.size_multiple`` reads it from here).
    inference_only: empty for a family litesr can train; else why it cannot (``litesr train`` says it in one line).
    tile_context: ``tile_context(config) -> int``: the fewest LR pixels of context a tile needs on each side for
                  tiled outputs to agree with the whole image (≥ 45 dB PSNR); the tiler never uses less, whatever
                  overlap it is given. 0: the tiler's default overlap is enough.
    tile_overlap: ``tile_overlap(config) -> int``: the LR pixels of context a tile gets when no overlap is asked
                  (0: the tiler's :data:`~litesr.tiling.DEFAULT_OVERLAP`). Set lower where measured enough on real
                  photographs: each pixel of context costs the whole tile's height or width in compute.
    base_tile:    ``base_tile(config) -> int``: the LR tile side ``litesr upscale`` takes by default for this family
                  (0: the tiler's 256), where a smaller tile costs less per pixel: ESRT's attention, whose cost grows
                  with the tile's area (its official test chops images into tiles too).
    large_tile:   ``large_tile(config) -> int``: the LR tile side ``litesr upscale`` takes by default where freed
                  memory blocks are kept for reuse (:func:`litesr.device.reuse_freed_memory`, as the command line
                  runs): there a larger tile costs no more per pixel, and its context less. 0: the tiler's default.
                  Set where measured faster and where a 12-megapixel ×4 upscale stays under 2 GiB resident
                  (``docs/performance.md`` §2.3).
    """

    name: str
    build: Callable[..., nn.Module]
    detect: Callable[[StateDict], dict | None]
    paper: str
    ignored_keys: str | None = None
    official_buffers: Callable[[nn.Module, int], dict] | None = None
    cpu_bf16: bool = False
    size_multiple: Callable[[dict], int] = lambda config: 1
    inference_only: str = ""
    tile_context: Callable[[dict], int] = lambda config: 0
    tile_overlap: Callable[[dict], int] = lambda config: 0
    base_tile: Callable[[dict], int] = lambda config: 0
    large_tile: Callable[[dict], int] = lambda config: 0

    def ignores(self, key: str) -> bool:
        return self.ignored_keys is not None and re.search(self.ignored_keys, key) is not None


#: The ``large_tile`` of the light models measured to gain from it (ELAN-light, SwinIR-light, SPAN; PAN states its
#: own): a 384 core with 16 pixels of context computes (416/384)² = 1.17× its pixels, a 256 one (288/256)² = 1.27×.
LARGE_TILE = 384

#: The ``tile_overlap`` of the convolutional models (IMDN, PAN, SPAN), whose output depends little on pixels further
#: than a few convolutions away. Tiled against whole-image x4 outputs, over the output within 4 LR pixels of a seam
#: (``benchmarks/tile_seams.py --tile 256 --size 512x640 --overlaps 8 16``, two Urban100 pictures as LR): IMDN
#: 49.1-50.3 dB (49.9-50.6 with 16: its channel statistics span the tile, whatever the overlap), PAN 57.2-57.3
#: (73-76), SPAN 65.3-65.4 (98). At a 256 tile 8 pixels of context compute (272/256)² = 1.13× the core's pixels,
#: 16 pixels (288/256)² = 1.27×.
CNN_OVERLAP = 8


@dataclass(frozen=True)
class Variant:
    """A published configuration of an architecture, usable by name in ``create_model`` and on the CLI."""

    name: str
    arch: str
    config: dict[str, Any]
    scales: tuple[int, ...] = SCALES
    description: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


ARCHITECTURES: dict[str, Architecture] = {}
VARIANTS: dict[str, Variant] = {}


def register_architecture(arch: Architecture) -> Architecture:
    if arch.name in ARCHITECTURES:
        raise ValueError(f"architecture {arch.name!r} registered twice")
    ARCHITECTURES[arch.name] = arch
    return arch


def register_variant(variant: Variant) -> Variant:
    if variant.name in VARIANTS:
        raise ValueError(f"variant {variant.name!r} registered twice")
    if variant.arch not in ARCHITECTURES:
        raise ValueError(f"variant {variant.name!r} names unknown architecture {variant.arch!r}")
    VARIANTS[variant.name] = variant
    return variant


def variant_tiles(field: str) -> dict[int, list[str]]:
    """``{value: [variant names]}`` of the variants whose architecture states ``field`` (``"base_tile"``,
    ``"large_tile"``, ``"tile_overlap"``, ``"tile_context"``) for them: what ``litesr upscale --help`` lists."""
    tiles: dict[int, list[str]] = {}
    for v in sorted(VARIANTS.values(), key=lambda v: v.name):
        tile = getattr(ARCHITECTURES[v.arch], field)(dict(v.config))
        if tile:
            tiles.setdefault(tile, []).append(v.name)
    return tiles


def canonical_name(name: str) -> str:
    """How litesr compares names of models and weights: case-insensitive, '_' the same as '-'."""
    return name.strip().lower().replace("_", "-")


def known_names() -> list[str]:
    return sorted(set(VARIANTS) | set(ARCHITECTURES))


def resolve_architecture(name: str) -> Architecture:
    """Map a variant or architecture name (case-insensitive, '_' or '-') to its architecture."""
    key = canonical_name(name)
    if key in VARIANTS:
        return ARCHITECTURES[VARIANTS[key].arch]
    if key in ARCHITECTURES:
        return ARCHITECTURES[key]
    raise UnknownNameError(f"unknown architecture {name!r}; supported: {', '.join(known_names())}")


def resolve_variant(name: str) -> Variant:
    """Map a variant name, or an architecture name that has a variant of the same name, to the variant."""
    key = canonical_name(name)
    if key in VARIANTS:
        return VARIANTS[key]
    raise UnknownNameError(f"unknown model {name!r}; choose one of: {', '.join(sorted(VARIANTS))} "
                           "(see `litesr models`)")
