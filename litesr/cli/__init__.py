"""The ``litesr`` command. One module per subcommand; each exposes ``register(subparsers)``.

Errors a user can fix (missing file, unreadable image, wrong checkpoint, bad option, unwritable output) are
``litesr.errors.LitesrError``s, or ``OSError``s about a path the user named: they print one line to stderr and exit
with status 2, and never leave a half-written output behind (outputs are written atomically). Anything else is a
bug in litesr and keeps its traceback.
"""

from __future__ import annotations

import argparse
import sys

from .. import __version__
from ..errors import LitesrError, UsageError
from . import bench as bench_cmd
from . import convert as convert_cmd
from . import eval as eval_cmd
from . import models as models_cmd
from . import train as train_cmd
from . import upscale as upscale_cmd


__all__ = ["main", "build_parser", "UsageError"]

COMMANDS = [upscale_cmd, eval_cmd, train_cmd, bench_cmd, convert_cmd, models_cmd]


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
    try:
        return int(args.func(args) or 0)
    except LitesrError as exc:
        print(f"litesr {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if exc.filename is None:
            raise  # not about a path the user gave: a bug, keep the traceback
        print(f"litesr {args.command}: error: {describe_os_error(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("litesr: interrupted", file=sys.stderr)
        return 130


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError about a path: what failed and where, without Python's decoration."""
    reason = exc.strerror or str(exc)
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{where}: {reason}"


def example_formatter(prog: str) -> argparse.HelpFormatter:
    """Keeps the examples in an epilog laid out as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_precision_argument(parser: argparse.ArgumentParser, note: str = "") -> None:
    from ..inference import PRECISIONS

    parser.add_argument(
        "--precision", choices=tuple(PRECISIONS), default="fp32",
        help="compute precision (default fp32, identical to the official code); bf16 runs the model under autocast: "
        "1.7-2.3x faster for ELAN-light on an AVX-512 BF16 CPU, output within ~55 dB of fp32 "
        "(benchmarks/precision_speed.py); fp16 is for GPUs" + (f"; {note}" if note else ""))
