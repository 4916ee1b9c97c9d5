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


#: Element type of each annotation a config field can have on the command line.
_ARG_TYPES = {"int": int, "float": float, "str": str, "str | None": str, "float | None": float, "int | None": int,
              "list[str]": str,
              "list[int]": int, "list[float]": float, "tuple[float, float]": float}


def register(sub: argparse._SubParsersAction) -> None:
    import dataclasses

    from .options import example_formatter
    from ..train_config import TrainConfig, packaged_configs

    p = sub.add_parser(
        "train",
        help="train a model (paper recipes, resume, torchrun/DDP)",
        description="Train a super-resolution model with L1 (or L2) loss and Adam on HR image folders (LR made with "
        "MATLAB-compatible bicubic) or paired HR/LR folders, validating on benchmark sets. Every flag below "
        "--config sets the recipe key of the same name (--batch-size: batch_size) and overrides the recipe's "
        "value, on --resume too.",
        epilog=EXAMPLES.format(configs=", ".join(packaged_configs())),
        formatter_class=example_formatter,
    )
    p.add_argument("--config", metavar="YAML", help="recipe file, or the name of a packaged recipe")
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        if not meta.pop("cli", True):
            continue
        meta.setdefault("type", _ARG_TYPES[f.type])
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        if default not in (None, [], {}) and "default" not in meta["help"]:
            shown = " ".join(map(str, default)) if isinstance(default, (list, tuple)) else default
            meta["help"] += f" (default {shown})"
        p.add_argument("--" + f.name.replace("_", "-"), **meta)  # default None: the recipe's value stands
    p.add_argument("--resume", action="store_true", help="continue the run in --out from its last checkpoint")
    p.add_argument("--quiet", action="store_true", help="no progress bar or progress lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import dataclasses
    from pathlib import Path

    from ..errors import NotFoundError
    from ..io import check_writable
    from ..train import run_training
    from ..train_config import TrainConfig

    overrides = {f.name: getattr(args, f.name, None) for f in dataclasses.fields(TrainConfig)}
    if args.resume and (args.out or not args.config):  # say so before the recipe is read and checked
        out = Path(args.out or f"runs/{args.arch or TrainConfig.arch}_x{args.scale or TrainConfig.scale}")
        if not (out / "state.pt").is_file():
            raise NotFoundError(f"--resume: there is no run to resume in {out} (no state.pt there); start a run "
                                "without --resume, or give the --out of an existing run")
    config_file = args.config
    if args.resume and not config_file and args.out and (Path(args.out) / "config.yaml").is_file():
        config_file = str(Path(args.out) / "config.yaml")  # a bare --resume continues with the run's own config
    config = TrainConfig.from_sources(config_file, **overrides)
    check_writable(config.out, folder=True)  # now, not at the first checkpoint minutes later
    trainer = run_training(config, resume=args.resume, progress=not args.quiet)
    print(f"run folder: {trainer.out}")
    return 128 + trainer.stopped_by if trainer.stopped_by else 0  # stopped by a signal: checkpointed, not done
