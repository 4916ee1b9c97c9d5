"""Reading a configuration out of an official state dict: the checks every ``detect`` function shares.

Each helper raises :class:`CheckpointError` naming the key when a checkpoint of the family is inconsistent.
"""

from __future__ import annotations

import re

import torch

from .blocks import scale_from_pixel_shuffle_channels
from .registry import CheckpointError, StateDict


def require(state: StateDict, key: str, family: str) -> torch.Tensor:
    if key not in state:
        raise CheckpointError(f"{family} checkpoint without {key}")
    return state[key]


def refuse_other_swin_options(state: StateDict, family: str, unsupported: list[str], what: str) -> None:
    """A Swin-type (SwinIR-shaped) checkpoint must use the options litesr implements: upsampler
    'pixelshuffledirect', resi_connection '1conv', no absolute position embedding. ``unsupported``: the keys of
    ``state`` that only another option has; ``what``: how the message names the implemented model."""
    if unsupported or "upsample.0.weight" not in state:
        raise CheckpointError(
            f"{family} checkpoint with an unsupported configuration (litesr implements {what}upsampler "
            "'pixelshuffledirect', resi_connection '1conv', no ape)"
            + (f"; found {', '.join(unsupported[:3])}" if unsupported else "; no upsample.0.weight"))


def rgb_input_width(state: StateDict, key: str, family: str) -> int:
    """Output channels of the first conv, which must read 3 (RGB) channels."""
    weight = require(state, key, family)
    if weight.ndim != 4 or weight.shape[1] != 3:
        raise CheckpointError(f"{key} has shape {tuple(weight.shape)}; litesr needs 3 input channels")
    return int(weight.shape[0])


def nested_depths(state: StateDict, pattern: str, family: str) -> list[int]:
    """Blocks per group, for keys matching ``pattern`` (a regex with group-index and block-index captures);
    both numberings must run 0, 1, 2, … without gaps."""
    regex = re.compile(pattern)
    blocks: dict[int, set[int]] = {}
    for key in state:
        m = regex.match(key)
        if m:
            blocks.setdefault(int(m.group(1)), set()).add(int(m.group(2)))
    groups = sorted(blocks)
    if groups != list(range(len(groups))) or any(sorted(b) != list(range(len(b))) for b in blocks.values()):
        raise CheckpointError(f"{family} checkpoint with non-consecutive groups/blocks: "
                              f"{ {g: sorted(b) for g, b in blocks.items()} }")
    return [len(blocks[g]) for g in groups]


def numbered_count(state: StateDict, pattern: str, family: str, first: int = 0) -> int:
    """How many numbered modules ``pattern`` (a regex with one index capture) finds; their numbers must run
    ``first, first+1, …`` without gaps."""
    regex = re.compile(pattern)
    numbers = sorted({int(m.group(1)) for key in state if (m := regex.match(key))})
    if numbers != list(range(first, first + len(numbers))):
        raise CheckpointError(f"{family} checkpoint with non-consecutive modules: {numbers}")
    return len(numbers)


def pixel_shuffle_scale(state: StateDict, key: str, family: str) -> int:
    """The scale of a conv → PixelShuffle(s) tail with 3·s² outputs."""
    out = int(require(state, key, family).shape[0])
    scale = scale_from_pixel_shuffle_channels(out)
    if scale is None:
        raise CheckpointError(f"{key} has {out} outputs, not 3·s²")
    return scale


def mlp_ratio(state: StateDict, key: str, dim: int, family: str) -> float:
    """hidden / dim of an MLP's first linear, checked to round-trip through the official int(dim·ratio)."""
    hidden = int(require(state, key, family).shape[0])
    ratio = hidden / dim
    if int(dim * ratio) != hidden:
        raise CheckpointError(f"{key}: hidden width {hidden} is not int({dim}·ratio)")
    return ratio
