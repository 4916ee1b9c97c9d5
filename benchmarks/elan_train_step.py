"""ELAN-light training step: the official depthwise-conv shift (what litesr runs) vs moving slices.

Every LFE of ELAN shifts channel groups by one pixel before a 1×1 conv. The official code does it with a depthwise
3×3 conv of a fixed one-hot kernel, and so does litesr, in training too; until 2026-11-30 litesr's training moved
slices instead, with a hand-written opposite-shift gradient, which a bf16 step on one thread ran ~4 % slower (by
alternating-order A/B). This times one full training step (forward, L1 loss, backward, Adam) of the same model on
the same batch with each shift, in one process, interleaved, and checks that both give the same gradients.

    python benchmarks/elan_train_step.py --steps 5 --batch 8 --lr-patch 32 --bf16
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
import torch.nn.functional as F

import litesr
from litesr.models import elan

#: (channel group, move in pixels along H and W): groups 0..3 of C//5 channels move left, right, up, down.
MOVES = ((0, -1), (0, 1), (-1, 0), (1, 0))


def slicing_shift(self, x: torch.Tensor) -> torch.Tensor:
    """The same shift as slices, zero-padded on the side the group moves away from, differentiated by autograd."""
    g = x.shape[1] // 5
    h, w = x.shape[-2:]
    parts = []
    for i, (dy, dx) in enumerate(MOVES):
        src = x[:, i * g:(i + 1) * g, max(-dy, 0):h + min(-dy, 0), max(-dx, 0):w + min(-dx, 0)]
        parts.append(F.pad(src, (max(dx, 0), max(-dx, 0), max(dy, 0), max(-dy, 0))))
    return torch.cat(parts + [x[:, 4 * g:]], dim=1)


SHIFTS = {"litesr": elan._ShiftThen1x1.shift, "slices": slicing_shift}


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

    original = elan._ShiftThen1x1.shift
    try:
        grads = {}
        for name in SHIFTS:
            elan._ShiftThen1x1.shift = SHIFTS[name]
            grads[name] = step(name)  # warm-up, and the gradients to compare
        worst = max(((a - b).abs().max() / b.abs().max().clamp_min(1e-30)).item()
                    for a, b in zip(grads["litesr"], grads["slices"]))
        times = {name: [] for name in SHIFTS}
        order = list(SHIFTS)
        for i in range(args.steps):
            for name in order if i % 2 else order[::-1]:  # alternating order: load drifts hit both alike
                elan._ShiftThen1x1.shift = SHIFTS[name]
                start = time.perf_counter()
                step(name)
                times[name].append(time.perf_counter() - start)
    finally:
        elan._ShiftThen1x1.shift = original
    print(f"ELAN-light x{args.scale}, batch {args.batch}×{args.lr_patch}², {torch.get_num_threads()} threads, "
          f"{'bf16 autocast' if args.bf16 else 'fp32'}; gradients agree to {worst:.1e} (relative max)")
    base = statistics.median(times["litesr"])
    for name in SHIFTS:
        t = statistics.median(times[name])
        print(f"{name:>9}: {t:.3f} s/step   ({t / base:.2f}× litesr's time)")


if __name__ == "__main__":
    main()
