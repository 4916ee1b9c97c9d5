"""Where litesr keeps what it derives and may reuse (converted graphs, compiled kernels)."""

from __future__ import annotations

import os
from pathlib import Path


def cache_dir() -> Path:
    """``$LITESR_CACHE``, else ``$XDG_CACHE_HOME/litesr``, else ``~/.cache/litesr``."""
    if os.environ.get("LITESR_CACHE"):
        return Path(os.environ["LITESR_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "litesr"
