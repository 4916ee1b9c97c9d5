"""The contract every litesr model keeps, whatever its official code did internally.

Input: float RGB ``N×3×H×W`` in [0, 1], any H, W >= 1. Output: ``N×3×sH×sW`` on the same scale, not clamped.

Construction: hyperparameters are keyword-only constructor arguments, declared once. :class:`SRModel` records
the values a model was built with (``model.scale``, ``model.config``) by itself, so a model can be saved and
rebuilt; a constructor never repeats its arguments to its base class. The published values of a variant live
only in the registry's variant table; a constructor default is allowed only for a constant of the architecture
that its weights cannot tell (ELAN's window sizes).
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

from torch import nn


def _plain(value: Any) -> Any:
    """Tuples as lists (as the config reads back from JSON metadata and detection)."""
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


class SRModel(nn.Module):
    """Base class: records the architecture name, scale and config, so a model can be saved and rebuilt."""

    arch_name: str = ""
    #: Constructor arguments that choose how the model computes, not what (e.g. ESRT's attention kernel): they are
    #: not part of ``config``, so a saved model does not carry them.
    runtime_options: tuple[str, ...] = ()

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        init = cls.__dict__.get("__init__")
        if init is None:
            return
        signature = inspect.signature(init)
        positional = [p.name for p in list(signature.parameters.values())[1:] if p.kind is not p.KEYWORD_ONLY]
        if positional or "scale" not in signature.parameters:
            raise TypeError(f"{cls.__name__}.__init__ must take keyword-only hyperparameters including scale "
                            f"(positional: {', '.join(positional) or 'none'})")

        @functools.wraps(init)
        def init_and_record(self: SRModel, **config: Any) -> None:
            bound = signature.bind(self, **config)
            bound.apply_defaults()
            init(self, **config)
            values = {k: _plain(v) for k, v in bound.arguments.items() if k != "self"}
            self.scale = int(values.pop("scale"))
            self.config = {"scale": self.scale, **{k: v for k, v in values.items() if k not in self.runtime_options}}

        cls.__init__ = init_and_record

    def train(self, mode: bool = True) -> SRModel:
        """As ``nn.Module.train``; it also drops the weights derived for inference
        (:func:`~litesr.ops.derived.inference_weights`), so that ``model.eval()`` after changing parameters
        through ``.data`` (which bumps no version counter) derives them anew."""
        for module in self.modules():
            module.__dict__.pop("_inference_weights", None)
        return super().train(mode)

    @property
    def size_multiple(self) -> int:
        """Inputs whose sides are multiples of this need no internal padding (from the architecture's record)."""
        return self._stated("size_multiple")

    @property
    def tile_context(self) -> int:
        """The fewest LR pixels of context a tile needs on each side to agree with the whole image (≥ 45 dB)."""
        return self._stated("tile_context")

    @property
    def tile_overlap(self) -> int:
        """The LR context a tile gets when no overlap is asked (0: the tiler's default)."""
        return self._stated("tile_overlap")

    @property
    def base_tile(self) -> int:
        """The LR tile ``litesr upscale`` takes for this family (0: the tiler's default)."""
        return self._stated("base_tile")

    @property
    def large_tile(self) -> int:
        """The LR tile ``litesr upscale`` takes where freed blocks are reused (0: the tiler's default)."""
        return self._stated("large_tile")

    def _stated(self, field: str) -> int:
        """What this architecture's record (``Architecture.<field>``) states for this configuration."""
        from .registry import ARCHITECTURES

        return getattr(ARCHITECTURES[self.arch_name], field)(self.config)

    def extra_repr(self) -> str:
        return f"arch={self.arch_name}, scale={self.scale}"
