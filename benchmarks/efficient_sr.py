"""Efficient SR on one machine: every x4 model with real weights, measured the same way in one run.

For each weights file (default: every x4 entry of litesr's model zoo whose file is here or in the cache):
- parameters, and MACs of one forward producing a 1280×720 output (every convolution and matmul);
- seconds of ``litesr upscale`` with its defaults on a 256² picture (LR), in fp32 and at the default precision
  (``auto``), median of ``--runs`` rounds interleaved over all models so that a busy machine slows every row alike;
- time ÷ floor: those seconds ÷ (FLOPs of the model's official op sequence ÷ this machine's GEMM peak of the
  precision it ran in; ``benchmarks/floor.py``), the peak being the median of one ``--gemm``-sized matmul timed in
  each of the same interleaved rounds, so that drift of the machine's speed moves both alike;
- large images: seconds of the same default upscale of a ``--large`` picture (LR 2048×1536 → 8192×6144; the tile
  ``litesr upscale`` takes for the model), output megapixels per second, and its time per output pixel ÷ the 256²
  picture's (one tile): ≤ 1.15 means a large image costs what its tiles cost;
- peak resident memory of that forward, in a fresh process (``litesr.efficiency.measure_isolated``);
- PSNR/SSIM (Y, fp32, the standard protocol) of the weights on Set5, Set14, B100 and the Urban100 subset.

Every forward runs as ``litesr upscale`` runs it, with glibc keeping freed blocks for reuse
(``litesr.device.reuse_freed_memory``; ``--default-allocator``: as a Python caller who does not ask for it).

The scores compare what a user can download, each trained on its own data (DIV2K, DIV2K+LSDIR, the 291 images):
not architectures under one recipe. Writes ``<out>.json`` (every figure, with the CPU, peaks, commit and date) and
``<out>.md`` (the table), then draws the chart and the crops of ``benchmarks/figures.py`` beside them.

    python benchmarks/efficient_sr.py --data ../shared/data/benchmarks            # docs/efficient_sr.{json,md}
    python benchmarks/efficient_sr.py --weights elan-light-x4 path/to/mine.pth --no-scores
    python benchmarks/efficient_sr.py --large 0 --no-scores --out /tmp/quick          # 256² timings only

A CPU without AVX-512 is stood in for by capping every library at AVX2 and turning litesr's native kernels off
(bf16 is then never chosen: no native bf16 below AVX-512 BF16):

    ATEN_CPU_CAPABILITY=avx2 ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 LITESR_NATIVE=0 \
        python benchmarks/efficient_sr.py --no-scores --no-figures --out /tmp/avx2

Scores do not depend on the machine: where litesr's weights table records them for the very file (sha256), or an
earlier JSON does, they are taken from there (``--fresh-scores`` evaluates again), so a run for new timings takes
minutes, not the hour of the B100 evaluations.
"""

from __future__ import annotations

import argparse
import datetime
import json
import re
import subprocess
import sys
from pathlib import Path

import torch

from litesr import zoo
from litesr.zoo import SET_ORDER as SETS

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]


def default_entries() -> list[tuple[str, str]]:
    """(label, weights) of every x4 zoo entry whose file can be had without a download."""
    return [(e.name, e.name) for e in zoo.entries().values() if e.scale == 4 and zoo.local_file(e) is not None]


def describe(weights: str, digest: str) -> dict:
    """What the table knows of ``weights``: training data, licence, and its scores if they are of this very file."""
    entry = zoo.find(weights)
    if entry is None:
        return {"training_data": "?", "licence": "?", "scores": None}
    scores = {s: {"psnr_y": v["psnr"], "ssim_y": v["ssim"]} for s, v in entry.scores.items()}
    same_file = entry.sha256 == digest and len(scores) == len(SETS)
    data = re.match(r"[^,;(]*(\([^)]*\))?[^,;]*", entry.data).group(0).strip()  # up to the first comma outside ()
    return {"training_data": data, "licence": entry.licence.split(" (")[0],
            "scores": scores if same_file else None}


def resolve_file(weights: str) -> Path:
    path = Path(weights)
    if path.is_file():
        return path
    entry = zoo.find(weights)
    if entry is None:
        raise SystemExit(f"{weights}: neither a file nor a name of litesr's weights table (litesr models)")
    found = zoo.local_file(entry)
    if found is None:
        raise SystemExit(f"{weights}: no local file (litesr weights download {weights})")
    return Path(found)


