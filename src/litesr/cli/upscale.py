"""``litesr upscale``: super-resolve images of any size, tile by tile, in batches, writing each output atomically.

A batch is planned before anything is computed: outputs that would collide, replace an input, or overwrite an
existing file (without ``--overwrite``), and output folders that cannot be written, stop the run with one line.
Then each image is read, upscaled and written on its own: one that fails gets one line naming it, and the rest
are still processed; a summary ends the batch and the exit status is 1 if any image failed.
"""

from __future__ import annotations

import argparse
import errno
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

EXAMPLES = """examples:
  litesr upscale photo.png -o photo_x4.png                      # shipped ELAN-light x4
  litesr upscale photos/ -o out/ --arch elan-light --scale 2    # shipped ELAN-light x2
  litesr upscale a.jpg b.webp -o out/ --weights IMDN_x2.pth --scale 2
  litesr upscale shoot/ -o out/ --recursive --ext webp --skip-existing   # resume a batch; lossless stays lossless
  litesr upscale scans/ -o out/ --weights w.safetensors --tile 128 --tile-overlap 16 --device cuda
  litesr upscale big.png -o big_x4.png --precision bf16         # faster where bf16 is native (AVX-512 BF16, GPUs)
  litesr upscale huge.png -o huge_x4.png --runtime openvino      # CPU: OpenVINO (pip install "litesr[openvino]")

The architecture and scale are read from the checkpoint; --arch/--scale only check it (or pick a shipped model).
Outputs: with one input, -o may be a file name (.png, .jpg, .webp, .tif, .bmp); otherwise -o is a folder and each
output is <name><suffix>.<ext> (suffix _x<scale>; with --recursive, sub-folders are mirrored). An existing output
is an error unless --skip-existing or --overwrite; an input is never overwritten.
Images are read upright (EXIF orientation); grayscale stays grayscale; 16-bit stays 16-bit (PNG; TIFF for gray);
the ICC profile and EXIF are carried over unless --strip-metadata; transparency is kept (upscaled bicubically)
where the format can store it (PNG, WebP, TIFF). GIF inputs are written as PNG; animations are refused unless
--first-frame. PNG outputs are written strip by strip, so memory stays bounded whatever the output size.
Exit status: 0 all done (or skipped), 1 if any image failed, 2 if nothing could start (one line says why);
Ctrl-C, SIGTERM and SIGHUP stop the batch with no half-written file left (130, 143, 129): rerun the same
command with --skip-existing to finish it.
"""

#: ``--ext`` choices: ``keep`` writes the input's format where litesr can write it (PNG for GIF).
EXTENSIONS = {"png": ".png", "jpg": ".jpg", "webp": ".webp", "tif": ".tif"}


