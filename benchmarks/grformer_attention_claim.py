"""Does GRFormer's attention really need ~60 % fewer parameters and ~49 % fewer MACs than SwinIR's?

Measures the GRFormer paper's claim on litesr's own modules: GRSA (grouped residual self-attention with ES-RPB,
``litesr.models.grformer.GRSA``) against SwinIR's WindowAttention (``litesr.models.swinir.WindowAttention``),
attending over every window of one B=1 feature map (no shift, no mask), counted two ways:

  (a) Linear-only MACs: forward hooks on every nn.Linear (what thop/ptflops-style module counters report);
  (b) all-matmul MACs: ``torch.utils.flop_counter.FlopCounterMode`` (linears AND Q·Kᵀ, A·V), MACs = FLOPs / 2.

Counting runs the modules' explicit matmul/softmax path (``set_fused_attention(module, False)``): the default
fused path uses ``scaled_dot_product_attention``, whose CPU kernel FlopCounterMode does not count (it would report
the attention matmuls as 0 — the script prints that figure too, as a warning). Outputs of both paths agree.

Usage:  python benchmarks/grformer_attention_claim.py [--hw 64 64]
See docs/grformer_claim.md for the result and its reading.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from litesr.ops.attention import set_fused_attention, window_geometry
from litesr.models.grformer import GRSA
from litesr.models.swinir import WindowAttention


@dataclass
class Cost:
    params: int
    linear_macs: int
    matmul_macs: int
    fused_path_counted_macs: int


def count(module: nn.Module, width: int, window: tuple[int, int], hw: tuple[int, int]) -> Cost:
    geom = window_geometry(hw[0], hw[1], window, None, 0.0, torch.device("cpu"))
    x = geom.partition(torch.randn(1, hw[0], hw[1], width))
    module.eval()
    params = sum(p.numel() for p in module.parameters())

    linear_macs = 0

    def hook(mod: nn.Linear, inputs, _output) -> None:
        nonlocal linear_macs
        linear_macs += inputs[0].numel() // mod.in_features * mod.in_features * mod.out_features

    handles = [m.register_forward_hook(hook) for m in module.modules() if isinstance(m, nn.Linear)]
    set_fused_attention(module, False)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            explicit = module(x, geom)
    for h in handles:
        h.remove()
    matmul_macs = counter.get_total_flops() // 2

    set_fused_attention(module, True)
    with torch.inference_mode():
        with FlopCounterMode(display=False) as counter:
            fused = module(x, geom)
    rel = ((fused - explicit).abs().max() / explicit.abs().max()).item()
    assert rel < 1e-5, f"fused and explicit attention disagree ({rel:.1e})"
    return Cost(params, linear_macs, matmul_macs, counter.get_total_flops() // 2)


def grsa(width: int, window: tuple[int, int], heads: int) -> GRSA:
    return GRSA(width, window, heads)


def window_attention(width: int, window: tuple[int, int], heads: int) -> WindowAttention:
    """SwinIR's WindowAttention (for a non-square window its bias table has (2Wh−1)(2Ww−1) rows)."""
    return WindowAttention(width, window, heads)


ROWS = [
    # label, (C, GRSA window, GRSA heads), (C, WA window, WA heads)
    ("C=60, 8×8, 6 heads both", (60, (8, 8), 6), (60, (8, 8), 6)),
    ("C=60, 8×32, 3 heads both", (60, (8, 32), 3), (60, (8, 32), 3)),
    ("C=60, GRSA 8×32 3 heads vs WA 8×32 6 heads", (60, (8, 32), 3), (60, (8, 32), 6)),
    ("as shipped: GRFormer-light GRSA (8×32, 3 heads) vs SwinIR-light WA (8×8, 6 heads)",
     (60, (8, 32), 3), (60, (8, 8), 6)),
    ("C=180, 8×8, 6 heads both", (180, (8, 8), 6), (180, (8, 8), 6)),
]


def fewer(ours: int, theirs: int) -> str:
    change = 1 - ours / theirs
    return f"{100 * change:.1f}% fewer" if change >= 0 else f"{-100 * change:.0f}% more"


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hw", type=int, nargs=2, default=(64, 64), metavar=("H", "W"),
                        help="feature map size (multiple of 32; default 64 64)")
    args = parser.parse_args(argv)
    hw = tuple(args.hw)
    torch.manual_seed(0)
    torch.set_num_threads(min(2, torch.get_num_threads()))

    print(f"GRSA (GRFormer) vs WindowAttention (SwinIR) on a 1×{hw[0]}×{hw[1]} feature map, all windows, no mask")
    print("params: nn.Parameters of the module;  Linear MACs: nn.Linear forward hooks;  "
          "all-matmul MACs: FlopCounterMode/2 (incl. Q·Kᵀ and A·V)\n")
    rows = [("comparison", "params GRSA / WA", "Linear-only MACs", "all-matmul MACs")]
    results = []
    for label, g_spec, w_spec in ROWS:
        g = count(grsa(*g_spec), g_spec[0], g_spec[1], hw)
        w = count(window_attention(*w_spec), w_spec[0], w_spec[1], hw)
        results.append((label, g, w))
        rows.append((
            label if len(label) <= 44 else label[:41] + "...",
            f"{g.params:,} / {w.params:,} ({fewer(g.params, w.params)})",
            f"{g.linear_macs / 1e6:,.1f}M / {w.linear_macs / 1e6:,.1f}M ({fewer(g.linear_macs, w.linear_macs)})",
            f"{g.matmul_macs / 1e6:,.1f}M / {w.matmul_macs / 1e6:,.1f}M ({fewer(g.matmul_macs, w.matmul_macs)})",
        ))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for n, r in enumerate(rows):
        print(" | ".join(cell.ljust(width) for cell, width in zip(r, widths)).rstrip())
        if n == 0:
            print("-+-".join("-" * width for width in widths))
    for label, _, _ in results:
        if len(label) > 44:
            print(f"  ({label})")
    print("\nWarning: counting the default fused (scaled_dot_product_attention) path with FlopCounterMode misses the")
    print("attention matmuls on CPU: it reports " + ", ".join(
        f"{g.fused_path_counted_macs / 1e6:.1f}M / {w.fused_path_counted_macs / 1e6:.1f}M" for _, g, w in results[:2])
        + " for the first two rows (= the Linear-only figures).")


if __name__ == "__main__":
    main()
