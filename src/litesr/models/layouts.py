"""Foreign key layouts: checkpoints of a supported architecture saved by another codebase under other key names.

litesr's models use the official key names. Some public checkpoints compute the official function but were
written by a re-implementation with its own names (Fried Rice Lab's ELAN: ``head.weight`` for ``head.0.weight``,
``modules_lfe.0.lfe.0.mask`` for ``modules_lfe.lfe_0.conv0.shift_conv.weight``, ...). A :class:`KeyLayout` maps
such a layout onto the official names, as data: a regex that recognises the layout, and ordered rename rules.

The mapping is strict: once a layout is recognised, every key must match one of its rules (a key that matches
none is refused, naming it), no two keys may land on the same official key, and the result then goes through the
architecture's own detection and strict loading (so a missing key is refused, naming it, as for any checkpoint).
Nothing is guessed from shapes.

To support another layout, append a ``KeyLayout`` to :data:`LAYOUTS`; a test that loads a real file of it belongs
in ``tests/test_layouts.py``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .registry import CheckpointError, StateDict


@dataclass(frozen=True)
class KeyLayout:
    """One foreign key layout of one architecture.

    name:      short name shown to users (``litesr models --layouts``, error messages).
    arch:      the registered architecture whose official keys the rules produce.
    source:    the codebase that writes this layout (repository, and the file defining its module names).
    signature: regex that some key of every checkpoint of this layout matches and no official key does.
    rules:     ``(pattern, replacement)`` pairs tried in order; a key is renamed by the first pattern that matches
               it in full (``re.fullmatch``); replacements may use the pattern's groups (``\\1``).
    """

    name: str
    arch: str
    source: str
    signature: str
    rules: tuple[tuple[str, str], ...]

    def recognises(self, state: StateDict) -> bool:
        signature = re.compile(self.signature)
        return any(signature.search(key) for key in state)

    def to_official(self, state: StateDict) -> dict:
        """``state`` with official key names; raises :class:`CheckpointError` naming any key it cannot map."""
        compiled = [(re.compile(p), r) for p, r in self.rules]
        renamed: dict = {}
        unmapped, clashes = [], []
        for key, value in state.items():
            for pattern, replacement in compiled:
                if pattern.fullmatch(key):
                    new = pattern.sub(replacement, key)
                    if new in renamed:
                        clashes.append(f"{key} -> {new}")
                    renamed[new] = value
                    break
            else:
                unmapped.append(key)
        if unmapped or clashes:
            problems = ([f"key(s) not part of it: {', '.join(unmapped[:6])}"
                         + (f" (+{len(unmapped) - 6} more)" if len(unmapped) > 6 else "")] if unmapped else [])
            problems += [f"keys mapping to the same official key: {', '.join(clashes[:3])}"] if clashes else []
            raise CheckpointError(f"checkpoint in the {self.name} layout of {self.arch}, but with "
                                  + "; ".join(problems))
        return renamed


_FRL_LFE = r"body\.(\d+)\.modules_lfe\.(\d+)\.lfe"
_ELAN_LFE = r"body.\1.modules_lfe.lfe_\2"

#: Every known foreign layout. Order does not matter: signatures are disjoint.
LAYOUTS: tuple[KeyLayout, ...] = (
    KeyLayout(
        name="fried-rice-lab",
        arch="elan",
        source="Fried-Rice-Lab/FriedRiceLab (archs/elan_arch.py style: ShiftConv2d with a 'mask' buffer, "
               "Sequential LFE, numbered module lists), e.g. modelzoo/ELAN/ELAN-light_LSR_x4_unofficial.pth",
        signature=r"^body\.\d+\.modules_lfe\.\d+\.lfe\.\d+\.",
        rules=(
            (r"(sub_mean|add_mean)\.(weight|bias)", r"\1.\2"),
            (r"head\.(weight|bias)", r"head.0.\1"),
            (r"tail\.0\.(weight|bias)", r"tail.0.\1"),
            (_FRL_LFE + r"\.0\.mask", _ELAN_LFE + r".conv0.shift_conv.weight"),
            (_FRL_LFE + r"\.0\.(weight|bias)", _ELAN_LFE + r".conv0.shift_conv.conv1x1.\3"),
            (_FRL_LFE + r"\.2\.mask", _ELAN_LFE + r".conv1.shift_conv.weight"),
            (_FRL_LFE + r"\.2\.(weight|bias)", _ELAN_LFE + r".conv1.shift_conv.conv1x1.\3"),
            (r"body\.(\d+)\.modules_gmsa\.(\d+)\.(project_inp\.[01]\.\w+|project_out\.(?:weight|bias))",
             r"body.\1.modules_gmsa.gmsa_\2.\3"),
        ),
    ),
)


def find_layout(state: StateDict, arch: str | None = None) -> KeyLayout | None:
    """The foreign layout ``state`` is written in (of ``arch`` when given), or ``None`` for official keys."""
    hits = [layout for layout in LAYOUTS if (arch is None or layout.arch == arch) and layout.recognises(state)]
    if len(hits) > 1:  # pragma: no cover - a table error, caught by the layout tests
        raise CheckpointError(f"checkpoint fits several key layouts: {', '.join(h.name for h in hits)}")
    return hits[0] if hits else None
