"""How far tiled upscaling is from the whole-image pass, per model and tile context (overlap).

For every x4 model with weights (as ``benchmarks/efficient_sr.py`` picks them), one picture is upscaled whole and
tiled with each ``--overlaps`` value, at ``--tile``. Printed per overlap: PSNR (RGB, 8-bit, peak 255) of the
tiled output against the whole one over the full image, over the rows and columns within 4 LR pixels of a seam
between tiles (where tiles differ; ``tests/test_upscale.py`` holds every model above 45 dB there), and over the
interior that leaves out ``--band`` LR pixels at the image border (where some official architectures, ELAN's
among them, roll their shifted windows around the image: the whole pass mixes the left edge with the right one
there, which a tile cannot reproduce), and the time per output pixel of the tiled pass ÷ the whole pass's.

    python benchmarks/tile_seams.py --size 384x512 --tile 128 --overlaps 8 16 24 32
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", nargs="*", help="zoo names or files (default: every x4 entry with a file here)")
    parser.add_argument("--image", type=Path, default=ROOT / "examples" / "sample.png")
    parser.add_argument("--size", default="384x512", help="LR picture HxW (mirrored from --image as needed)")
    parser.add_argument("--tile", type=int, default=128)
    parser.add_argument("--overlaps", type=int, nargs="+", default=[8, 16, 32])
    parser.add_argument("--band", type=int, default=16, help="LR pixels at the image border left out of 'interior'")
    args = parser.parse_args()

    from efficient_sr import default_entries, resolve_file
    from floor import photo
    from precision_speed import agreement_db as psnr255

    from litesr import load_model, tiling
    from litesr.runner import TorchRunner

    h, w = (int(v) for v in args.size.lower().split("x"))
    image = photo(args.image, h, w)
    names = args.weights or [name for _, name in default_entries()]
    print(f"LR {h}x{w}, tile {args.tile}; PSNR dB of tiled against whole (all | seams | interior without "
          f"{args.band} px at the border), time per pixel tiled ÷ whole", flush=True)
    for name in names:
        model = load_model(str(resolve_file(name)))
        runner = TorchRunner(model, "cpu", "fp32")
        start = time.perf_counter()
        whole = tiling.upscale_array(runner, image, tiling.InferenceOptions(tile=None))
        t_whole = time.perf_counter() - start
        b = args.band * model.scale
        cells = []
        for overlap in args.overlaps:
            start = time.perf_counter()
            tiled = tiling.upscale_array(runner, image, tiling.InferenceOptions(tile=args.tile, overlap=overlap))
            seconds = time.perf_counter() - start
            used = tiling.tile_context(runner, overlap)
            seams = tiling.seam_mask(tiling.plan_for(runner, h, w, args.tile, overlap), h, w, model.scale)
            cells.append(f"ov {overlap:>2}{'*' if used != overlap else ' '}: {psnr255(tiled, whole):6.2f} | "
                         f"{psnr255(tiled[seams], whole[seams]):6.2f} | "
                         f"{psnr255(tiled[b:-b, b:-b], whole[b:-b, b:-b]):6.2f} dB {seconds / t_whole:4.2f}x")
        print(f"{name:>22}  " + "   ".join(cells), flush=True)
    print("* the architecture's own tile context is larger and was used instead")


if __name__ == "__main__":
    main()
