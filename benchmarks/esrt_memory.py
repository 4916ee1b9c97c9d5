"""ESRT x4 forward: peak memory growth and latency, memory-bounded attention vs the official full-matrix attention.

    python benchmarks/esrt_memory.py                      # CPU, LR 128² and 256², default path vs naive
    python benchmarks/esrt_memory.py --modes sdpa chunked naive --sizes 128
    python benchmarks/esrt_memory.py --device cuda

Every measurement runs in a fresh subprocess (so one run's allocator state and peak cannot leak into another),
through ``litesr.efficiency``: memory = growth of the peak over the first forward (CPU: resident high-water mark
minus the resident set before; CUDA: ``max_memory_allocated`` minus the allocation before), latency = median of
``--runs`` timed forwards after it.

The naive path keeps each token segment's 8 × L × L score matrix (L = N/4), and the official loop keeps three of
them alive at its peak: 24 GiB at 256². Before running it, the script estimates its peak analytically (3 score
matrices + the rest of the network, measured on our path); when that exceeds ``--naive-limit-gib`` or half the
memory available, it reports the estimate instead of running it, so the machine (shared, 24 GiB) is never pushed
into swap or the OOM killer. When it does run, it runs under ``RLIMIT_AS`` (CPU) so an underestimate fails cleanly.
"""

from __future__ import annotations

import argparse
import os

GIB = 1 << 30
MIB = 1 << 20
HEADS = 8


def naive_score_bytes(size: int, batch: int = 1) -> int:
    """Bytes of one segment's fp32 score matrix in the official EMHA: batch × 8 heads × (N//4)²."""
    segment = size * size // 4
    return batch * HEADS * segment * segment * 4


# --------------------------------------------------------------------------------------------- measurement


def measure(args: argparse.Namespace, size: int, mode: str, limit_gib: float | None = None) -> dict:
    """One ESRT forward path at one size, in a fresh process (``litesr.efficiency.measure_isolated``)."""
    from litesr.efficiency import BenchSpec, measure_isolated

    spec = BenchSpec("esrt", args.scale, size, size, args.device, runs=args.runs, warmup=1, threads=args.threads,
                     attributes={"attention": mode}, memory_limit_gib=limit_gib or 0.0)
    r = measure_isolated(spec)
    if "error" in r:
        return {"ok": False, "error": r["error"]}
    return {"ok": True, "growth": r["peak_bytes"], "latency": r["latency"], "first": r["first"], "times": r["times"]}


def available_bytes() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def total_gpu_bytes() -> int:
    import torch

    return torch.cuda.get_device_properties(0).total_memory


def fmt_mem(r: dict) -> str:
    if r.get("ok"):
        return f"{r['growth'] / MIB:,.0f} MiB"
    if "estimate" in r and "error" in r:
        return f"OOM, needs ≈{r['estimate'] / GIB:,.1f} GiB"
    if "estimate" in r:
        return f"≈{r['estimate'] / GIB:,.1f} GiB (est.)"
    return "failed"


def fmt_time(r: dict) -> str:
    return f"{r['latency']:.3f} s" if r.get("ok") else "–"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="LR side lengths (square inputs)")
    p.add_argument("--modes", nargs="+", default=None,
                   help="attention paths to compare; default: litesr's default path, then naive")
    p.add_argument("--scale", type=int, default=4)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3, help="timed forwards after the warm-up (median reported)")
    p.add_argument("--naive-limit-gib", type=float, default=8.0,
                   help="run the naive path only if its estimated peak is below this (and half of free memory)")
    args = p.parse_args()

    from litesr.models.esrt import DEFAULT_ATTENTION

    modes = args.modes or [DEFAULT_ATTENTION, "naive"]
    ours = next((m for m in modes if m != "naive"), None)
    if args.device == "cuda":
        budget = total_gpu_bytes() * 0.9
        where = "GPU memory"
    else:
        budget = min(args.naive_limit_gib * GIB, available_bytes() / 2)
        where = f"min(--naive-limit-gib {args.naive_limit_gib:g} GiB, half of MemAvailable)"
    print(f"ESRT x{args.scale}, batch 1, fp32, {args.device}, {args.threads} threads, inference_mode; "
          + (f"latency = median of {args.runs} after 1 warm-up" if args.runs else "latency = one cold forward")
          + "; each cell a fresh process; "
          f"OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'PASSIVE')}", flush=True)
    if args.device == "cpu":
        print(f"load average before: {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs "
              "(latency is only comparable on an otherwise idle machine)", flush=True)

    results: dict[tuple[int, str], dict] = {}
    notes = []
    for size in args.sizes:
        for mode in modes:
            if mode == "naive":
                rest = results.get((size, ours), {}).get("growth", 0)
                estimate = 3 * naive_score_bytes(size) + rest
                if estimate > budget:
                    r = {"ok": False, "estimate": estimate}
                    notes.append(
                        f"naive {size}²: not run — estimated peak {estimate / GIB:.1f} GiB (3 live score matrices of "
                        f"{naive_score_bytes(size) / GIB:.1f} GiB each + {rest / MIB:.0f} MiB for the rest of the "
                        f"network, as measured on our path) exceeds {where}."
                        + (" The official code at 256² was seen to fail allocating a further 8 GiB at 16.6 GiB RSS "
                           "(shared/specs/elan_esrt.md §5.2)." if size == 256 else ""))
                    results[size, mode] = r
                    print(f"  {size}² {mode:8s} skipped (needs ≈{estimate / GIB:.1f} GiB)", flush=True)
                    continue
                limit = None if args.device == "cuda" else min(budget * 1.5, available_bytes() * 0.8) / GIB
                r = measure(args, size, mode, limit)
                if not r.get("ok"):
                    r["estimate"] = estimate
                    notes.append(f"naive {size}²: failed: out of memory (needs ≈{estimate / GIB:.1f} GiB): "
                                 f"{r.get('error')}")
            else:
                r = measure(args, size, mode)
                if not r.get("ok"):
                    notes.append(f"{mode} {size}²: failed: {r.get('error')}")
            results[size, mode] = r
            print(f"  {size}² {mode:8s} {fmt_mem(r):>22s} {fmt_time(r):>10s}", flush=True)

    if args.device == "cpu":
        print(f"load average after: {os.getloadavg()[0]:.2f}")
    print()
    header = f"| LR size | {'path':8s} | {'peak memory growth':>22s} | {'latency':>9s} | naive ÷ this (memory, time) |"
    print(header)
    print("|" + "|".join("-" * (len(c)) for c in header.split("|")[1:-1]) + "|")
    for size in args.sizes:
        naive = results.get((size, "naive"), {})
        for mode in modes:
            r = results[size, mode]
            ratio = ""
            if mode != "naive" and r.get("ok"):
                mem_ref = naive.get("growth") if naive.get("ok") else naive.get("estimate")
                mem = f"{mem_ref / r['growth']:.1f}×" if mem_ref else "–"
                if not naive.get("ok") and mem_ref:
                    mem = "≈" + mem + " (est.)"
                tim = f"{naive['latency'] / r['latency']:.2f}×" if naive.get("ok") else "–"
                ratio = f"{mem}, {tim}"
            label = f"{size}×{size}"
            print(f"| {label:7s} | {mode:8s} | {fmt_mem(r):>22s} | {fmt_time(r):>9s} | {ratio:27s} |")
    if notes:
        print()
        for note in notes:
            print("note:", note)


if __name__ == "__main__":
    main()
