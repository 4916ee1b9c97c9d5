"""``python -m litesr`` works like the ``litesr`` command (torchrun needs this form)."""

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
