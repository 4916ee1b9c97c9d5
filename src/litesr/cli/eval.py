"""``litesr eval``: PSNR/SSIM of a model on the standard benchmarks, as the papers' tables compute them."""

from __future__ import annotations

import argparse
import json

EXAMPLES = """examples:
  litesr eval --data ../shared/data/benchmarks --weights IMDN_x4.pth
  litesr eval --data benchmarks --sets Set5,Set14 --weights PANx3_DF2K.pth --scale 3 --bicubic --json pan_x3.json
  litesr eval --data benchmarks --bicubic --scale 2 --gray raw        # the classic MATLAB-era Bicubic row

Data layout (EDSR): DIR/<Set>/HR/<name>.png and DIR/<Set>/LR_bicubic/X<s>/<name>x<s>.png. A set without an
LR_bicubic/X<s> folder gets its LR images made by MATLAB-compatible bicubic. Scores: Y channel (BT.601 studio
swing, not rounded), crop = scale, MATLAB SSIM; see docs/evaluation.md.
"""

#: Order of the usual table columns; other sets found under --data follow alphabetically.
STANDARD_SETS = ("Set5", "Set14", "B100", "BSD100", "Urban100", "Manga109")


def register(sub: argparse._SubParsersAction) -> None:
    from .options import (add_device_argument, add_json_argument, add_model_arguments, add_precision_argument,
                          add_runtime_argument, example_formatter)

    p = sub.add_parser(
        "eval",
        help="PSNR/SSIM on Set5, Set14, B100, ... (the papers' protocol)",
        description="Evaluate a model on benchmark sets with the standard SR protocol: whole LR image in, output "
        "rounded to uint8, PSNR and SSIM on the Y channel with a border of `scale` pixels cropped. Prints a "
        "paper-style table.",
        epilog=EXAMPLES,
        formatter_class=example_formatter,
    )
    p.add_argument("--data", required=True, metavar="DIR", help="benchmark folder holding one folder per set")
    p.add_argument("--sets", metavar="A,B", help="comma-separated sets (default: every set found under --data)")
    add_model_arguments(p, "checkpoint: .safetensors, .pth/.pt (read safely, weights_only) or an exported .onnx",
                        arch_example="imdn, pan", scale_note="needed for bicubic-only runs")
    add_json_argument(p, "the results")
    p.add_argument("--save-images", metavar="DIR", help="write the SR images to DIR/<set>/<name>.png")
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the outputs for the 8 flips/rotations of each input (x8 slower, the '+' rows)")
    p.add_argument("--bicubic", action="store_true",
                   help="add the Bicubic baseline row; alone (no --weights/--arch) it evaluates bicubic only")
    p.add_argument("--gray", choices=("rgb", "raw"), default="rgb",
                   help="grayscale HR images (Set14 bridge): 'rgb' scores them on Y like colour images, as the "
                   "model tables do (default); 'raw' scores raw intensities, as the MATLAB-era bicubic tables do")
    add_device_argument(p)
    add_precision_argument(p, "the protocol and published numbers are fp32; bf16/fp16 measure what the faster "
                              "precision costs")
    add_runtime_argument(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..data.testsets import available_sets
    from ..evaluate import evaluate, evaluate_bicubic
    from ..device import pick_device
    from ..errors import NotFoundError
    from ..io import check_writable
    from ..progress import progress_mode

    sets = _set_names(args.sets) if args.sets else _default_sets(available_sets(args.data))
    if not sets:
        raise NotFoundError(f"no benchmark sets (folders with an HR/ folder) in {args.data}")
    device = pick_device(args.device)
    for path, folder in ((args.json, False), (args.save_images, True)):
        if path:
            check_writable(path, folder=folder)  # before the minutes of computing, not after
    runner = resolve_eval_runner(args, device)
    scale = runner.scale if runner is not None else args.scale
    progress = progress_mode()
    rows, results, bicubic = [], None, None
    if runner is not None:
        results = evaluate(runner, args.data, sets, scale, gray=args.gray, self_ensemble=args.self_ensemble,
                           device=device, progress=progress, save_images=args.save_images,
                           precision=args.precision)
        runtime = f" ({runner.runtime})" if runner.runtime else ""
        rows.append((runner.label + runtime + ("+" if args.self_ensemble else ""), results))
    if args.bicubic:
        bicubic = evaluate_bicubic(args.data, sets, scale, gray=args.gray, progress=progress)
        rows.append(("Bicubic", bicubic))
    print(format_table(rows, scale, args.gray))
    if args.json:
        _write_json(args, runner, scale, results, bicubic)
    return 0


def resolve_eval_runner(args: argparse.Namespace, device):
    """What evaluates (a ``litesr.runner.Runner`` of --weights/--arch/--scale, or of a shipped model, in --runtime
    and --precision), or None for a bicubic-only run."""
    from ..pretrained import resolve_model
    from .options import UsageError

    if args.bicubic and not args.weights and not args.arch:
        if args.scale is None:
            raise UsageError("a bicubic-only evaluation needs --scale (2, 3 or 4)")
        return None
    from ..pretrained import apply_runtime
    from ..runner import as_runner

    model = apply_runtime(resolve_model(args.weights, args.arch, args.scale, device), args.runtime, device,
                          args.precision)
    return as_runner(model, device, args.precision)


def format_table(rows: list[tuple[str, dict]], scale: int, gray: str) -> str:
    """PSNR / SSIM per set, one row per method, like the papers' tables."""
    from .options import columns

    sets = list(rows[0][1])
    cells = [[f"{r[s]['psnr_y']:.2f} / {r[s]['ssim_y']:.4f}" for s in sets] for _, r in rows]
    headers = [f"{s}{'*' if rows[0][1][s]['lr_generated'] else ''} ({rows[0][1][s]['images']})" for s in sets]
    lines = [f"x{scale}  PSNR (dB) / SSIM on Y, crop {scale}, grayscale HR scored as {gray}"]
    lines += columns([["Method", *headers]] + [[name, *row] for (name, _), row in zip(rows, cells)])
    if any(rows[0][1][s]["lr_generated"] for s in sets):
        lines.append(f"* no LR_bicubic/X{scale} folder: LR images made here by MATLAB-compatible bicubic")
    return "\n".join(line.rstrip() for line in lines)


def _set_names(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def _default_sets(found: list[str]) -> list[str]:
    return [s for s in STANDARD_SETS if s in found] + [s for s in found if s not in STANDARD_SETS]


def _summary(results: dict) -> dict:
    return {name: {k: r[k] for k in ("psnr_y", "ssim_y", "images")} for name, r in results.items()}


def _write_json(args: argparse.Namespace, runner, scale: int, results: dict | None, bicubic: dict | None) -> None:
    from ..io import atomic_path

    doc = {
        "arch": runner.label if runner is not None else "bicubic",  # the variant: elan-light, not elan
        "family": runner.arch if runner is not None else "bicubic",
        "scale": int(scale),
        "gray": args.gray,
        "self_ensemble": bool(args.self_ensemble),
        "precision": args.precision,
        "runtime": args.runtime,
        "results": _summary(results if results is not None else bicubic),
    }
    if results is not None and bicubic is not None:
        doc["bicubic"] = _summary(bicubic)
    with atomic_path(args.json) as tmp:
        tmp.write_text(json.dumps(doc, indent=2) + "\n")
