"""The options several commands share, declared once, and the one way the commands lay out a table.

Subcommand modules import from here (never from ``litesr.cli`` itself, which imports them all).
"""

from __future__ import annotations

import argparse

from ..errors import UsageError  # noqa: F401 (the commands' one-line error, re-exported for them)
from ..models.registry import SCALES


def example_formatter(prog: str) -> argparse.HelpFormatter:
    """Keeps the examples in an epilog laid out as written."""
    return argparse.RawDescriptionHelpFormatter(prog, max_help_position=32)


def add_model_arguments(parser: argparse.ArgumentParser, weights_help: str, arch_example: str = "elan-light",
                        scale_note: str = "") -> None:
    """``--weights/--arch/--scale``: which model a command runs (a checkpoint, named weights, or the default)."""
    parser.add_argument("--weights", metavar="PATH|NAME",
                        help=f"{weights_help}; or a name from litesr's weights table (elan-light-x4-291, "
                        "swinir-light-x2-official, ...: see `litesr models`; fetched and checked on first use); "
                        "default: the default weights of --arch/--scale (ELAN-light x4 when neither is given)")
    parser.add_argument("--arch", metavar="A",
                        help=f"architecture or variant (e.g. {arch_example}; see `litesr models`); detected from the "
                        "weights if omitted")
    parser.add_argument("--scale", type=int, choices=SCALES,
                        help="upscaling factor; read from the checkpoint (PAN x2/x3: from the file name, else needed)"
                        + (f"; {scale_note}" if scale_note else ""))


def add_device_argument(parser: argparse.ArgumentParser, default: str = "auto") -> None:
    parser.add_argument("--device", default=default,
                        help=f"cpu, cuda, cuda:N, mps or auto (default: {default}; auto takes a GPU when there is one)")


def add_precision_argument(parser: argparse.ArgumentParser, note: str = "", default: str = "fp32") -> None:
    from ..device import PRECISION_CHOICES

    parser.add_argument(
        "--precision", choices=PRECISION_CHOICES, default=default,
        help=f"compute precision (default {default}). fp32 is identical to the official code; bf16 runs the model "
        "under autocast (ELAN-light: 1.4-1.5x faster on an AVX-512 BF16 CPU, < 0.01 dB PSNR change on Set5/Set14); "
        "auto picks bf16 where the hardware runs it natively and it was measured faster for the architecture, "
        "else fp32, never fp16 (fp16 is for GPUs, and breaks Swin-type models)" + (f"; {note}" if note else ""))


def add_runtime_argument(parser: argparse.ArgumentParser) -> None:
    from ..pretrained import DEFAULT_RUNTIME, RUNTIMES

    parser.add_argument(
        "--runtime", choices=RUNTIMES, default=DEFAULT_RUNTIME,
        help=f"what computes the model (default {DEFAULT_RUNTIME}). eager: PyTorch, any device. openvino (CPU; "
        'pip install "litesr[openvino]"): converts the model once (~7 s, cached) and compiles it for each input '
        "shape (0.6-2 s); its forward ran ELAN-light 1.3-2.7x faster than eager on a 2-core AVX-512 BF16 CPU, "
        "which paid off end to end only on large images (+7%% at 1920x1284 in)")


def add_json_argument(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--json", metavar="OUT", help=f"also write {what} to this JSON file")


def columns(rows: list[list[str]], right: set[int] = frozenset(), last_free: bool = False) -> list[str]:
    """Rows of cells laid out in columns two spaces apart: left-aligned, or right-aligned for the columns in
    ``right``; with ``last_free`` the last column runs on unpadded (long text such as a paper title)."""
    fitted = len(rows[0]) - (1 if last_free else 0)
    widths = [max(len(row[i]) for row in rows) for i in range(fitted)]
    lines = []
    for row in rows:
        cells = [c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(row, widths))]
        lines.append("  ".join(cells + list(row[fitted:])).rstrip())
    return lines


def describe_os_error(exc: OSError) -> str:
    """One line for an OSError about a path: what failed and where, without Python's decoration."""
    reason = exc.strerror or str(exc)
    where = f"{exc.filename}" + (f" -> {exc.filename2}" if exc.filename2 else "")
    return f"{where}: {reason}"


def refuse_existing(path, overwrite: bool) -> None:
    """An existing output is replaced only with ``--overwrite`` (as ``litesr upscale`` does); never a folder."""
    from pathlib import Path

    path = Path(path)
    if path.is_dir():
        raise UsageError(f"{path} is a folder; name the file to write")
    if path.exists() and not overwrite:
        raise UsageError(f"{path} already exists; pass --overwrite to replace it, or choose another name")
