"""``litesr export``: a model to ONNX with dynamic height and width, checked against PyTorch before it is written."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  litesr export -o elan-light_x4.onnx                               # the shipped ELAN-light x4
  litesr export --weights IMDN_x2.pth -o imdn_x2.onnx
  litesr export --weights swinir.pth --arch swinir --scale 4 -o swinir_x4.onnx --opset 18
  litesr upscale photo.png -o photo_x4.png --weights elan-light_x4.onnx   # run it with onnxruntime

Needs the optional extra: pip install "litesr[onnx]". The graph takes any LR size (padding, window orders and
masks are computed inside it); onnxruntime runs it at two sizes, one not a multiple of the windows, and the export
fails unless it matches PyTorch within 1e-4 (relative).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from .options import add_model_arguments, example_formatter
    from ..onnx import DEFAULT_OPSET

    p = sub.add_parser(
        "export", help="export a model to ONNX (dynamic size), checked with onnxruntime",
        description="Export a litesr model to ONNX with dynamic batch, height and width, check it numerically "
        "with onnxruntime, and write it atomically.",
        epilog=EXAMPLES, formatter_class=example_formatter,
    )
    add_model_arguments(p, "checkpoint: .safetensors or .pth/.pt")
    p.add_argument("-o", "--output", required=True, metavar="OUT.onnx", help="ONNX file to write")
    p.add_argument("--overwrite", action="store_true", help="replace OUT.onnx if it exists (refused otherwise)")
    p.add_argument("--opset", type=int, default=DEFAULT_OPSET, metavar="N",
                   help=f"ONNX opset (default {DEFAULT_OPSET}; ESRT's fold needs >= 18)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io import check_writable
    from ..onnx import check_export, export_onnx
    from ..pretrained import resolve_model
    from .options import UsageError, refuse_existing

    out = Path(args.output)
    if out.suffix.lower() != ".onnx":
        raise UsageError(f"-o {out}: the output must be a .onnx file")
    if args.weights and args.weights.lower().endswith(".onnx"):
        raise UsageError(f"--weights {args.weights} is already ONNX")
    refuse_existing(out, args.overwrite)
    check_writable(out)  # now, not after the export
    model = resolve_model(args.weights, args.arch, args.scale, "cpu")
    export_onnx(model, out, opset=args.opset)
    errors = check_export(model, out)
    print(f"{out}: {model.arch_name} x{model.scale}, opset {args.opset}, dynamic size; onnxruntime vs PyTorch "
          f"max relative error {max(errors):.1e} at LR 48x64 and 37x53")
    return 0
