"""The ``litesr`` command. One module per subcommand; each exposes ``register(subparsers)``.

Errors a user can fix (missing file, unreadable image, wrong checkpoint, bad option) print one line to stderr and
exit with status 2; they never leave a half-written output behind (outputs are written atomically).
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..io import ImageReadError
from ..models.registry import CheckpointError
from . import bench as bench_cmd
from . import convert as convert_cmd
from . import eval as eval_cmd
from . import export as export_cmd
from . import models as models_cmd
from . import train as train_cmd
from . import upscale as upscale_cmd


class UsageError(ValueError):
    """A problem with the command line or its inputs, explained in one line."""


#: Errors reported as one clear line (exit 2) instead of a traceback.
USER_ERRORS = (UsageError, CheckpointError, ImageReadError, FileNotFoundError, KeyError, ValueError,
               FloatingPointError)  # the last: a training run that diverged

COMMANDS = [upscale_cmd, eval_cmd, train_cmd, bench_cmd, convert_cmd, export_cmd, models_cmd]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="litesr",
        description="Efficient transformer super-resolution: upscale images, evaluate, train and benchmark models "
        "(ELAN, ESRT, GRFormer, SwinIR-light, IMDN, PAN) faithful to the official code.",
        epilog="Run `litesr COMMAND --help` for the options and an example of each command.",
    )
    parser.add_argument("--version", action="version", version=f"litesr {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for command in COMMANDS:
        command.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    if args.command in ("upscale", "eval"):
        from ..inference import reuse_freed_memory

        reuse_freed_memory()  # 1.2-1.35x faster forwards: freed tensors are reused, not page-faulted in again
    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        print(f"litesr {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("litesr: interrupted", file=sys.stderr)
        return 130


def example_formatter(prog: str) -> argparse.HelpFormatter:
    """Keeps the examples in an epilog laid out as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_precision_argument(parser: argparse.ArgumentParser, note: str = "", default: str = "fp32") -> None:
    from ..inference import PRECISION_CHOICES

    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, default=default,
        help=f"compute precision (default {default}). fp32 is identical to the official code; bf16 runs the model "
        "under autocast (ELAN-light: 1.4-1.5x faster on an AVX-512 BF16 CPU, < 0.01 dB PSNR change on Set5/Set14); "
        "auto picks bf16 where the hardware runs it natively and it was measured faster for the architecture, "
        "else fp32, never fp16 (fp16 is for GPUs, and breaks Swin-type models)" + (f"; {note}" if note else ""))
