"""Where litesr keeps what it derives and may reuse (converted graphs, compiled kernels)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path


def cache_dir() -> Path:
    """``$LITESR_CACHE``, else ``$XDG_CACHE_HOME/litesr``, else ``~/.cache/litesr``.

    Folders are only ever made under a base that exists and is writable (``$XDG_CACHE_HOME`` or its parent, the
    home folder): a ``HOME`` that does not exist (a service account, a container) must not make litesr create
    folders from ``/``. Without such a base the cache is ``<temporary folder>/litesr-<user id>``, which lasts
    as long as the system keeps it.
    """
    if os.environ.get("LITESR_CACHE"):
        return Path(os.environ["LITESR_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    if xdg and _usable_base(Path(xdg) if Path(xdg).exists() else Path(xdg).parent):
        return Path(xdg) / "litesr"
    home = Path(os.path.expanduser("~"))
    if _usable_base(home):
        return home / ".cache" / "litesr"
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"litesr-{uid}"


def _usable_base(folder: Path) -> bool:
    return folder.is_absolute() and folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)
