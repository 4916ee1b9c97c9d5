"""``litesr bench``: parameters, MACs, latency and peak memory of models, side by side, in one run."""

from __future__ import annotations

import argparse
import json
import sys

EXAMPLES = """examples:
  litesr bench elan-light swinir-light grformer esrt             # x4, LR 128x128, this machine
  litesr bench elan-light --sizes 64 128 256 --runs 10 --threads 2 --json elan.json
  litesr bench imdn pan --scale 2 --device cuda --precision bf16
  litesr bench --macs-only elan-light elan esrt swinir-light grformer imdn pan

MACs are counted for a 1280x720 output (the papers' Multi-Adds), on the meta device: "all" counts every
convolution and matmul (attention included), "layers" only Conv2d/Linear (thop-style, attention left out).
Latency is the median of --runs forwards after --warmup; memory is the peak growth over one forward, each size in
a fresh process. On a CPU the last line says whether litesr's compiled attention kernels ran (AVX-512 BF16 CPUs
with a C compiler; LITESR_NATIVE=0 turns them off) or the eager PyTorch path. Latency does not depend on the
weights, so models are built with random weights; a checkpoint path works too. Compare figures from one run only:
the machine (and its load) sets the scale.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.registry import SCALES
    from .options import add_device_argument, add_json_argument, add_precision_argument, example_formatter

    p = sub.add_parser(
        "bench",
        help="parameters, MACs, latency and peak memory of models",
        description="Measure the efficiency of registered models (or checkpoints): trainable parameters, MACs for a "
        "1280x720 output, latency and peak memory at the given LR sizes.",
        epilog=EXAMPLES,
        formatter_class=example_formatter,
    )
    p.add_argument("models", nargs="+", metavar="MODEL",
                   help="variant names (random weights), checkpoints or names of weights (see `litesr models`)")
    p.add_argument("--scale", type=int, choices=SCALES,
                   help="upscaling factor of named variants (default 4); a checkpoint's own scale is read from it "
                        "(give it only where the file cannot tell, as for PAN x2/x3)")
    p.add_argument("--sizes", type=int, nargs="+", default=[128], metavar="N",
                   help="square LR input sizes for latency/memory (default 128)")
    p.add_argument("--runs", type=int, default=5, help="timed forwards per size (default 5; median reported)")
    p.add_argument("--warmup", type=int, default=2,
                   help="untimed forwards first (default 2; 0 times the first, cold forward too)")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's default)")
    add_device_argument(p, default="cpu")
    add_precision_argument(p)
    p.add_argument("--macs-only", action="store_true", help="count parameters and MACs; no timing")
    p.add_argument("--timeout", type=float, default=None, metavar="S",
                   help="give up on one measurement after S seconds")
    add_json_argument(p, "every figure")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import os

    from ..efficiency import BenchSpec, count_flops, count_layer_macs, count_parameters, hd_input_size, measure_isolated
    from ..checkpoint import load_model
    from ..pretrained import weights_path
    from ..zoo import is_weights_name
    from ..device import pick_device
    from ..io import check_writable
    from .options import UsageError

    if args.runs < 1 or args.warmup < 0:
        raise UsageError("--runs must be at least 1 and --warmup at least 0")
    if any(n < 1 for n in args.sizes):
        raise UsageError("--sizes must be positive")
    device = pick_device(args.device)  # a clear error now rather than in every worker
    if args.json:
        check_writable(args.json)
    results = []
    for name in args.models:
        if os.path.exists(name) or is_weights_name(name):  # a checkpoint or named weights: their own scale
            path, entry = weights_path(name, args.scale)
            source = str(path)  # what each measuring process loads
            model = load_model(path, scale=args.scale or (entry.scale if entry else None))
        else:
            source = name
            model = BenchSpec(name, args.scale or 4).build()
        scale = int(model.scale)
        hd = hd_input_size(scale)
        row = {"model": name, "arch": model.arch_name, "scale": int(model.scale), "params": count_parameters(model),
               "macs_input": list(hd), "macs": count_flops(model, hd)["macs"],
               "layer_macs": count_layer_macs(model, hd)["macs"], "sizes": {}}
        del model
        if not args.macs_only:
            for size in args.sizes:
                spec = BenchSpec(source, scale, size, size, args.device, args.precision, args.runs, args.warmup,
                                 args.threads)
                if sys.stderr.isatty():
                    print(f"measuring {name} at {size}x{size} ...", file=sys.stderr, flush=True)
                row["sizes"][str(size)] = measure_isolated(spec, timeout=args.timeout)
        results.append(row)
    print(format_table(results, args))
    kernels = None
    if not args.macs_only and device.type == "cpu":
        from ..ops import native

        kernels = native.status()
        print(f"litesr's compiled attention kernels: {kernels}"
              + ("" if native.window_attention_runs() else " (the eager PyTorch path ran)"))
    if args.json:
        from ..io import atomic_path

        scales = sorted({r["scale"] for r in results})
        doc = {"scale": scales[0] if len(scales) == 1 else scales, "device": args.device, "precision": args.precision,
               "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "native_kernels": kernels,
               "results": results}
        with atomic_path(args.json) as tmp:
            tmp.write_text(json.dumps(doc, indent=2) + "\n")
    failed = sum("error" in m for r in results for m in r["sizes"].values())
    return 1 if failed else 0  # the table is printed; a failed measurement is not a success


def format_table(results: list[dict], args: argparse.Namespace) -> str:
    from .options import columns

    h, w = results[0]["macs_input"]
    scales = sorted({r["scale"] for r in results})
    mixed = len(scales) > 1
    headers = ["model", "params", "GMACs all", "GMACs layers"]
    sizes = [] if args.macs_only else [str(s) for s in args.sizes]
    for s in sizes:
        headers += [f"{s}² latency", f"{s}² peak"]
    rows = []
    for r in results:
        cells = [r["model"] + (f" x{r['scale']}" if mixed else ""), f"{r['params']:,}", f"{r['macs'] / 1e9:.2f}",
                 f"{r['layer_macs'] / 1e9:.2f}"]
        for s in sizes:
            m = r["sizes"][s]
            if "error" in m:
                cells += ["failed", ""]
            else:
                cells += [f"{m['latency']:.3f} s", f"{m['peak_bytes'] / 2**20:,.0f} MiB"]
        rows.append(cells)
    first = next((m for r in results for m in r["sizes"].values() if "error" not in m), None)
    threads = f", {first['threads']} thread{'s' * (first['threads'] != 1)}" if first and args.device == "cpu" else ""
    where = f"{args.device}{threads}"
    head = (f"x{scales[0]}; MACs for a {w * scales[0]}x{h * scales[0]} output (LR {w}x{h})" if not mixed
            else "scales " + ", ".join(f"x{s}" for s in scales) + "; MACs for a 1280x720 output")
    lines = [head
             + ("" if args.macs_only else f"; {where}, {args.precision}, median of {args.runs} after "
                f"{args.warmup} warm-up, peak = memory growth over one forward (fresh process)")]
    lines += columns([headers] + rows, right=set(range(1, len(headers))))  # names left, figures right
    failures = [(r["model"], s, r["sizes"][s]["error"]) for r in results for s in sizes if "error" in r["sizes"][s]]
    lines += [f"{name} at {s}x{s} failed: {error}" for name, s, error in failures]
    return "\n".join(lines)
