"""ESRT x4 forward: peak memory growth and latency, memory-bounded attention vs the official full-matrix attention.

    python benchmarks/esrt_memory.py                      # CPU, LR 128² and 256², default path vs naive
    python benchmarks/esrt_memory.py --modes sdpa chunked naive --sizes 128
    python benchmarks/esrt_memory.py --device cuda

Every measurement runs in a fresh subprocess (so one run's allocator state and peak cannot leak into another):
memory = growth of the peak over the first forward (CPU: ``ru_maxrss`` after minus before; CUDA:
``max_memory_allocated`` minus the allocation before), latency = median of ``--runs`` timed forwards after it.

The naive path keeps each token segment's 8 × L × L score matrix (L = N/4), and the official loop keeps three of
them alive at its peak: 24 GiB at 256². Before running it, the script estimates its peak analytically (3 score
matrices + the rest of the network, measured on our path); when that exceeds ``--naive-limit-gib`` or half the
memory available, it reports the estimate instead of running it, so the machine (shared, 24 GiB) is never pushed
into swap or the OOM killer. When it does run, it runs under ``RLIMIT_AS`` (CPU) so an underestimate fails cleanly.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

GIB = 1 << 30
MIB = 1 << 20
HEADS = 8


def naive_score_bytes(size: int, batch: int = 1) -> int:
    """Bytes of one segment's fp32 score matrix in the official EMHA: batch × 8 heads × (N//4)²."""
    segment = size * size // 4
    return batch * HEADS * segment * segment * 4


# --------------------------------------------------------------------------------------------- worker


def worker(args: argparse.Namespace) -> dict:
    import torch

    import litesr

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    model = litesr.create_model("esrt", args.scale).eval().to(device)
    model.attention = args.mode
    x = torch.rand(1, 3, args.size, args.size, device=device)
    cuda = device.type == "cuda"

    def forward():
        with torch.inference_mode():
            y = model(x)
        if cuda:
            torch.cuda.synchronize()
        return y

    if args.limit_gib and not cuda:
        import resource

        limit = _vm_size_bytes() + int(args.limit_gib * GIB)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        before = torch.cuda.memory_allocated()
    else:
        import resource

        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    try:
        t0 = time.perf_counter()
        y = forward()  # also the warm-up
        first = time.perf_counter() - t0
    except (RuntimeError, MemoryError) as exc:
        return {"ok": False, "error": str(exc).splitlines()[0][:200]}
    if cuda:
        growth = torch.cuda.max_memory_allocated() - before
    else:
        growth = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - before
    del y
    times = []
    for _ in range(args.runs):
        t0 = time.perf_counter()
        forward()
        times.append(time.perf_counter() - t0)
    latency = statistics.median(times) if times else first  # --runs 0: the cold first forward only
    return {"ok": True, "growth": growth, "latency": latency, "first": first, "times": times}


def _vm_size_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


# --------------------------------------------------------------------------------------------- driver


def measure(args: argparse.Namespace, size: int, mode: str, limit_gib: float | None = None) -> dict:
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--size", str(size), "--mode", mode,
           "--device", args.device, "--scale", str(args.scale), "--threads", str(args.threads),
           "--runs", str(args.runs)]
    if limit_gib:
        cmd += ["--limit-gib", str(limit_gib)]
    env = {**os.environ, "OMP_NUM_THREADS": str(args.threads), "MKL_NUM_THREADS": str(args.threads)}
    # Spinning OpenMP workers collapse on a shared, oversubscribed machine (seen here: 2 threads at load 6 ran
    # a forward 40× slower than 1 thread); passive waiting costs little on an idle one.
    env.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("{")]
    if proc.returncode or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"ok": False, "error": f"exit {proc.returncode}: {tail[:200]}"}
    return json.loads(lines[-1])


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
    # worker-only
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--size", type=int, help=argparse.SUPPRESS)
    p.add_argument("--mode", help=argparse.SUPPRESS)
    p.add_argument("--limit-gib", type=float, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()

    if args.worker:
        print(json.dumps(worker(args)), flush=True)
        return

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
