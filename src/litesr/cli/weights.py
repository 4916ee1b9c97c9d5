"""``litesr weights download``: fetch named weights ahead of time (into the cache, or a folder to carry)."""

from __future__ import annotations

import argparse

EXAMPLES = """examples:
  litesr weights download swinir-light-x2-official swinir-light-x3-official
  litesr weights download --all --to weights/        # a folder to copy to a machine without internet, then
  export LITESR_WEIGHTS_DIR=/path/to/weights         # there: looked in before the cache and the network

Each file is streamed, checked against the sha256 pinned in litesr's table before it is kept, and written
atomically; a second process fetching the same file waits for the first. Shipped weights need no download.
"""


def register(sub: argparse._SubParsersAction) -> None:
    from .options import example_formatter

    p = sub.add_parser("weights", help="fetch named weights ahead of time",
                       description="Manage the files of litesr's named weights (see `litesr models`).",
                       epilog=EXAMPLES, formatter_class=example_formatter)
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    d = actions.add_parser("download", help="download and check named weights",
                           description="Download named weights into litesr's cache (or --to DIR), checked against "
                           "their pinned sha256.", epilog=EXAMPLES, formatter_class=example_formatter)
    d.add_argument("names", nargs="*", metavar="NAME", help="names from `litesr models`")
    d.add_argument("--all", action="store_true", help="every entry that is not shipped")
    d.add_argument("--to", metavar="DIR", help="write the files here instead of the cache (e.g. a folder for "
                   "$LITESR_WEIGHTS_DIR on another machine)")
    d.add_argument("--quiet", action="store_true", help="no progress bar or lines")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from .. import zoo
    from ..errors import UnknownNameError
    from ..progress import progress_mode
    from .options import UsageError

    if args.all:
        chosen = [e for e in zoo.entries().values() if not e.shipped]
    else:
        if not args.names:
            raise UsageError("name the weights to download (see `litesr models`), or give --all")
        chosen = []
        for name in args.names:
            entry = zoo.find(name)
            if entry is None:
                raise UnknownNameError(f"unknown weights {name!r}; names: {', '.join(zoo.names())}")
            chosen.append(entry)
    for entry in chosen:
        if entry.shipped and args.to is None:
            print(f"{entry.name}: shipped inside litesr ({zoo.WEIGHTS_DIR / entry.file})")
            continue
        if entry.shipped:
            raise UsageError(f"{entry.name} is shipped inside litesr; there is nothing to download")
        path = zoo.fetch(entry, progress_mode(args.quiet), folder=args.to)
        print(f"{entry.name}: {path} (sha256 {entry.sha256[:12]}... checked)")
    return 0
