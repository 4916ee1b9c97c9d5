"""``litesr train``: train a model from a YAML recipe plus flag overrides; works alone or under torchrun."""

from __future__ import annotations

import argparse
import types
import typing
from typing import Any

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


#: The element types a flag can parse; bool is not one (``bool("no")`` is True): a flag of its own says yes.
_PARSED = (int, float, str)


def flag_type(hint: Any) -> type:
    """The type argparse converts each value of a config field's flag with, from the field's type hint: the type
    itself, inside ``Optional``/``X | None``, or the element of a ``list[X]``, ``tuple[X, ...]`` or ``tuple[X, X]``.
    A hint it cannot parse (bool, dict, mixed tuples) raises TypeError: a new field type fails loudly at startup
    instead of parsing its values wrongly."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        kept = [a for a in args if a is not type(None)]
        if len(kept) == 1:
            return flag_type(kept[0])
    elif origin is list and len(args) == 1:
        return flag_type(args[0])
    elif origin is tuple and args:
        elements = {a for a in args if a is not Ellipsis}
        if len(elements) == 1:
            return flag_type(elements.pop())
    elif hint in _PARSED:
        return hint
    raise TypeError(f"no command-line type for a config field of type {hint!r}; give its option a type= or cli=False")


def flag_types(config_class: type) -> dict[str, type]:
    """Each command-line field of a config dataclass → the type of its flag's values (see :func:`flag_type`)."""
    import dataclasses

    hints = typing.get_type_hints(config_class)
    return {f.name: f.metadata.get("type") or flag_type(hints[f.name])
            for f in dataclasses.fields(config_class) if f.metadata.get("cli", True)}


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
    parse = flag_types(TrainConfig)
    for f in dataclasses.fields(TrainConfig):
        meta = dict(f.metadata)
        if not meta.pop("cli", True):
            continue
        meta["type"] = parse[f.name]
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
