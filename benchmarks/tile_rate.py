"""Time per output pixel of one whole-image forward at several LR sizes, ÷ the first size's: what a tile of each size
costs per pixel, before the context around it (a 256 core with 16 pixels of context computes 288², a 512 core 544²).

Each model and size runs in a fresh process (``litesr.upscale(..., tile=None)`` of a picture-like input, median of
``--runs`` after one warm-up), so its peak resident growth over the loaded model is its own. ``litesr upscale``
(the CLI) keeps glibc's freed blocks for reuse (``litesr.device.reuse_freed_memory``); Python callers get the default
allocator unless they call it: ``--default-allocator`` times that case. Pause other CPU work first.

    python benchmarks/tile_rate.py --weights elan-light-x4 span-x4-ntire --sizes 256 288 544
    python benchmarks/tile_rate.py --weights elan-light-x4 --sizes 256 544 --default-allocator
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
ROOT = Path(__file__).resolve().parents[1]


def one(weights: str, size: int, runs: int, reuse: bool) -> dict:
    """In this process: seconds (median) and peak resident growth (MiB) of the forward of one size."""
    import litesr
    from floor import photo
    from litesr.device import reuse_freed_memory

    if reuse:
        reuse_freed_memory()
    model = litesr.load_model(weights).eval()
    image = photo(ROOT / "examples" / "sample.png", size)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    times = []
    for _ in range(runs + 1):
        start = time.perf_counter()
        litesr.upscale(image, model, tile=None)
        times.append(time.perf_counter() - start)
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024  # Linux: KiB
    return {"seconds": statistics.median(times[1:]), "peak_mib": grown}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", help="zoo names or files")
    ap.add_argument("--sizes", nargs="+", type=int, default=[256, 288, 544], help="LR sides; the first is the base")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--default-allocator", action="store_true", help="do not keep freed blocks for reuse")
    ap.add_argument("--one", nargs=2, metavar=("WEIGHTS", "SIZE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], int(args.one[1]), args.runs, not args.default_allocator)))
        return
    if not args.weights:
        ap.error("--weights is required")
    print(f"# freed blocks {'returned to the OS' if args.default_allocator else 'kept for reuse'}; median of "
          f"{args.runs}; per-pixel time ÷ LR {args.sizes[0]}²'s; peak resident growth over the loaded model")
    for weights in args.weights:
        rows = {}
        for size in args.sizes:
            command = [sys.executable, __file__, "--one", weights, str(size), "--runs", str(args.runs)]
            if args.default_allocator:
                command.append("--default-allocator")
            out = subprocess.run(command, capture_output=True, text=True, check=True)
            rows[size] = json.loads(out.stdout.strip().splitlines()[-1])
        base = rows[args.sizes[0]]["seconds"] / args.sizes[0] ** 2
        print(f"{weights}: " + ", ".join(
            f"{s}² {r['seconds']:.2f} s = {r['seconds'] / s ** 2 / base:.2f}× per pixel, {r['peak_mib']:.0f} MiB"
            for s, r in rows.items()), flush=True)


if __name__ == "__main__":
    main()
