"""A/B of one path of litesr's policy table, or of its compiled kernels, on real weights, in one process.

For each weights file: the whole forward on a picture-like input (``examples/sample.png`` resized), in inference
mode, with the policy as it is against the policy without the rules of ``OP`` that take ``PATH`` (or with the
compiled kernels on against ``LITESR_NATIVE=0``), alternating which goes first each round, median and best of
``--runs``; the largest difference of the outputs is printed too. Pause other CPU work first.

    python benchmarks/ab_policy.py "grformer projections" folded --weights grformer-x4-291 --size 256
    python benchmarks/ab_policy.py linear onednn --weights swinir-light-x4-291 hitsrf-x4-ntire --runs 7
    python benchmarks/ab_policy.py --native --weights elan-light-x4 swinir-light-x4-291 grformer-x4-291
    python benchmarks/ab_policy.py --native --weights elan-light-x4 --size 128 --runs 1 --float64
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("op", nargs="?", help="a key of litesr.ops.policy.POLICY")
    ap.add_argument("path", nargs="?", help="the path (a rule's take) to turn off in B")
    ap.add_argument("--native", action="store_true", help="A/B the compiled kernels instead (LITESR_NATIVE)")
    ap.add_argument("--weights", nargs="+", required=True, help="zoo names or files")
    ap.add_argument("--size", type=int, default=256, help="LR side")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--float64", action="store_true",
                    help="also print how far each output is from a float64 copy of the model (eager paths)")
    args = ap.parse_args()
    if args.native == bool(args.op and args.path):
        ap.error("give OP and PATH, or --native")

    import litesr
    from floor import photo
    from litesr.ops import native, policy

    if args.native:
        label = "compiled kernels"

        def use(on: bool) -> None:
            os.environ["LITESR_NATIVE"] = "1" if on else "0"
            native._kernel_or_reason.cache_clear()
        use(True)
        print(f"# kernels: {native.status()}")
    else:
        if args.op not in policy.POLICY:
            ap.error(f"no policy entry {args.op!r} (entries: {', '.join(policy.POLICY)})")
        full = policy.POLICY[args.op]
        without = tuple(r for r in full if r.take != args.path)
        if without == full:
            ap.error(f"no rule of {args.op!r} takes {args.path!r}")
        label = f"{args.op!r} with {args.path!r}"

        def use(on: bool) -> None:
            policy.POLICY[args.op] = full if on else without
    x = torch.from_numpy(photo(ROOT / "examples" / "sample.png", args.size)).permute(2, 0, 1)[None].float() / 255
    print(f"# {torch.get_num_threads()} threads, LR {args.size}², medians (best) of {args.runs}, seconds")
    for weights in args.weights:
        model = litesr.load_model(weights).eval()
        times: dict[bool, list[float]] = {True: [], False: []}
        with torch.inference_mode():
            outs = {}
            for on in (True, False):
                use(on)
                outs[on] = model(x)
            for r in range(args.runs):
                for on in ((True, False) if r % 2 == 0 else (False, True)):
                    use(on)
                    t = time.perf_counter()
                    model(x)
                    times[on].append(time.perf_counter() - t)
        use(True)
        med = {on: statistics.median(ts) for on, ts in times.items()}
        diff = (outs[True] - outs[False]).abs().max().item() / outs[False].abs().max().item()
        print(f"{weights}: {label} {med[True]:.3f} ({min(times[True]):.3f}) against {med[False]:.3f} "
              f"({min(times[False]):.3f}) without: {med[False] / med[True]:.2f}x; outputs differ by {diff:.1e} "
              "of their range", flush=True)
        if args.float64:
            use(False)
            with torch.inference_mode():
                exact = model.double()(x.double())
            model.float()
            use(True)
            for on in (True, False):
                far = (outs[on].double() - exact).abs()
                rel = far.max().item() / exact.abs().max().item()
                print(f"{weights}: {'with' if on else 'without'}: output {rel:.1e} of the range from float64,"
                      f" {int((far > 1 / 255).sum())} of {far.numel()} values by more than 1/255")


if __name__ == "__main__":
    main()
