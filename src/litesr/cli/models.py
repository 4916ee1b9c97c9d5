"""``litesr models``: list the registered variants."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    from .options import example_formatter

    p = sub.add_parser(
        "models",
        help="list the registered model variants",
        description="List every named variant: its scales, the scales litesr ships trained weights for (used by "
        "`upscale`/`eval` when no --weights is given), parameter count (at x4, or its largest scale), architecture "
        "family and source paper.",
        epilog="example:\n  litesr models",
        formatter_class=example_formatter,
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import create_model
    from ..models import ARCHITECTURES, VARIANTS
    from ..pretrained import available_shipped
    from .options import columns

    shipped = available_shipped()
    rows = []
    for v in sorted(VARIANTS.values(), key=lambda v: (v.arch, v.name)):
        scale = 4 if 4 in v.scales else max(v.scales)
        model = create_model(v.name, scale)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        weights = ",".join(f"x{s}" for s in v.scales if (v.name, s) in shipped) or "-"
        rows.append((v.name, ",".join(f"x{s}" for s in v.scales), weights, f"{params:,} (x{scale})", v.arch,
                     ARCHITECTURES[v.arch].paper))
    header = ("name", "scales", "shipped weights", "parameters", "family", "paper")
    print("\n".join(columns([list(header)] + [list(r) for r in rows], last_free=True)))
    return 0
