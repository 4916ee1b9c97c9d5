"""litesr's pretrained weights by name (the model zoo): one table, ``weights/zoo.yaml``, says what each name is,
where its file is (shipped inside the package, or downloaded from a pinned URL and checked against its sha256),
its licence, training data and the scores litesr measured for it.

Names are ``<variant>-x<scale>-<origin>`` (``elan-light-x4-frl``, ``swinir-light-x2-official``); the entry marked
``default`` of a pair also answers to ``<variant>-x<scale>`` and, at a given scale, to ``<variant>``. A file that is
not shipped is looked for in ``$LITESR_WEIGHTS_DIR`` (a folder of weights for machines without internet), then in
litesr's cache (``<cache>/weights``), and otherwise downloaded there: streamed, checked against its sha256 before
it is used, written atomically, one process at a time (a file lock; a second one waits and reuses the file).
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Iterator

from .errors import DownloadError, UsageError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
TABLE = WEIGHTS_DIR / "zoo.yaml"
#: A folder of weights files (named as their download) that is looked in before the cache and the network.
ENV_DIR = "LITESR_WEIGHTS_DIR"
#: Seconds without data before a download gives up.
TIMEOUT_S = 30.0
SET_ORDER = ("Set5", "Set14", "B100", "Urban100")


@dataclass(frozen=True)
class Weights:
    """One entry of the table (see the header of ``weights/zoo.yaml`` for the fields)."""

    name: str
    arch: str
    scale: int
    sha256: str
    licence: str
    attribution: str
    data: str
    file: str | None = None  # shipped: a file of WEIGHTS_DIR
    url: str | None = None  # or downloaded from here
    size: int | None = None
    default: bool = False
    source: dict = field(default_factory=dict)
    scores: dict = field(default_factory=dict)  # {set: {"psnr": .., "ssim": ..}}; empty: not measured here

    @property
    def shipped(self) -> bool:
        return self.file is not None

    @property
    def filename(self) -> str:
        """The file's name: in the package, in ``$LITESR_WEIGHTS_DIR`` and in the cache."""
        return self.file or self.url.rstrip("/").rsplit("/", 1)[-1]

    @property
    def origin(self) -> str:
        return self.name[len(f"{self.arch}-x{self.scale}-"):]


def github_url(item: dict) -> str | None:
    """``url``, or the URL of ``path`` in GitHub repository ``repo`` at ``commit`` or in release ``release``."""
    if item.get("url"):
        return str(item["url"])
    if not item.get("repo"):
        return None
    if item.get("commit"):
        return f"https://raw.githubusercontent.com/{item['repo']}/{item['commit']}/{item['path']}"
    return f"https://github.com/{item['repo']}/releases/download/{item['release']}/{item['path']}"


def read_table(path: str | os.PathLike = TABLE) -> dict[str, Weights]:
    """The entries of a table file by name, checked: names follow the scheme and are unique, every entry has
    exactly one of a shipped file and a pinned URL with a sha256, at most one default per (arch, scale)."""
    import yaml

    from .models.registry import SCALES, VARIANTS

    rows = yaml.safe_load(Path(path).read_text()) or []
    out: dict[str, Weights] = {}
    for row in rows:
        where = f"{path}: entry {row.get('name')!r}"
        url = github_url(row)
        if (row.get("file") is None) == (url is None):
            raise ValueError(f"{where}: give a shipped file or a download (repo/commit/path, or url), one of them")
        if row.get("arch") not in VARIANTS or row.get("scale") not in SCALES:
            raise ValueError(f"{where}: arch must be a variant ({', '.join(sorted(VARIANTS))}), scale 2, 3 or 4")
        if not re.fullmatch(rf"{re.escape(row['arch'])}-x{row['scale']}-[a-z0-9]+", str(row.get("name"))):
            raise ValueError(f"{where}: the name must be {row['arch']}-x{row['scale']}-<origin>")
        if not re.fullmatch(r"[0-9a-f]{64}", str(row.get("sha256"))):
            raise ValueError(f"{where}: sha256 must be 64 lowercase hex digits")
        source = dict(row.get("source") or {})
        if source:
            source["url"] = github_url(source)
        entry = Weights(name=row["name"], arch=row["arch"], scale=int(row["scale"]), sha256=row["sha256"],
                        licence=str(row["licence"]), attribution=str(row["attribution"]), data=str(row["data"]),
                        file=row.get("file"), url=url, size=row.get("size"), default=bool(row.get("default")),
                        source=source, scores=_scores(row.get("scores"), where))
        if entry.name in out:
            raise ValueError(f"{where}: the name is used twice")
        out[entry.name] = entry
    defaults = [(e.arch, e.scale) for e in out.values() if e.default]
    if len(defaults) != len(set(defaults)):
        raise ValueError(f"{path}: more than one default for {sorted({d for d in defaults if defaults.count(d) > 1})}")
    filenames = [e.filename for e in out.values()]
    if len(filenames) != len(set(filenames)):
        raise ValueError(f"{path}: two entries share a file name")
    return out