def timed_rows(models: dict, image, runs: int, gemm: dict | None = None) -> dict[str, dict[str, float]]:
    """{label: {precision: median seconds}} of `litesr upscale`'s default path, all models interleaved; with
    ``gemm`` ({precision: (n, dtype)}) also one n×n×n matmul per round and precision, its median FLOP/s under
    ``out["gemm"]``: the peak measured under the same conditions as the models (this host's speed drifts by
    ±20 % within minutes)."""
    from floor import interleaved

    from litesr import tiling
    from litesr.runner import TorchRunner

    paths = {}
    for precision, (n, dtype) in (gemm or {}).items():
        a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
        paths[("gemm", precision)] = ((lambda a=a, b=b: torch.mm(a, b)), precision)
    for label, model in models.items():
        for precision in ("fp32", "auto"):
            runner = TorchRunner(model, "cpu", precision)
            if precision == "auto" and runner.precision == "fp32":
                continue  # auto is fp32 here: timed once
            def run(runner=runner):
                return tiling.upscale_array(runner, image)
            paths[(label, precision)] = (run, precision)
    times = interleaved(paths, runs)
    out: dict[str, dict[str, float]] = {}
    for (label, precision), seconds in times.items():
        if label == "gemm":
            out.setdefault("gemm", {})[precision] = 2 * gemm[precision][0] ** 3 / seconds
        else:
            out.setdefault(label, {})[precision] = seconds
    for label, seconds in out.items():
        if label != "gemm":
            seconds.setdefault("auto", seconds["fp32"])
    return out


