"""``litesr upscale``: super-resolve images of any size, tile by tile, writing each output atomically."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

EXAMPLES = """examples:
  litesr upscale photo.png -o photo_x4.png                      # shipped ELAN-light x4
  litesr upscale photos/ -o out/ --arch elan-light --scale 2    # shipped ELAN-light x2
  litesr upscale a.jpg b.webp -o out/ --weights IMDN_x2.pth --scale 2
  litesr upscale scans/ -o out/ --weights w.safetensors --tile 128 --tile-overlap 16 --device cuda
  litesr upscale big.png -o big_x4.png --precision bf16         # faster where bf16 is native (AVX-512 BF16, GPUs)

The architecture and scale are read from the checkpoint; --arch/--scale only check it (or pick a shipped model).
Outputs: with one input, -o may be a file name; otherwise -o is a folder and each output is <name>_x<scale>.<ext>.
Images are read upright (EXIF orientation); grayscale stays grayscale; transparency is kept (upscaled bicubically)
where the output format can store it (PNG, WebP, TIFF).
"""


def register(sub: argparse._SubParsersAction) -> None:
    from . import add_precision_argument, example_formatter
    from ..inference import DEFAULT_OVERLAP, DEFAULT_PRECISION, DEFAULT_TILE

    p = sub.add_parser(
        "upscale",
        help="super-resolve images (PNG/JPEG/WebP), any size, in bounded memory",
        description="Super-resolve images with a litesr model. Large images are processed in overlapping tiles, "
        "so memory stays bounded whatever the image size; each tile keeps only its centre, so there are no seams.",
        epilog=EXAMPLES,
        formatter_class=example_formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output file (single input) or folder (created if missing)")
    p.add_argument("--weights", metavar="PATH",
                   help="checkpoint: .safetensors, or .pth/.pt read safely (weights_only); official key names")
    p.add_argument("--arch", metavar="A", help="architecture or variant (e.g. elan-light); detected if omitted")
    p.add_argument("--scale", type=int, choices=(2, 3, 4), help="upscaling factor; read from the checkpoint")
    p.add_argument("--tile", type=int, default=DEFAULT_TILE, metavar="N",
                   help=f"LR tile size in pixels (default {DEFAULT_TILE}; 0 = whole image at once)")
    p.add_argument("--tile-overlap", type=int, default=DEFAULT_OVERLAP, metavar="M",
                   help=f"LR context pixels around each tile (default {DEFAULT_OVERLAP})")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:1, mps or auto (default: auto)")
    add_precision_argument(p, default=DEFAULT_PRECISION)
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the outputs of the 8 flips/transpositions: 8x the time for a small gain "
                        "(+0.20 dB on Set5 with the shipped x4)")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=run)


def collect_inputs(items: list[str]) -> list[Path]:
    """Expand folders to the images inside them; every named path must exist."""
    from ..io import IMAGE_SUFFIXES, image_files

    paths: list[Path] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            found = image_files(path)
            if not found:
                raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in folder {path}")
            paths.extend(found)
        elif path.exists():
            paths.append(path)
        else:
            raise FileNotFoundError(f"input not found: {path}")
    return paths


def output_paths(inputs: list[Path], output: str, scale: int) -> list[Path]:
    from ..io import IMAGE_SUFFIXES

    out = Path(output)
    if len(inputs) == 1 and out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        return [out]
    if out.suffix.lower() in IMAGE_SUFFIXES and not out.is_dir():
        raise ValueError(f"{len(inputs)} inputs but -o {out} names one file; give a folder")
    return [out / f"{p.stem}_x{scale}{p.suffix.lower()}" for p in inputs]


def run(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ..inference import pick_device, upscale_alpha, upscale_array
    from ..io import keeps_alpha, read_picture, write_image
    from ..pretrained import resolve_model

    inputs = collect_inputs(args.inputs)
    device = pick_device(args.device)
    model = resolve_model(args.weights, args.arch, args.scale, device)
    targets = output_paths(inputs, args.output, model.scale)
    show = not args.quiet and sys.stderr.isatty()
    for src, dst in tqdm(list(zip(inputs, targets)), desc="images", unit="img", disable=not show or len(inputs) < 2):
        picture = read_picture(src)
        sr = upscale_array(model, picture.rgb, tile=args.tile or None, overlap=args.tile_overlap, device=device,
                           progress=show, description=src.name, precision=args.precision,
                           self_ensemble=args.self_ensemble)
        alpha = None
        if picture.alpha is not None:
            if keeps_alpha(dst):
                alpha = upscale_alpha(picture.alpha, model.scale)
            else:
                print(f"litesr upscale: note: {dst.suffix} cannot store transparency; {src.name}'s alpha channel "
                      "was dropped (write .png or .webp to keep it)", file=sys.stderr)
        write_image(sr, dst, alpha=alpha, grayscale=picture.grayscale)
        if not args.quiet:
            h, w = picture.rgb.shape[:2]
            print(f"{src} -> {dst} ({w}x{h} -> {sr.shape[1]}x{sr.shape[0]})")
    return 0
