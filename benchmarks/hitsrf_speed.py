"""HiT-SRF: litesr's fast path (position bias built once per block and window, the softmax-free attention by
associativity) against the official order (bias gathered every forward, explicit score matrices), same weights,
interleaved rounds in one run; checks first that both give the same output.

    python benchmarks/hitsrf_speed.py --weights hitsrf-x4-ntire --sizes 64 128 --runs 3
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", default="hitsrf-x4-ntire", help="a file or a name of litesr's weights table")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128])
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()

    import litesr
    from floor import interleaved, photo
    from litesr.efficiency import cpu_name
    from litesr.ops.attention import set_fused_attention

    fast = litesr.load_model(args.weights).eval()
    official = litesr.load_model(args.weights).eval()
    set_fused_attention(official, False)
    print(f"CPU: {cpu_name(details=True)}, {torch.get_num_threads()} threads, torch {torch.__version__}")
    for size in args.sizes:
        x = torch.from_numpy(photo(Path(__file__).resolve().parents[1] / "examples" / "sample.png", size))
        x = x.permute(2, 0, 1)[None].float() / 255
        with torch.inference_mode():
            a, b = fast(x), official(x)
            err = ((a - b).abs().max() / b.abs().max()).item()

            def run_fast():
                return fast(x)

            def run_official():
                return official(x)

            times = interleaved({"fast": (run_fast, "fp32"), "official": (run_official, "fp32")}, args.runs)
        print(f"LR {size}²: fast {times['fast']:.3f} s, official order {times['official']:.3f} s, "
              f"official ÷ fast {times['official'] / times['fast']:.1f}x (outputs within {err:.1e} relative)")


if __name__ == "__main__":
    main()
