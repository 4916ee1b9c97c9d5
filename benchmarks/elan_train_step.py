"""ELAN-light training step: litesr's shift vs the official depthwise-conv shift (and plain autograd slicing).

Every LFE of ELAN shifts channel groups by one pixel before a 1×1 conv. The official code does it with a depthwise
3×3 conv of a fixed one-hot kernel; litesr moves slices and gives autograd the opposite shift as the gradient.
This times one full training step (forward, L1 loss, backward, Adam) of the same model on the same batch with
each shift, in one process, interleaved, and checks that all three give the same gradients.

    python benchmarks/elan_train_step.py --steps 5 --batch 8 --lr-patch 32
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import litesr
from litesr.models import elan


def official_shift(x: torch.Tensor) -> torch.Tensor:
    """``ShiftConv2d1`` of the official code: depthwise conv with the fixed one-hot kernel."""
    kernel = elan.one_hot_shift_kernel(x.shape[1]).to(x)
    return F.conv2d(x, kernel, padding=1, groups=x.shape[1])


def autograd_slicing_shift(x: torch.Tensor) -> torch.Tensor:
    """The same slices as litesr's forward, differentiated by autograd through the assignments."""
    return elan._shift_groups(x, elan._FORWARD_MOVES)


SHIFTS = {"official": official_shift, "autograd": autograd_slicing_shift, "litesr": elan.shift_channel_groups}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=5, help="timed steps per variant (median reported)")
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr-patch", type=int, default=32)
    ap.add_argument("--scale", type=int, default=4)
    ap.add_argument("--threads", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast, as litesr train uses on AVX-512 BF16 CPUs")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    model = litesr.create_model("elan-light", args.scale).train()
    x = torch.rand(args.batch, 3, args.lr_patch, args.lr_patch)
    y = torch.rand(args.batch, 3, args.lr_patch * args.scale, args.lr_patch * args.scale)
    optimizer = torch.optim.Adam(model.parameters(), lr=0.0)  # lr 0: every variant sees the same weights

    def step(name: str) -> list[torch.Tensor]:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16):
            out = model(x)
        loss = F.l1_loss(out.float(), y)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return [p.grad.clone() for p in model.parameters() if p.grad is not None]

    original = elan.shift_channel_groups
    try:
        grads = {}
        for name in SHIFTS:
            elan.shift_channel_groups = SHIFTS[name]
            grads[name] = step(name)  # warm-up, and the gradients to compare
        worst = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                    for name in ("official", "autograd") for a, b in zip(grads["litesr"], grads[name]))
        times = {name: [] for name in SHIFTS}
        for _ in range(args.steps):
            for name in SHIFTS:  # interleaved, so machine load drifts hit every variant alike
                elan.shift_channel_groups = SHIFTS[name]
                start = time.perf_counter()
                step(name)
                times[name].append(time.perf_counter() - start)
    finally:
        elan.shift_channel_groups = original
    print(f"ELAN-light x{args.scale}, batch {args.batch}×{args.lr_patch}², {torch.get_num_threads()} threads, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}; gradients agree to {worst:.1e} (relative max)")
    base = statistics.median(times["litesr"])
    for name in SHIFTS:
        t = statistics.median(times[name])
        print(f"{name:>9}: {t:.3f} s/step   ({t / base:.2f}× litesr's time)")


if __name__ == "__main__":
    main()