def _scores(value, where: str) -> dict:
    """``{set: {"psnr": float, "ssim": float}}`` in the usual set order; a text (``not measured here ...``) or
    nothing: ``{}``."""
    if value is None or isinstance(value, str):
        return {}
    if not isinstance(value, dict) or not all(isinstance(v, dict) and {"psnr", "ssim"} <= set(v)
                                               for v in value.values()):
        raise ValueError(f"{where}: scores must map each set to {{psnr: .., ssim: ..}}, or say why there are none")
    order = {s: i for i, s in enumerate(SET_ORDER)}
    return {k: {"psnr": float(v["psnr"]), "ssim": float(v["ssim"])}
            for k, v in sorted(value.items(), key=lambda kv: order.get(kv[0], len(order)))}


@lru_cache(maxsize=1)
def _packaged() -> dict[str, Weights]:
    return read_table(TABLE)


def entries() -> dict[str, Weights]:
    """The package's table (read once)."""
    return _packaged()


def names() -> list[str]:
    """Every name that :func:`find` knows: the entries and the short names of the defaults."""
    table = entries()
    short = [f"{e.arch}-x{e.scale}" for e in table.values() if e.default]
    return sorted(set(table) | set(short))


def default_for(arch: str, scale: int) -> Weights | None:
    """The default entry of a variant at a scale, if the table has one."""
    return next((e for e in entries().values() if e.default and e.arch == arch and e.scale == int(scale)), None)


def find(name: str, scale: int | None = None) -> Weights | None:
    """The entry a name means: an entry's own name, ``<variant>-x<scale>`` (the pair's default; ``elan-light_x4``
    as well), or a bare variant name (its default at ``scale``, else x4). None if the name is none of these."""
    from .models.registry import VARIANTS, canonical_name

    key = canonical_name(name)
    table = entries()
    if key in table:
        return table[key]
    m = re.fullmatch(r"(.+)-x([234])", key)
    if m and m.group(1) in VARIANTS:
        return default_for(m.group(1), int(m.group(2)))
    if key in VARIANTS:
        return default_for(key, int(scale or 4))
    return None


def is_weights_name(name: str) -> bool:
    """Whether ``name`` names weights by itself (an entry, or ``<variant>-x<scale>``; not a bare variant)."""
    from .models.registry import VARIANTS, canonical_name

    return canonical_name(name) not in VARIANTS and find(name) is not None


# --------------------------------------------------------------------------------------------- where the file is


def cache_folder() -> Path:
    from .paths import cache_dir

    return cache_dir() / "weights"


def local_folder() -> Path | None:
    value = os.environ.get(ENV_DIR)
    return Path(value).expanduser() if value else None


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _checked(entry: Weights, path: Path, where: str) -> Path:
    digest = sha256_of(path)
    if digest != entry.sha256:
        raise DownloadError(f"{path} ({where}) has sha256 {digest}, not the {entry.sha256} pinned for {entry.name}; "
                            "it is another file, or damaged: replace or remove it")
    return path


def _where(entry: Weights) -> tuple[str, Path | None]:
    """Where the entry's file is on this machine, in the order litesr looks: ``shipped`` (inside the package),
    ``local`` (``$LITESR_WEIGHTS_DIR``), ``cached``, else ``download`` (no file yet). Not checksummed."""
    if entry.shipped:
        return "shipped", WEIGHTS_DIR / entry.file
    folder = local_folder()
    if folder is not None and (folder / entry.filename).is_file():
        return "local", folder / entry.filename
    cached = cache_folder() / entry.filename
    return ("cached", cached) if cached.is_file() else ("download", None)


def local_file(entry: Weights) -> Path | None:
    """The entry's file on this machine, checked, without downloading: shipped, in ``$LITESR_WEIGHTS_DIR``, or in
    the cache. None if it has to be downloaded."""
    where, path = _where(entry)
    if where in ("shipped", "download"):
        return path
    return _checked(entry, path, f"${ENV_DIR}" if where == "local" else "litesr's cache")


def status(entry: Weights) -> str:
    """``shipped``, ``local`` (in $LITESR_WEIGHTS_DIR), ``cached`` or ``download`` (not checksummed here)."""
    return _where(entry)[0]