def register(sub: argparse._SubParsersAction) -> None:
    from .options import (add_device_argument, add_model_arguments, add_precision_argument, add_runtime_argument,
                          example_formatter)
    from ..device import DEFAULT_PRECISION
    from ..tiling import DEFAULT_OVERLAP, DEFAULT_TILE
    from ..io import DEFAULT_MAX_PIXELS
    from ..models.registry import variant_tiles

    p = sub.add_parser(
        "upscale",
        help="super-resolve images (PNG/JPEG/WebP/TIFF/BMP/GIF), files or folders, any size, in bounded memory",
        description="Super-resolve images with a litesr model. Large images are processed in overlapping tiles, "
        "so memory stays bounded whatever the image size; each tile keeps only its centre, so there are no seams.",
        epilog=EXAMPLES,
        formatter_class=example_formatter,
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files or folders of images")
    p.add_argument("-o", "--output", required=True, metavar="OUTPUT",
                   help="output file (single input) or folder (created if missing; end it with / to be explicit)")
    add_model_arguments(p, "checkpoint: .safetensors, .pth/.pt (read safely, weights_only) or an exported .onnx")
    p.add_argument("--recursive", action="store_true", help="also take images in sub-folders of folder inputs")
    p.add_argument("--suffix", metavar="S", help="added to each output name in a folder (default _x<scale>; "
                                                 "one starting with - is written --suffix=-big)")
    p.add_argument("--ext", choices=("keep", *EXTENSIONS), default="keep",
                   help="output format in a folder: keep the input's (default; GIF becomes PNG) or png, jpg, webp, tif")
    p.add_argument("--quality", type=int, default=95, metavar="Q",
                   help="JPEG and lossy WebP quality, 1-100 (default 95); a lossless input gives lossless WebP")
    existing = p.add_mutually_exclusive_group()
    existing.add_argument("--skip-existing", action="store_true", help="leave outputs that exist, do the others")
    existing.add_argument("--overwrite", action="store_true",
                          help="replace outputs that exist (never an input file itself)")
    p.add_argument("--strip-metadata", action="store_true", help="do not carry the ICC profile and EXIF over")
    p.add_argument("--first-frame", action="store_true", help="upscale the first frame of an animated image "
                                                              "(refused otherwise)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS, metavar="N",
                   help=f"refuse inputs above N pixels, read from the header before decoding (default "
                        f"{DEFAULT_MAX_PIXELS:,}; 0 = no limit)")
    p.add_argument("--tile", type=int, default=None, metavar="N",
                   help=f"LR tile size in pixels (default {DEFAULT_TILE}; "
                        + "".join(f"{tile} for {', '.join(names)}, whose larger tiles cost no more per pixel; "
                                  for tile, names in variant_tiles("large_tile").items())
                        + "".join(f"{tile} for {', '.join(names)}, whose attention costs more per pixel in larger "
                                  "tiles; " for tile, names in variant_tiles("base_tile").items())
                        + "0 = whole image at once)")
    p.add_argument("--tile-overlap", type=int, default=None, metavar="M",
                   help=f"LR context pixels around each tile (default {DEFAULT_OVERLAP}; "
                        + "".join(f"{overlap} for {', '.join(names)}, convolutional models whose outputs "
                                  "depend little on farther pixels; "
                                  for overlap, names in variant_tiles("tile_overlap").items())
                        + "never less than a model needs: "
                        + "; ".join(f"{context} for {', '.join(names)}"
                                    for context, names in variant_tiles("tile_context").items()) + ")")
    add_device_argument(p)
    add_precision_argument(p, default=DEFAULT_PRECISION)
    add_runtime_argument(p)
    p.add_argument("--self-ensemble", action="store_true",
                   help="average the outputs of the 8 flips/transpositions: 8x the time for a small gain "
                        "(+0.20 dB on Set5 with an earlier shipped x4)")
    p.add_argument("--log-interval", type=float, default=30.0, metavar="S",
                   help="seconds between progress lines when stderr is not a terminal (default 30)")
    p.add_argument("--quiet", action="store_true", help="no progress and no per-image lines; errors still print")
    p.set_defaults(func=run)


@dataclass
class Job:
    source: Path
    target: Path | None = None
    error: str | None = None  # found while planning: reported, not computed
    skip: bool = False


def collect_inputs(items: list[str], recursive: bool = False) -> list[tuple[Path, Path]]:
    """(file, name relative to the output folder) of every input; folders expand to the images inside them.

    A named path that does not exist, or a folder without images, is kept with an empty name: it is reported
    as a failed input while the others run.
    """
    from ..io import INPUT_SUFFIXES, image_files

    found: list[tuple[Path, Path]] = []
    for item in items:
        path = Path(item)
        if path.is_dir():
            files = image_files(path, recursive=recursive, suffixes=INPUT_SUFFIXES)
            found += [(f, f.relative_to(path)) for f in files] or [(path, Path())]
        else:
            found.append((path, Path(path.name)))
    return found


def plan(args: argparse.Namespace, scale: int, inputs: list[tuple[Path, Path]]) -> list[Job]:
    """Every input (``collect_inputs``) with its output, checked as a whole before anything is computed (see the
    module docstring)."""
    from ..errors import OutputError
    from ..io import FORMATS, INPUT_SUFFIXES, check_writable, name_too_long
    from .options import UsageError

    out = Path(args.output)
    named_folder = args.output.endswith(("/", os.sep)) or out.is_dir()
    if not named_folder and out.suffix and out.suffix.lower() not in FORMATS:
        raise UsageError(f"-o {out}: litesr does not write {out.suffix} files; name the output .png, .jpg, .webp, "
                         ".tif or .bmp (or end a folder name with /)")
    as_file = not named_folder and out.suffix.lower() in FORMATS
    if as_file and (len(inputs) > 1 or any(Path(i).is_dir() for i in args.inputs)):
        what = f"{len(inputs)} inputs" if len(inputs) > 1 else "a folder input"
        raise UsageError(f"{what} but -o {out} names one file; give a folder (e.g. -o out/)")
    suffix = f"_x{scale}" if args.suffix is None else args.suffix
    jobs: list[Job] = []
    for src, rel in inputs:
        if not src.exists():
            jobs.append(Job(src, error=f"input not found: {src}"))
        elif src.is_dir():
            jobs.append(Job(src, error=f"no images ({', '.join(INPUT_SUFFIXES)}) in folder {src}"
                                       + ("" if args.recursive else " (--recursive looks in sub-folders)")))
        elif as_file:
            jobs.append(Job(src, out))
        else:
            ext = EXTENSIONS.get(args.ext) or (src.suffix.lower() if src.suffix.lower() in FORMATS else ".png")
            jobs.append(Job(src, out / rel.parent / f"{src.stem}{suffix}{ext}"))
    owners: dict[Path, Path] = {}
    sources = {job.source.resolve() for job in jobs}
    existing = []
    for job in jobs:
        if job.target is None:
            continue
        key = job.target.resolve()
        if key == job.source.resolve():
            raise UsageError(f"the output {job.target} would replace its input; choose another -o or --suffix")
        if key in owners:
            raise UsageError(f"{owners[key]} and {job.source} would both be written to {job.target}; upscale them "
                             "to different folders (or with different --suffix)")
        owners[key] = job.source
        if key in sources:
            raise UsageError(f"the output {job.target} would replace the input of that name; choose another -o")
        if job.target.exists():
            if args.skip_existing:
                job.skip = True
            elif not args.overwrite:
                existing.append(job.target)
    if existing:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise UsageError(f"{existing[0]} already exists{more}; pass --skip-existing to keep it, --overwrite to "
                         "replace it")
    checked = set()
    for job in jobs:  # one probe per output folder; the message names the output file
        if job.target is None or job.skip:
            continue
        too_long = name_too_long(job.target)
        if too_long:
            raise OutputError(f"cannot write {job.target}: {too_long}; choose a shorter -o or --suffix")
        if job.target.parent not in checked:
            check_writable(job.target)
            checked.add(job.target.parent)
    return jobs


def run(args: argparse.Namespace) -> int:
    from ..errors import NotFoundError, UsageError
    from ..device import pick_device
    from ..pretrained import apply_runtime, resolve_model
    from ..runner import as_runner
    from .signals import exit_status, signal_name

    if not 1 <= args.quality <= 100:
        raise UsageError(f"--quality must be 1-100, not {args.quality}")
    if (args.tile is not None and args.tile < 0) or (args.tile_overlap is not None and args.tile_overlap < 0):
        raise UsageError("--tile and --tile-overlap must be >= 0")
    if args.max_pixels < 0:
        raise UsageError("--max-pixels must be >= 0 (0: no limit)")
    started_at = time.time()
    missing = [item for item in args.inputs if not Path(item).exists()]
    if len(missing) == len(args.inputs):  # nothing to do: say so before loading a model
        raise NotFoundError(f"input not found: {', '.join(missing)}")
    inputs = collect_inputs(args.inputs, args.recursive)  # folders listed once, before the model loads
    if not any(name.parts for _, name in inputs):  # only empty folders
        from ..io import INPUT_SUFFIXES

        empty = [item for item in args.inputs if Path(item).is_dir()]
        raise NotFoundError(f"no images ({', '.join(INPUT_SUFFIXES)}) in {', '.join(empty)}"
                            + ("" if args.recursive else " (--recursive looks in sub-folders)"))
    device = pick_device(args.device)
    model = resolve_model(args.weights, args.arch, args.scale, device)  # the one place the model is loaded
    model = apply_runtime(model, args.runtime, device, args.precision,
                          announce=None if args.quiet else lambda line: print(f"litesr upscale: {line}",
                                                                              file=sys.stderr, flush=True))
    runner = as_runner(model, device, args.precision)  # the precision resolved once; a refused one stops the run now
    jobs = plan(args, runner.scale, inputs)
    remove_leftovers(jobs, started_at, args.quiet)
    counts = {"done": 0, "skipped": 0, "failed": 0}
    try:
        upscale_all(args, runner, jobs, counts)
    except KeyboardInterrupt as exc:  # Ctrl-C, SIGTERM, SIGHUP: the output being written was removed
        print(f"litesr upscale: stopped by {signal_name(exc)} after {counts['done']} of {len(jobs)} image(s) "
              f"({counts['skipped']} skipped); nothing half-written is left: run the same command with "
              "--skip-existing to do the rest", file=sys.stderr, flush=True)
        return exit_status(exc)
    if len(jobs) > 1 or counts["skipped"]:
        print(f"litesr upscale: {counts['done']} done, {counts['skipped']} skipped, {counts['failed']} failed "
              f"(of {len(jobs)})", file=sys.stderr)
    return 1 if counts["failed"] else 0


def remove_leftovers(jobs: list[Job], started_at: float, quiet: bool) -> None:
    """Remove the temporaries an earlier run killed outright (SIGKILL, power loss) left in the output folders."""
    from ..io import remove_stale_temporaries

    folders: dict[Path, list[str]] = {}
    for job in jobs:
        if job.target is not None:
            folders.setdefault(job.target.parent, []).append(job.target.name)
    for folder, names in folders.items():
        removed = remove_stale_temporaries(folder, started_at, names)
        if removed and not quiet:
            print(f"litesr upscale: removed {len(removed)} temporary file(s) an interrupted run left in {folder}",
                  file=sys.stderr)


def upscale_all(args: argparse.Namespace, runner, jobs: list[Job], counts: dict[str, int]) -> None:
    """Each job in turn, counted in ``counts``; a failed image is one line and the batch goes on (a full disk
    stops it)."""
    from ..errors import LitesrError, UsageError
    from ..progress import progress_mode
    from .options import describe_os_error

    bar_or_lines = progress_mode(args.quiet)
    for index, job in enumerate(jobs, 1):
        tag = f"[{index}/{len(jobs)}] " if len(jobs) > 1 else ""
        if job.skip:
            counts["skipped"] += 1
            if not args.quiet:
                print(f"{tag}{job.source}: skipped, {job.target} exists")
            continue
        try:
            if job.error:
                raise UsageError(job.error)
            started = time.monotonic()
            line = upscale_one(args, runner, job, bar_or_lines, tag)
            counts["done"] += 1
            if not args.quiet:
                print(f"{tag}{line} in {time.monotonic() - started:.1f} s", flush=True)
        except (LitesrError, OSError) as exc:
            if isinstance(exc, OSError) and not isinstance(exc, LitesrError) and exc.filename is None:
                raise  # not about a file: a bug, keep the traceback
            counts["failed"] += 1
            message = str(exc) if isinstance(exc, LitesrError) else describe_os_error(exc)
            if str(job.source) not in message:
                message = f"{job.source}: {message}"
            print(f"litesr upscale: error: {message}", file=sys.stderr, flush=True)
            cause = exc.__cause__ if exc.__cause__ is not None else exc
            if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
                rest = len(jobs) - index
                after = f" and the {rest} after it" if rest else ""
                print(f"litesr upscale: the disk is full: stopping here ({job.source.name}{after} not written; "
                      "free some space and run again with --skip-existing)", file=sys.stderr)
                counts["failed"] += rest
                break


def upscale_one(args: argparse.Namespace, runner, job: Job, progress_mode: str, tag: str) -> str:
    """Read, upscale and write one image with ``runner`` (``litesr.runner.Runner``); returns the line that reports
    it."""
    from ..api import upscale_picture
    from ..io import check_output_size, keeps_16_bit, keeps_alpha, output_format, read_picture, write_strips
    from ..progress import tile_progress
    from ..tiling import InferenceOptions, default_tile

    src, dst = job.source, job.target
    picture = read_picture(src, max_pixels=args.max_pixels, first_frame=args.first_frame,
                           keep_depth=True, metadata=not args.strip_metadata)
    h, w = picture.rgb.shape[:2]
    s = runner.scale
    check_output_size(dst, w * s, h * s)
    size = f"{w * s}x{h * s} ({w * s * h * s / 1e6:.1f} MP), "
    tile = default_tile(runner) if args.tile is None else args.tile or None
    options = InferenceOptions(tile=tile, overlap=args.tile_overlap, self_ensemble=args.self_ensemble,
                               progress=tile_progress(progress_mode, args.log_interval, what=f"output {size}",
                                                      prefix="litesr upscale"),
                               description=f"{tag}{src.name}")
    up = upscale_picture(runner, picture, options)  # computed strip by strip as the output is written
    notes = []
    alpha = up.alpha
    if alpha is not None and not keeps_alpha(dst):
        alpha = None
        notes.append(f"{dst.suffix} cannot store transparency; {src.name}'s alpha channel was dropped "
                     "(write .png or .webp to keep it)")
    if picture.bits == 16 and not keeps_16_bit(dst, picture.grayscale, alpha is not None):
        notes.append(f"{dst.suffix} holds 8 bits per channel; {src.name} is 16-bit and was written as 8-bit "
                     "(write .png to keep 16 bits)")
    for note in notes:
        print(f"litesr upscale: note: {note}", file=sys.stderr)
    write_strips(dst, up.strips, up.width, up.height, alpha=alpha, grayscale=picture.grayscale, icc=picture.icc,
                 exif=picture.exif, quality=args.quality, lossless=output_format(dst) == "WEBP" and picture.lossless)
    depth = " 16-bit" if picture.bits == 16 and keeps_16_bit(dst, picture.grayscale, alpha is not None) else ""
    return f"{src} -> {dst} ({w}x{h} -> {w * s}x{h * s}{depth})"