def large_row(model, image, small_seconds: float, small_pixels: int) -> dict:
    """One default upscale of the large picture (the tile ``litesr upscale`` takes): seconds, output MP/s, per-pixel
    time ÷ the small picture's."""
    import time

    from litesr import tiling
    from litesr.runner import TorchRunner

    runner = TorchRunner(model, "cpu", "auto")
    tile = tiling.default_tile(runner)
    start = time.perf_counter()
    out = tiling.upscale_array(runner, image, tiling.InferenceOptions(tile=tile))
    seconds = time.perf_counter() - start
    pixels = out.shape[0] * out.shape[1]
    return {"seconds_large": seconds, "mpix_per_s_large": pixels / seconds / 1e6, "tile_large": tile,
            "large_per_tile": (seconds / pixels) / (small_seconds / small_pixels)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", nargs="+", help="zoo names or files (default: every local x4 zoo entry)")
    ap.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data" / "benchmarks",
                    help="benchmark root (EDSR layout); the Urban100 folder may hold HR only")
    ap.add_argument("--sets", nargs="+", default=list(SETS))
    ap.add_argument("--size", type=int, default=256, help="LR side of the timed picture")
    ap.add_argument("--large", default="2048x1536",
                    help="LR WxH of the large picture timed once per model (0: skip)")
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--gemm", type=int, default=2048)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "efficient_sr")
    ap.add_argument("--no-scores", action="store_true", help="timings only")
    ap.add_argument("--fresh-scores", action="store_true", help="evaluate again even where the JSON has scores")
    ap.add_argument("--default-allocator", action="store_true",
                    help="let glibc return freed blocks to the OS, as a Python caller's process does unless it asks")
    ap.add_argument("--no-figures", action="store_true",
                    help="skip the chart and the crops (benchmarks/figures.py draws them from the JSON later)")
    args = ap.parse_args()

    from litesr.device import reuse_freed_memory
    reused = not args.default_allocator and reuse_freed_memory()

    import litesr
    from floor import gemm_peak, model_flops, photo

    from litesr.efficiency import BenchSpec, count_flops, count_parameters, cpu_name, hd_input_size, \
        measure_isolated
    from litesr.evaluate import evaluate
    from litesr.device import resolve_precision

    entries = [(w, w) for w in args.weights] if args.weights else default_entries()
    old = {}
    json_path = args.out.with_suffix(".json")
    if json_path.is_file() and not args.fresh_scores:
        old = {r["sha256"]: r.get("scores") for r in json.loads(json_path.read_text())["rows"] if r.get("scores")}

    from litesr import compat

    # bf16 only where the CPU computes it natively: elsewhere auto never picks it, and an emulated bf16 GEMM of
    # --gemm's size takes minutes under an AVX2 cap
    peak = {"fp32": gemm_peak(torch.float32, args.gemm)}
    if compat.cpu_has_native_bf16():
        peak["bf16"] = gemm_peak(torch.bfloat16, args.gemm)
    cpu = torch.device("cpu")
    image = photo(ROOT / "examples" / "sample.png", args.size)
    models, rows = {}, []
    for label, weights in entries:
        path = resolve_file(weights)
        model = litesr.load_model(str(path)).eval()
        if model.scale != 4:
            raise SystemExit(f"{weights} is a x{model.scale} model; this table is of x4 models")
        models[label] = model
        digest = zoo.sha256_of(path)
        known = describe(weights, digest)
        rows.append({
            "name": label, "file": path.name, "sha256": digest, "arch": model.arch_name, **known,
            "params": count_parameters(model),
            "macs_720p": count_flops(model, hd_input_size(4))["macs"],
            "flops_lr": model_flops(model, args.size),
            "precision_auto": resolve_precision(model, cpu, "auto"),
            "memory_bytes": measure_isolated(BenchSpec(model=str(path), height=args.size, width=args.size,
                                                       precision=resolve_precision(model, cpu, "auto"), runs=1,
                                                       warmup=1)).get("peak_bytes"),
            "scores": None if args.fresh_scores else known["scores"] or old.get(digest),
            "scores_from": "table" if known["scores"] and not args.fresh_scores else "this run",
        })
        print(f"# {label}: {rows[-1]['params']:,} params, {rows[-1]['macs_720p'] / 1e9:.1f} G MACs at 720p",
              flush=True)
    start_peak = peak
    seconds = timed_rows(models, image, args.runs, {
        k: (args.gemm, torch.float32 if k == "fp32" else torch.bfloat16) for k in start_peak})
    peak = seconds.pop("gemm")  # the floor: the peak measured interleaved with the models
    print("# GEMM peak GFLOP/s, before the models / interleaved with them (used): " + ", ".join(
        f"{k} {start_peak[k] / 1e9:.0f} / {peak[k] / 1e9:.0f}" for k in peak), flush=True)
    large = None if args.large == "0" else tuple(int(v) for v in args.large.lower().split("x"))
    big = None if large is None else photo(ROOT / "examples" / "sample.png", large[1], large[0])
    for row in rows:
        s = seconds[row["name"]]
        row["seconds_fp32"], row["seconds_auto"] = s["fp32"], s["auto"]
        row["floor_fp32"] = row["flops_lr"] / peak["fp32"]
        row["floor_auto"] = row["flops_lr"] / peak["bf16" if row["precision_auto"] == "bf16" else "fp32"]
        line = f"# {row['name']}: {args.size}² {s['auto']:.3f} s = {s['auto'] / row['floor_auto']:.2f}× floor"
        if big is not None:
            row.update(large_row(models[row["name"]], big, s["auto"], (args.size * 4) ** 2))
            line += (f"; {large[0]}×{large[1]} {row['seconds_large']:.1f} s, {row['mpix_per_s_large']:.2f} MP/s "
                     f"out, {row['large_per_tile']:.2f}× the tile's time per pixel")
        print(line, flush=True)
        if not args.no_scores and row["scores"] is None:
            results = evaluate(models[row["name"]], args.data, args.sets, 4, progress=False)
            row["scores"] = {k: {"psnr_y": round(v["psnr_y"], 4), "ssim_y": round(v["ssim_y"], 4)}
                             for k, v in results.items()}
            print(f"# {row['name']}: " + ", ".join(f"{k} {v['psnr_y']:.2f}" for k, v in row["scores"].items()),
                  flush=True)
    commit = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                            text=True).stdout.strip() or "?"
    record = {"date": datetime.date.today().isoformat(), "commit": commit, "cpu": cpu_name(details=True),
              "threads": torch.get_num_threads(), "torch": torch.__version__, "lr_size": args.size,
              "large": args.large if large is not None else None,
              "chart": None if args.no_figures else "psnr_vs_latency.png",
              "gemm_gflops": {k: round(v / 1e9, 1) for k, v in peak.items()},
              "gemm_gflops_before": {k: round(v / 1e9, 1) for k, v in start_peak.items()},
              "runs": args.runs, "freed_blocks_reused": reused, "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(json.dumps(record, indent=1) + "\n")
    args.out.with_suffix(".md").write_text(markdown(record))
    print(markdown(record))
    if not args.no_figures:
        draw_figures(record, args.data, args.out.parent)


def draw_figures(record: dict, data: Path, folder: Path) -> None:
    """The chart and the crops of ``benchmarks/figures.py``, from this run's record (needs matplotlib)."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("# figures skipped: matplotlib is not installed (pip install 'litesr[plot]', then "
              "python benchmarks/figures.py)")
        return
    import figures

    figures.chart(record, folder / "psnr_vs_latency.png")
    figures.comparison(record, data, folder / "comparison.png", crop=figures.DEFAULT_CROP)
    print(f"# wrote {folder / 'psnr_vs_latency.png'} and {folder / 'comparison.png'}")


def rewrite_markdown(json_path: Path) -> None:
    """``<out>.md`` again from ``<out>.json`` (after a change of wording, no measurement)."""
    json_path.with_suffix(".md").write_text(markdown(json.loads(json_path.read_text())))


def markdown(record: dict) -> str:
    sets = [s for s in SETS if any(r.get("scores") and s in r["scores"] for r in record["rows"])]
    large = record.get("large")
    head = ["model", "trained on", "params", "MACs (720p)", "fp32 s", "default s", "÷ floor", "memory"] + \
        ([f"{large} MP/s", "÷ tile"] if large else []) + [f"{s} PSNR / SSIM" for s in sets]
    lines = [
        "# Efficient SR on one machine",
        "",
        "Every x4 model with real weights, measured by one script in one run "
        "(`python benchmarks/efficient_sr.py`; chart and crops: `python benchmarks/figures.py`). Each file was "
        "trained on its own data by its own recipe (the *trained on* column): the table compares what a user can "
        "download, not architectures under one recipe ([cpu291.md](cpu291.md) does that for four of them).",
        "",
        *([f"![PSNR against CPU latency]({record['chart']})", ""] if record.get("chart", "psnr_vs_latency.png")
          else []),
        f"Measured {record['date']} at commit `{record['commit']}` on {record['cpu']}, {record['threads']} threads, "
        f"torch {record['torch']}; GEMM peak fp32 {record['gemm_gflops']['fp32']:.0f}"
        + (f", bf16 {record['gemm_gflops']['bf16']:.0f}" if "bf16" in record["gemm_gflops"] else " (no native bf16)")
        + " GFLOP/s" + (" (one matmul in each interleaved round, median; "
                        + ", ".join(f"{k} {v:.0f}" for k, v in record["gemm_gflops_before"].items())
                        + " measured before the models)" if "gemm_gflops_before" in record else "")
        + f". Seconds: `litesr upscale` defaults on a "
        f"{record['lr_size']}² picture (x4), median of {record['runs']} interleaved rounds; default = "
        "`--precision auto`; ÷ floor at the default precision; memory = peak resident growth of that forward"
        + ("; freed blocks kept for reuse, as the command line runs. " if record.get("freed_blocks_reused")
           else ". ")
        + (f"{large} MP/s: output megapixels per second of the same default upscale of an LR {large} picture "
           "(one run, the tile `litesr upscale` takes for the model); ÷ tile: its time per output pixel ÷ the small "
           "picture's. " if large else "") +
        "Scores: Y channel, fp32, the standard protocol (`docs/evaluation.md`); the Urban100 column is the "
        "10-image subset.",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in sorted(record["rows"], key=lambda r: r["seconds_auto"]):
        scores = r.get("scores") or {}
        cells = [f"`{r['name']}`", r["training_data"], f"{r['params'] / 1e3:.0f}k", f"{r['macs_720p'] / 1e9:.1f} G",
                 f"{r['seconds_fp32']:.2f}", f"{r['seconds_auto']:.2f} ({r['precision_auto']})",
                 f"{r['seconds_auto'] / r['floor_auto']:.1f}×",
                 f"{r['memory_bytes'] / 2**20:.0f} MiB" if r.get("memory_bytes") else "?"]
        if large:
            cells += [f"{r['mpix_per_s_large']:.2f}", f"{r['large_per_tile']:.2f}×"]
        cells += [f"{scores[s]['psnr_y']:.2f} / {scores[s]['ssim_y']:.4f}" if s in scores else "—" for s in sets]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", "MACs are those of litesr's forward (HiT-SRF's attention by associativity: 54.9 G against the "
              "official order's 57.1 G); ÷ floor takes the official op sequence's FLOPs where litesr re-expresses it "
              "(`benchmarks/floor.py`). Where litesr's weights table records a file's scores (the same sha256), the "
              "table takes them from there; they were measured by `litesr eval` like the rest."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
