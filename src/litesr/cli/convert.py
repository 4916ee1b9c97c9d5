"""``litesr convert``: re-save a checkpoint as safetensors, or for the official code to load strictly."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  litesr convert ESRT_x3.pth esrt_x3.safetensors                      # safe format, arch/scale recorded
  litesr convert runs/swinir/best.safetensors swinir_x4.pth --official-buffers
  litesr convert PANx3_DF2K.pth pan_x3.safetensors --scale 3          # PAN x2/x3 share every shape

The checkpoint is loaded and checked as `upscale` would (strictly, architecture and scale detected), so a file
that converts is a file that works. The output format follows the suffix: .safetensors, or .pth/.pt (a torch.save
of {"params": state}, which SwinIR's and BasicSR's test scripts read). litesr leaves out buffers it computes
(relative position indices, attention masks); --official-buffers writes them as the official constructor makes
them (masks sized for --img-size, the official default 64) so that the official SwinIR/GRFormer code can load the
file with strict=True.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from ..models.registry import SCALES
    from .options import example_formatter

    p = sub.add_parser(
        "convert",
        help="re-save a checkpoint (.pth -> .safetensors, or for the official code)",
        description="Load a checkpoint with full checks and save it again under the official key names.",
        epilog=EXAMPLES,
        formatter_class=example_formatter,
    )
    p.add_argument("source", metavar="SRC", help="checkpoint to read (.safetensors, .pth, .pt), or a name from "
                   "litesr's weights table (see `litesr models`)")
    p.add_argument("target", metavar="DST", help="file to write; .pth/.pt or .safetensors")
    p.add_argument("--arch", metavar="A", help="architecture or variant; detected if omitted")
    p.add_argument("--scale", type=int, choices=SCALES, help="upscaling factor; read from the checkpoint")
    p.add_argument("--overwrite", action="store_true", help="replace DST if it exists (refused otherwise)")
    p.add_argument("--official-buffers", action="store_true",
                   help="also write the computed buffers the official SwinIR/GRFormer state dicts hold")
    p.add_argument("--img-size", type=int, default=64, metavar="N",
                   help="the official constructor's img_size, which sizes its attention masks (default 64)")
    p.add_argument("--pth-key", default="params", metavar="KEY",
                   help="key holding the state dict in a .pth output (default params; 'none' for a bare dict)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..checkpoint import article, load_model, model_label, official_state_dict, save_model
    from ..io import check_writable
    from .options import UsageError, refuse_existing

    from ..pretrained import weights_path

    source, target = Path(args.source), Path(args.target)
    if not source.is_file():
        source = weights_path(args.source, args.scale)[0]  # a name from litesr's weights table, else an error
    if target.suffix.lower() not in (".safetensors", ".pth", ".pt"):
        raise UsageError(f"cannot tell the format of {target}: name it .safetensors, .pth or .pt")
    if source.resolve() == target.resolve():
        raise UsageError(f"{target} is the source checkpoint itself; write the converted file to another name")
    refuse_existing(target, args.overwrite)
    check_writable(target)
    model = load_model(source, arch=args.arch, scale=args.scale)
    pth_key = None if args.pth_key.lower() == "none" else args.pth_key
    label = model_label(model)
    n_keys = len(model.state_dict())
    added = len(official_state_dict(model, args.img_size)) - n_keys if args.official_buffers else 0
    save_model(model, target, official_buffers=args.official_buffers, img_size=args.img_size, pth_key=pth_key)
    note = ""
    if args.official_buffers:
        note = (f" plus {added} official computed buffers" if added else
                f" (--official-buffers: {article(label)} {label} state dict has no computed buffers; none added)")
    print(f"{source} -> {target}: {label} x{model.scale}, {n_keys} tensors{note}")
    return 0
