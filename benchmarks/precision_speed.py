"""fp32 vs bf16 (and fp16 on CUDA) inference: speed ratio and how far the outputs move, same model, same run.

The model is the shipped default (ELAN-light x4) unless ``--arch`` picks a registered variant (random weights).
For each size the script times every precision on the same LR crop of a benchmark image (median of ``--runs``,
after a warm-up) and compares its uint8 output with the fp32 one (PSNR in dB over RGB; 255-level rounding, as
``litesr upscale`` writes it). bf16 pays off only where the hardware has it: AVX-512 BF16 / AMX CPUs, and GPUs.

    python benchmarks/precision_speed.py --sizes 64 128 --runs 3
    python benchmarks/precision_speed.py --arch swinir-light --device cuda --sizes 256
"""

from __future__ import annotations

import argparse
import math
import statistics
import time
from pathlib import Path

import torch

import litesr
from litesr.device import pick_device, precision_context
from litesr.io import image_to_tensor, read_image, tensor_to_image
from litesr.pretrained import resolve_model

DEFAULT_IMAGE = Path(__file__).resolve().parents[1] / "examples" / "sample.png"


def timed(fn, runs: int, device: torch.device) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        if device.type == "cuda":
            torch.cuda.synchronize()
        t = time.perf_counter()
        fn()
        if device.type == "cuda":
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def agreement_db(a, b) -> float:
    mse = float(((torch.from_numpy(a).double() - torch.from_numpy(b).double()) ** 2).mean())
    return math.inf if mse == 0 else 10 * math.log10(255.0 ** 2 / mse)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--arch", help="registered variant with random weights (default: the shipped ELAN-light x4)")
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--image", type=Path, default=DEFAULT_IMAGE, help="LR image to crop the inputs from")
    ap.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="square LR crop sizes")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: leave torch's default)")
    args = ap.parse_args()

    if args.threads:
        torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if args.arch:
        torch.manual_seed(0)
        model = litesr.create_model(args.arch, scale=args.scale).to(device).eval()
        name = f"{args.arch} x{args.scale} (random weights)"
    else:
        model = resolve_model(None, None, None, device).eval()
        name = f"shipped {model.arch_name} x{model.scale}"
    precisions = ["fp32", "bf16"] + (["fp16"] if device.type == "cuda" else [])
    image = image_to_tensor(read_image(args.image))
    print(f"{name} on {device}, {torch.get_num_threads()} CPU threads, median of {args.runs}")
    print(f"{'LR size':>8}  {'precision':>9}  {'seconds':>8}  {'speed-up':>8}  {'vs fp32 (dB)':>12}")
    for size in args.sizes:
        x = image[..., :size, :size]
        if x.shape[-1] < size or x.shape[-2] < size:
            x = x.repeat(1, 1, -(-size // x.shape[-2]), -(-size // x.shape[-1]))[..., :size, :size]
        x = x.to(device)
        outputs, seconds = {}, {}
        for p in precisions:
            def run(p=p):
                with torch.inference_mode(), precision_context(device, p):
                    return model(x).float()

            seconds[p] = timed(run, args.runs, device)
            outputs[p] = tensor_to_image(run())
        for p in precisions:
            db = agreement_db(outputs[p], outputs["fp32"])
            print(f"{size:>8}  {p:>9}  {seconds[p]:>8.3f}  {seconds['fp32'] / seconds[p]:>7.2f}x  "
                  f"{'identical' if math.isinf(db) else f'{db:.1f}':>12}")


if __name__ == "__main__":
    main()
