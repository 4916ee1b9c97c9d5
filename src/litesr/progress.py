"""Progress of long jobs, on a terminal and in a log: a bar where stderr is a terminal, else plain lines at a
steady interval; and one line with the expected time before a long job (after its second step has run: the first
also pays for warm-up, so the pace is taken from the steps after it).
Used for the tiles of an upscale and the images of an evaluation; training logs its own steps."""

from __future__ import annotations

import sys
import time
from typing import Callable, TextIO

#: A job whose first tiles predict more than this many seconds gets an estimate line before it runs on.
ESTIMATE_AFTER_S = 10.0


#: Seconds between two progress lines in a log, unless a command is told otherwise.
LOG_INTERVAL_S = 30.0


def progress_mode(quiet: bool = False) -> str:
    """``"off"`` when asked to be quiet, ``"bar"`` on a terminal, else ``"lines"`` (stderr goes to a log)."""
    return "off" if quiet else ("bar" if sys.stderr.isatty() else "lines")


def duration(seconds: float) -> str:
    """``42 s``, ``7 min``, ``2 h 05 min``."""
    seconds = max(0.0, seconds)
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 90 * 60:
        return f"{seconds / 60:.0f} min"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class TileProgress:
    """Progress over the tiles of one image (or other ``unit``s). ``mode``: ``"bar"`` (tqdm), ``"lines"`` (a plain
    line every ``interval`` seconds), or ``"off"``. ``say`` prints one line (above the bar on a terminal)."""

    def __init__(self, total: int, description: str, mode: str, interval: float, what: str = "",
                 stream: TextIO | None = None, prefix: str = "litesr", unit: str = "tile") -> None:
        self.total, self.description, self.mode, self.interval = total, description, mode, interval
        self.what, self.prefix, self.unit = what, prefix, unit
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last = time.monotonic()
        self.first: tuple[int, float] | None = None  # (steps, seconds) of the first update: a warm-up, not the pace
        self.estimated = False
        self.bar = None
        if mode == "bar" and total > 1:
            from tqdm import tqdm

            self.bar = tqdm(total=total, desc=description, unit=unit, leave=False, dynamic_ncols=True,
                            file=self.stream)

    def say(self, line: str) -> None:
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        elapsed = now - self.start
        if self.first is None:
            self.first = (self.done, elapsed)
            # a job the first step predicts short (warm-up included, an overestimate) needs no estimate line
            self.estimated = elapsed / self.done * self.total <= ESTIMATE_AFTER_S
        steps, warmup = self.first
        # the pace after the first step: the first one also pays for warm-up (allocations, kernel builds, caches),
        # and an estimate from it alone overshot 2-3x
        pace = (elapsed - warmup) / (self.done - steps) if self.done > steps else elapsed / self.done
        left = pace * (self.total - self.done)
        if not self.estimated and self.done > steps and self.mode != "off":
            self.estimated = True
            if elapsed + left > ESTIMATE_AFTER_S:
                self.say(f"{self.prefix}: {self.description}: {self.what}{self.total} {self.unit}s, "
                         f"about {duration(elapsed + left)} in all (an estimate from the first {self.done})")
                self.last = now  # the next progress line comes one interval after the estimate
        if self.bar is not None:
            self.bar.update(n)
        elif not self.estimated and self.total > steps:
            pass  # no progress line before the estimate: it comes at the second step
        elif self.mode == "lines" and now - self.last >= self.interval and self.done < self.total:
            self.last = now
            self.say(f"{self.prefix}: {self.description}: {self.done}/{self.total} {self.unit}s "
                     f"({100 * self.done // self.total}%), {duration(elapsed)} elapsed, about {duration(left)} left")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def tile_progress(mode: str, interval: float, what: str = "",
                  prefix: str = "litesr") -> Callable[[int, str], TileProgress]:
    """A factory for ``litesr.tiling.upscale_strips(progress=...)``."""
    return lambda total, description: TileProgress(total, description, mode, interval, what, prefix=prefix)


class ByteProgress:
    """Progress of a transfer of ``total`` bytes (0: unknown): a tqdm bar in bytes on a terminal, else a plain
    line every ``interval`` seconds and one at the end; nothing when ``mode`` is ``"off"``."""

    def __init__(self, total: int, description: str, mode: str, interval: float = LOG_INTERVAL_S,
                 stream: TextIO | None = None, prefix: str = "litesr") -> None:
        self.total, self.description, self.mode, self.interval, self.prefix = total, description, mode, interval, prefix
        self.stream = stream or sys.stderr
        self.done = 0
        self.start = self.last = time.monotonic()
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, desc=description, unit="B", unit_scale=True, unit_divisor=1024,
                            leave=False, dynamic_ncols=True, file=self.stream)

    def _line(self) -> str:
        of = f" of {self.total / 2**20:.1f} MiB ({100 * self.done // self.total}%)" if self.total else " MiB"
        amount = f"{self.done / 2**20:.1f}" + of
        return f"{self.prefix}: {self.description}: {amount}, {duration(time.monotonic() - self.start)} elapsed"

    def update(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif self.mode == "lines" and time.monotonic() - self.last >= self.interval:
            self.last = time.monotonic()
            print(self._line(), file=self.stream, flush=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.mode == "lines":
            print(self._line(), file=self.stream, flush=True)
