"""``litesr.device.reuse_freed_memory`` (glibc mallopt) on and off: forward time of one model, same machine.

Each setting runs in its own fresh process (mallopt is process-wide), alternating, ``--rounds`` times; the
script prints each process's median forward time and the ratio of the medians.

    python benchmarks/malloc_reuse.py --size 128 --rounds 2
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time


def worker(args) -> None:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    import torch

    from litesr.device import precision_context, reuse_freed_memory
    from litesr.pretrained import resolve_model

    applied = reuse_freed_memory() if args.reuse else False
    model = resolve_model(None, args.arch, args.scale, "cpu").eval()
    x = torch.rand(1, 3, args.size, args.size)
    out = {"applied": applied}
    for precision in ("fp32", "bf16"):
        def forward():
            with torch.inference_mode(), precision_context(torch.device("cpu"), precision):
                return model(x)
        forward()
        times = []
        for _ in range(args.runs):
            t = time.perf_counter()
            forward()
            times.append(time.perf_counter() - t)
        out[precision] = statistics.median(times)
    print(json.dumps(out))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", default="elan-light", help="a model with shipped weights")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--reuse", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        return worker(args)
    results = {False: [], True: []}
    for _ in range(args.rounds):
        for reuse in (False, True):
            cmd = [sys.executable, __file__, "--worker", "--arch", args.arch, "--scale", str(args.scale),
                   "--size", str(args.size), "--runs", str(args.runs)] + (["--reuse"] if reuse else [])
            r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout)
            results[reuse].append(r)
            print(f"reuse_freed_memory {'on ' if reuse else 'off'} (applied: {r['applied']}): "
                  f"fp32 {r['fp32']:.3f} s, bf16 {r['bf16']:.3f} s", flush=True)
    for precision in ("fp32", "bf16"):
        off = statistics.median(r[precision] for r in results[False])
        on = statistics.median(r[precision] for r in results[True])
        print(f"{args.arch} x{args.scale} LR {args.size}², {precision}: off/on {off / on:.2f}x")


if __name__ == "__main__":
    main()
