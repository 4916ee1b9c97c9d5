"""``litesr models``: the named weights of litesr's table, and the registered architectures."""

from __future__ import annotations

import argparse

from ..zoo import SET_ORDER

EXAMPLES = """examples:
  litesr models                     # every named weights file, then the architectures
  litesr models --markdown          # the README's model table, generated from the table
  litesr weights download swinir-light-x2-official      # fetch ahead of time (see `litesr weights -h`)

Where: shipped (inside litesr), cached (downloaded before), local (in $LITESR_WEIGHTS_DIR), download (fetched and
checked against its sha256 on first use). * marks the default of its architecture and scale: what runs with no
--weights, also called <variant>-x<scale>. Scores: PSNR (dB) on Y measured by litesr eval in fp32 (Urban100: the
10-image subset); - where litesr could not get the file. docs/models.md says where each file comes from.
"""



def register(sub: argparse._SubParsersAction) -> None:
    from .options import example_formatter

    p = sub.add_parser(
        "models",
        help="list litesr's named weights and model variants",
        description="List the named pretrained weights (where each is, scale, scores, licence) and every "
        "registered variant (scales, parameter count at x4 or its largest scale, family, paper).",
        epilog=EXAMPLES,
        formatter_class=example_formatter,
    )
    p.add_argument("--markdown", action="store_true",
                   help="print the Markdown table of the named weights (params, MACs, Set5/Set14/B100 PSNR) that "
                   "the README shows")
    p.set_defaults(func=run)


def _psnr(entry, name: str) -> str:
    score = entry.scores.get(name)
    return f"{score['psnr']:.2f}" if score else "-"


def weights_rows() -> list[list[str]]:
    from .. import zoo

    rows = [["weights", "arch", "scale", "where", *SET_ORDER, "licence"]]
    for e in zoo.entries().values():
        rows.append([e.name + (" *" if e.default else ""), e.arch, f"x{e.scale}", zoo.status(e),
                     *(_psnr(e, s) for s in SET_ORDER), e.licence.split(" (")[0]])
    return rows


def architecture_rows() -> list[list[str]]:
    from .. import zoo
    from ..checkpoint import create_model
    from ..models import ARCHITECTURES, VARIANTS

    rows = [["variant", "scales", "weights", "parameters", "family", "paper"]]
    for v in sorted(VARIANTS.values(), key=lambda v: (v.arch, v.name)):
        scale = 4 if 4 in v.scales else max(v.scales)
        model = create_model(v.name, scale)
        params = sum(p.numel() for p in model.parameters() if p.requires_grad)
        named = sorted({e.scale for e in zoo.entries().values() if e.arch == v.name})
        rows.append([v.name, ",".join(f"x{s}" for s in v.scales), ",".join(f"x{s}" for s in named) or "-",
                     f"{params:,} (x{scale})", v.arch, ARCHITECTURES[v.arch].paper])
    return rows


MARKDOWN_HEADER = "| weights | params | MACs (720p) | Set5 PSNR | Set14 PSNR | B100 PSNR | where | licence |"


def markdown_rows() -> list[str]:
    """The README's table of named weights: header, rule and one row per entry, as the table orders them."""
    from .. import zoo
    from ..checkpoint import create_model
    from ..efficiency import count_flops, count_parameters, hd_input_size

    lines = [MARKDOWN_HEADER, "|---|---:|---:|---:|---:|---:|---|---|"]
    sizes: dict[tuple[str, int], tuple[int, int]] = {}
    for e in zoo.entries().values():
        if (e.arch, e.scale) not in sizes:
            model = create_model(e.arch, e.scale)
            sizes[e.arch, e.scale] = (count_parameters(model), count_flops(model, hd_input_size(e.scale))["macs"])
        params, macs = sizes[e.arch, e.scale]
        name = f"`{e.name}`" + (f" (default, `{e.arch}-x{e.scale}`)" if e.default else "")
        where = "shipped" if e.shipped else "download"
        lines.append(f"| {name} | {params / 1e3:,.0f}K | {macs / 1e9:.1f}G | "
                     + " | ".join(_psnr(e, s) for s in SET_ORDER[:3]) + f" | {where} | {e.licence.split(' (')[0]} |")
    return lines


def run(args: argparse.Namespace) -> int:
    from .options import columns

    if args.markdown:
        print("\n".join(markdown_rows()))
        return 0
    print("\n".join(columns(weights_rows(), right={2, 4, 5, 6, 7})))
    print()
    print("\n".join(columns(architecture_rows(), last_free=True)))
    return 0
