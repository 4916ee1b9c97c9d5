"""Files around the images: listing a folder's inputs, atomic writes (a temporary beside the output, renamed over
it), checking a destination before computing, names the file system would refuse, and the temporaries a killed
run left."""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Iterable, Iterator

from ..errors import LitesrError, OutputError

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
#: What ``litesr upscale`` reads: the above, and GIF (still images; animations are refused unless asked).
INPUT_SUFFIXES = IMAGE_SUFFIXES + (".gif",)


def image_files(folder: str | os.PathLike, recursive: bool = False,
                suffixes: tuple[str, ...] = IMAGE_SUFFIXES) -> list[Path]:
    """The images (by suffix) inside ``folder`` (and its sub-folders with ``recursive``), sorted by path;
    hidden files (``.name``, such as temporary outputs) are left out."""
    folder = Path(folder)
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.suffix.lower() in suffixes and not p.name.startswith(".")
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts[:-1]) and p.is_file())


#: Temporary files of :func:`atomic_path`: ``.litesr-<pid>-<8 random>.tmp`` beside the output, at most 28 bytes
#: whatever the output's name (a name the file system takes always has a temporary it takes too), and
#: recognisable as litesr's own, with the process that wrote it, by :func:`remove_stale_temporaries`.
TEMP_PREFIX, TEMP_SUFFIX = ".litesr-{pid}-", ".tmp"
_TEMP_NAME = re.compile(r"^\.litesr-(\d+)-[A-Za-z0-9_]{8}\.tmp$")


def remove_stale_temporaries(folder: str | os.PathLike, before: float, names: Iterable[str] = ()) -> list[Path]:
    """Delete the temporary files a killed litesr run left in ``folder``; return them.

    Only litesr's own are touched: ``.litesr-<pid>-XXXXXXXX.tmp`` whose process is gone, and the
    ``.<name>.XXXXXXXX.tmp`` of earlier versions for the output ``names`` given, each last modified before
    ``before`` (a ``time.time()``: the start of the run that cleans up).
    """
    folder = Path(folder)
    old_style = {f".{name}" for name in names}
    removed = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        match = _TEMP_NAME.match(name)
        if match:
            if _process_alive(int(match.group(1))):
                continue
        elif not (name.endswith(TEMP_SUFFIX) and len(name) > 13
                  and name[:-13] in old_style and name[-13] == "."):  # .<name>.XXXXXXXX.tmp
            continue
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat(follow_symlinks=False).st_mtime < before:
                os.unlink(entry.path)
                removed.append(Path(entry.path))
        except OSError:
            continue
    return removed


def _process_alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # someone else's process: leave its files alone
    return True


def name_too_long(path: str | os.PathLike) -> str | None:
    """Why the file system would refuse ``path``'s name (or a folder's on the way to it), else None.

    The limit is read from the nearest existing folder (``NAME_MAX``, 255 bytes on most file systems)."""
    path = Path(path)
    existing = path.parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    try:
        limit = os.pathconf(existing, "PC_NAME_MAX") if hasattr(os, "pathconf") else 255
    except (OSError, ValueError):
        limit = 255
    parts = [p for p in path.relative_to(existing).parts] if path.is_relative_to(existing) else [path.name]
    for part in parts:
        size = len(os.fsencode(part))
        if size > limit:
            return f"the name {part[:40]}... is {size} bytes, longer than the {limit} the file system allows"
    return None


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on failure delete it.

    A failure to write (missing or read-only folder, full disk, a file where a folder should be) is an
    :class:`~litesr.errors.OutputError` that names ``path``, never the temporary file.
    """
    path = Path(path)
    tmp_path = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=TEMP_PREFIX.format(pid=os.getpid()), suffix=TEMP_SUFFIX, dir=path.parent)
        os.close(fd)
        tmp_path = Path(tmp)
        yield tmp_path
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp_path, path)
    except BaseException as exc:
        if tmp_path is not None:
            with contextlib.suppress(OSError):
                tmp_path.unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, LitesrError):
            raise write_error(path, exc) from exc
        raise


def write_error(path: str | os.PathLike, exc: OSError) -> OutputError:
    """The one-line error for a failed write of ``path`` (the real destination, whatever file failed)."""
    reason = exc.strerror or str(exc) or type(exc).__name__
    if isinstance(exc, (FileExistsError, NotADirectoryError)):
        reason = "a file stands where a folder is needed on that path"
    return OutputError(f"cannot write {path}: {reason}")


def check_writable(path: str | os.PathLike, folder: bool = False) -> Path:
    """Fail now, before any computing, if ``path`` (a file, or a ``folder``) could not be written.

    Walks up to the nearest existing folder: it must be a folder and writable, and where the destination's own
    folder already exists a probe file is created and removed there (catching read-only file systems and
    permissions ``os.access`` cannot see). Returns ``path``. A full disk can only be found while writing.
    """
    path = Path(path)
    if not folder and path.is_dir():
        raise OutputError(f"cannot write {path}: it is a folder; name a file")
    if folder and path.exists() and not path.is_dir():
        raise OutputError(f"cannot write into {path}: it is a file, not a folder")
    target = path if folder else path.parent
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise OutputError(f"cannot write {path}: {existing} is a file, not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".litesr-probe.", dir=existing)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise write_error(path, exc) from exc
    return path

