"""Peak resident memory of `litesr upscale` on a 2048×2048 image at ×4 (an 8192×8192 output, 192 MiB as uint8).

    python benchmarks/upscale_memory.py                         # a fresh PAN x4 (fast; the pipeline's memory)
    python benchmarks/upscale_memory.py --model imdn            # a fresh IMDN x4 (any variant name)
    python benchmarks/upscale_memory.py --model shipped         # the shipped ELAN-light x4 (minutes on a CPU)
    python benchmarks/upscale_memory.py --size 1024 --ext jpg   # a format Pillow encodes from the whole image
    python benchmarks/upscale_memory.py --size 4000x3000        # a 12-megapixel photo, x4
    python benchmarks/upscale_memory.py --tile 256              # another tile than `litesr upscale` takes

The command runs in a fresh process; its peak resident set (``ru_maxrss`` of the child) is reported next to the
resident set of a process that only imports litesr and loads the model, so the difference is what the image, the
tiles and the output cost. PNG outputs are written strip by strip (``litesr.io.write_strips``); other formats are
assembled whole for Pillow, which the ``--ext jpg`` run shows.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MIB = 1 << 20


def child_peak(command: list[str]) -> tuple[int, float]:
    """(peak resident bytes, seconds) of one command in a fresh process (Linux: ru_maxrss is in KiB)."""
    start = time.perf_counter()
    script = ("import resource, subprocess, sys; r = subprocess.run(sys.argv[1:]); "
              "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss, r.returncode)")
    out = subprocess.run([sys.executable, "-c", script, *command], capture_output=True, text=True, check=True)
    kib, rc = out.stdout.split()[-2:]
    if rc != "0":
        raise SystemExit(f"the command failed ({rc}): {' '.join(command)}\n{out.stderr}")
    return int(kib) * 1024, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pan", help="a variant with random x4 weights (pan, imdn, span, ...), or "
                                                         "'shipped' (the default model; default: pan)")
    parser.add_argument("--size", default="2048", help="LR side, or WxH (e.g. 4000x3000); default 2048")
    parser.add_argument("--ext", default="png", choices=("png", "jpg", "webp", "tif"))
    parser.add_argument("--tile", type=int, help="LR tile (default: what `litesr upscale` takes for the model)")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    width, height = (int(v) for v in (args.size.lower().split("x") * 2)[:2])

    import numpy as np
    import torch
    from PIL import Image

    import litesr

    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        y, x = np.mgrid[0:height, 0:width]
        rng = np.random.default_rng(0)
        lr = np.stack([x * 255 // width, y * 255 // height, (x ^ y) % 256], 2)
        lr = np.clip(lr + rng.integers(-8, 9, lr.shape), 0, 255).astype(np.uint8)
        src = tmp / "in.png"
        Image.fromarray(lr).save(src)
        weights: list[str] = []
        if args.model != "shipped":
            torch.manual_seed(0)
            path = tmp / f"{args.model}_x4.safetensors"
            litesr.save_model(litesr.create_model(args.model, 4), path)
            weights = ["--weights", str(path)]
        env_threads = ["env", f"OMP_NUM_THREADS={args.threads}", "OMP_WAIT_POLICY=PASSIVE"]
        base = [*env_threads, sys.executable, "-c",
                "import sys, litesr; from litesr.pretrained import resolve_model; "
                f"resolve_model({(weights[1] if weights else None)!r}, None, 4, 'cpu')"]
        baseline, _ = child_peak(base)
        out = tmp / f"out.{args.ext}"
        command = [*env_threads, sys.executable, "-m", "litesr", "upscale", str(src), "-o", str(out), *weights,
                   "--device", "cpu", "--quiet", "--max-pixels", "0",
                   *(["--tile", str(args.tile)] if args.tile is not None else [])]
        peak, seconds = child_peak(command)
        Image.MAX_IMAGE_PIXELS = None  # our own output: a 16000×12000 file is not a decompression bomb
        with Image.open(out) as img:
            size = img.size
        output_bytes = size[0] * size[1] * 3
    result = {"model": f"{args.model} x4 (random weights)" if args.model != "shipped" else "shipped elan-light x4",
              "lr": f"{width}x{height}", "output": f"{size[0]}x{size[1]}", "format": args.ext,
              "tile": args.tile or "default", "peak_rss_mib": round(peak / MIB),
              "baseline_rss_mib": round(baseline / MIB),
              "growth_mib": round((peak - baseline) / MIB), "uint8_output_mib": round(output_bytes / MIB),
              "seconds": round(seconds, 1)}
    print(json.dumps(result))
    print(f"{result['model']}: {result['lr']} -> {result['output']} {args.ext}: peak RSS {result['peak_rss_mib']} MiB "
          f"(imports + model alone: {result['baseline_rss_mib']} MiB; the uint8 output alone would be "
          f"{result['uint8_output_mib']} MiB), {seconds:.0f} s", file=sys.stderr)


if __name__ == "__main__":
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    main()
