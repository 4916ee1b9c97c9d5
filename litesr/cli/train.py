"""``litesr train``: train a model from a YAML recipe plus flag overrides; works alone or under torchrun."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  litesr train --config elan-light_x4 --train-data DIV2K/DIV2K_train_HR --val-data benchmarks --out runs/a
  litesr train --arch elan-light --scale 4 --train-data T91 BSD200 --iters 20000 --batch-size 16 \\
               --patch-size 128 --lr 5e-4 --out runs/small
  litesr train --out runs/small --resume                      # continue a stopped run (any moment, even kill -9)
  torchrun --standalone --nproc-per-node 4 -m litesr train --config elan-light_x4 --train-data DIV2K_HR

Packaged recipes (--config NAME): {configs}. Flags override the config's values; --batch-size is the global
batch (split over torchrun processes). The run folder holds state.pt (resume), last.safetensors,
best.safetensors (best validation PSNR), metrics.jsonl and config.yaml.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from . import example_formatter
    from ..train import packaged_configs

    p = sub.add_parser(
        "train",
        help="train a model (paper recipes, resume, torchrun/DDP)",
        description="Train a super-resolution model with L1 loss and Adam on HR image folders (LR made with "
        "MATLAB-compatible bicubic) or paired HR/LR folders, validating on benchmark sets.",
        epilog=EXAMPLES.format(configs=", ".join(packaged_configs())),
        formatter_class=example_formatter,
    )
    p.add_argument("--config", metavar="YAML", help="recipe file, or the name of a packaged recipe")
    p.add_argument("--arch", help="model variant to train (see `litesr models`)")
    p.add_argument("--scale", type=int, choices=(2, 3, 4))
    p.add_argument("--train-data", nargs="+", metavar="DIR", help="HR image folder(s)")
    p.add_argument("--train-lr-data", metavar="DIR", help="LR folder paired with a single HR folder")
    p.add_argument("--cache-dir", metavar="DIR", help="keep decoded images and bicubic LR here as memory-mapped "
                                                      ".npy files: restarts skip decoding, data need not fit in RAM")
    p.add_argument("--val-data", metavar="DIR", help="benchmark root (EDSR layout: <Set>/HR, <Set>/LR_bicubic/X<s>)")
    p.add_argument("--val-sets", metavar="A,B", help="validation sets (default Set5); the first picks 'best'")
    p.add_argument("--iters", type=int, help="total iterations")
    p.add_argument("--batch-size", type=int, help="global batch size")
    p.add_argument("--patch-size", type=int, help="HR patch side (a multiple of the scale)")
    p.add_argument("--lr", type=float, help="base learning rate")
    p.add_argument("--schedule", choices=("multistep", "cosine"))
    p.add_argument("--warmup-iters", type=int)
    p.add_argument("--grad-clip", type=float, metavar="NORM", help="clip the global gradient norm to NORM "
                                                                    "(steadies a run that diverged)")
    p.add_argument("--ema-decay", type=float, help="EMA decay of the weights (e.g. 0.999)")
    p.add_argument("--amp", choices=("off", "bf16", "auto"), help="bf16 autocast (auto: where the device is fast)")
    p.add_argument("--workers", type=int, help="data loader worker processes")
    p.add_argument("--seed", type=int)
    p.add_argument("--log-every", type=int, metavar="N", help="log loss/lr/speed every N iterations")
    p.add_argument("--val-every", type=int, metavar="N", help="validate every N iterations")
    p.add_argument("--ckpt-every", type=int, metavar="N", help="checkpoint every N iterations")
    p.add_argument("--ckpt-minutes", type=float, metavar="M", help="... or every M minutes")
    p.add_argument("--init-weights", metavar="PATH", help="start from these weights (matching keys/shapes)")
    p.add_argument("--out", metavar="DIR", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--device", help="cpu, cuda or auto")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


OVERRIDES = ("arch", "scale", "train_data", "train_lr_data", "cache_dir", "val_data", "val_sets", "iters", "batch_size",
             "patch_size", "lr", "schedule", "warmup_iters", "grad_clip", "ema_decay", "amp", "workers", "seed", "log_every", "val_every",
             "ckpt_every", "ckpt_minutes", "init_weights", "out", "device")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..io import check_writable
    from ..train import TrainConfig, train

    overrides = {k: getattr(args, k) for k in OVERRIDES}
    config_file = args.config
    if args.resume and not config_file and args.out and (Path(args.out) / "config.yaml").is_file():
        config_file = str(Path(args.out) / "config.yaml")  # a bare --resume continues with the run's own config
    config = TrainConfig.from_sources(config_file, **overrides)
    check_writable(config.out, folder=True)  # now, not at the first checkpoint minutes later
    out = train(config, resume=args.resume, progress=not args.quiet)
    print(f"run folder: {out}")
    return 0