def fetch(entry: Weights, progress: str | None = None, folder: str | os.PathLike | None = None) -> Path:
    """The entry's file, downloaded into ``folder`` (default: the cache) if it is not on this machine yet.
    ``progress``: ``bar``, ``lines`` or ``off`` (default: a bar on a terminal, lines in a log)."""
    if folder is None:
        found = local_file(entry)
        if found is not None:
            return found
    elif (Path(folder) / entry.filename).is_file():
        return _checked(entry, Path(folder) / entry.filename, str(folder))
    if progress is None:
        from .progress import progress_mode

        progress = progress_mode()
    return download(entry, Path(folder) if folder is not None else cache_folder(), progress)


def place_hint(entry: Weights) -> str:
    """Where a file fetched by other means goes."""
    folder = local_folder()
    env = f"${ENV_DIR} ({folder})" if folder is not None else f"a folder named by ${ENV_DIR}"
    return f"save it as {entry.filename} in {env} or in {cache_folder()}"


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    """An exclusive lock on ``path`` between processes (and threads: each holds its own open file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as f:
        try:
            import fcntl
        except ImportError:  # Windows
            import msvcrt
            import time

            while True:
                try:
                    msvcrt.locking(f.fileno(), msvcrt.LK_NBLCK, 1)
                    break
                except OSError:
                    time.sleep(0.2)
            try:
                yield
            finally:
                f.seek(0)
                msvcrt.locking(f.fileno(), msvcrt.LK_UNLCK, 1)
            return
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def download(entry: Weights, folder: Path, progress: str = "off") -> Path:
    """Download ``entry`` into ``folder``: one process at a time (the others wait, then find the file), through a
    temporary file beside the target that is renamed only once size and sha256 are right."""
    if entry.url is None:
        raise UsageError(f"{entry.name} is shipped inside litesr; there is nothing to download")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DownloadError(f"cannot create {folder} to download {entry.name} into: {exc.strerror or exc}") from exc
    target = folder / entry.filename
    with _file_lock(folder / ".locks" / f"{entry.filename}.lock"):
        if target.is_file():  # another process fetched it while this one waited
            return _checked(entry, target, str(folder))
        fd, tmp_name = tempfile.mkstemp(dir=folder, prefix=f".{entry.filename}.", suffix=".part")
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                digest, got = _transfer(entry, out, progress)
            if entry.size is not None and got != entry.size:
                raise DownloadError(f"the download of {entry.name} from {entry.url} stopped after {got:,} of "
                                    f"{entry.size:,} bytes; nothing was kept: run it again, or "
                                    f"{place_hint(entry)} (sha256 {entry.sha256})")
            if digest != entry.sha256:
                raise DownloadError(f"{entry.url} gave a file with sha256 {digest}, not the pinned {entry.sha256} "
                                    f"of {entry.name}; refused, nothing was kept")
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
    return target


def _transfer(entry: Weights, out, progress: str) -> tuple[str, int]:
    """Stream ``entry.url`` into ``out``; return the sha256 and the byte count."""
    import http.client
    import urllib.error
    import urllib.request

    from . import __version__
    from .progress import Progress

    offline = (f"fetch {entry.url} (sha256 {entry.sha256}"
               + (f", {entry.size:,} bytes" if entry.size else "") + f") by other means and {place_hint(entry)}")
    request = urllib.request.Request(entry.url, headers={"User-Agent": f"litesr/{__version__}"})
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)
    except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
        reason = getattr(exc, "reason", None) or exc
        raise DownloadError(f"cannot download {entry.name} ({reason}): {offline}") from None
    h, got = hashlib.sha256(), 0
    with response:
        length = int(response.headers.get("Content-Length") or 0)
        bar = Progress(length or entry.size or 0, f"downloading {entry.name}", progress, unit="B")
        try:
            while True:
                chunk = response.read(1 << 16)
                if not chunk:
                    break
                out.write(chunk)
                h.update(chunk)
                got += len(chunk)
                bar.update(len(chunk))
        except (http.client.HTTPException, OSError) as exc:
            raise DownloadError(f"the download of {entry.name} from {entry.url} broke off after {got:,} bytes "
                                f"({type(exc).__name__}); nothing was kept: run it again, or {offline}") from None
        finally:
            bar.close()
    if length and got != length:
        raise DownloadError(f"the download of {entry.name} from {entry.url} stopped after {got:,} of {length:,} "
                            f"bytes; nothing was kept: run it again, or {offline}")
    return h.hexdigest(), got
