"""The contract every litesr model keeps, whatever its official code did internally.

Input: float RGB ``N×3×H×W`` in [0, 1], any H, W >= 1. Output: ``N×3×sH×sW`` on the same scale, not clamped.
"""

from __future__ import annotations

from typing import Any

from torch import nn


class SRModel(nn.Module):
    """Base class: records the architecture name, scale and config, so a model can be saved and rebuilt."""

    arch_name: str = ""
    #: Inputs whose sides are multiples of this need no internal padding (a hint for tiling).
    size_multiple: int = 1

    def __init__(self, scale: int, **config: Any) -> None:
        super().__init__()
        self.scale = int(scale)
        self.config = {"scale": self.scale, **config}

    def extra_repr(self) -> str:
        return f"arch={self.arch_name}, scale={self.scale}"
