"""Progress of long jobs, on a terminal and in a log: a bar where stderr is a terminal, else plain lines at a
steady interval; and one line with the expected time before a long job (after its second step has run: the first
also pays for warm-up, so the pace is taken from the steps after it).
One reporter (:class:`Progress`) for the tiles of an upscale, the images of an evaluation, the bytes of a download
and the steps of a training run."""

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


class Progress:
    """The progress of one long job on ``stream`` (stderr): a tqdm bar on a terminal (``mode`` ``"bar"``), plain lines
    in a log (``"lines"``), or nothing (``"off"``). The one reporter of upscale tiles, evaluation images, downloads
    and training steps.

    ``unit`` names a step (``tile``, ``image``, ``it``); ``"B"`` makes the job a transfer of ``total`` bytes (0:
    unknown): the bar counts KiB and MiB, the lines state MiB, and a last line comes at the close. In a log a job
    of counted steps gets a line every ``interval`` seconds, and after its second step one with the time it should
    take (when that is over :data:`ESTIMATE_AFTER_S`; ``what`` goes before the count in that line). With
    ``interval=None`` it writes no lines of its own: the bar, and what its owner :meth:`say`s (training says its
    steps itself). ``initial`` steps are done already (a resumed run). ``keep_bar`` leaves the bar on the terminal
    at the close; a bar that goes is not drawn for a job of one step (a transfer always has one).
    """

    def __init__(self, total: int, description: str, mode: str, *, unit: str = "tile",
                 interval: float | None = LOG_INTERVAL_S, what: str = "", initial: int = 0, keep_bar: bool = False,
                 stream: TextIO | None = None, prefix: str = "litesr") -> None:
        self.total, self.description, self.mode, self.interval = total, description, mode, interval
        self.unit, self.what, self.prefix = unit, what, prefix
        self.stream = stream or sys.stderr
        self.done = self.initial = initial
        self.start = self.last = time.monotonic()
        self.first: tuple[int, float] | None = None  # (steps, seconds) of the first update: a warm-up, not the pace
        self.estimated = interval is None or unit == "B"  # only counted steps in a log get an estimate
        self.bar = None
        if mode == "bar" and (total > 1 or keep_bar or unit == "B"):
            from tqdm import tqdm

            scaled = {"unit_scale": True, "unit_divisor": 1024} if unit == "B" else {}
            self.bar = tqdm(total=total or None, initial=initial, desc=description, unit=unit, leave=keep_bar,
                            dynamic_ncols=True, file=self.stream, **scaled)

    def say(self, line: str) -> None:
        """One line: above the bar on a terminal, plain in a log, nowhere when ``mode`` is ``"off"``."""
        if self.bar is not None:
            self.bar.write(line, file=self.stream)
        elif self.mode != "off":
            print(line, file=self.stream, flush=True)

    def show(self, **values: str) -> None:
        """Figures shown beside the bar (``loss=...``); a log gets none of them."""
        if self.bar is not None:
            self.bar.set_postfix(**values)

    def update(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        elapsed = now - self.start
        if self.unit == "B":
            if self.bar is not None:
                self.bar.update(n)
            elif self.mode == "lines" and now - self.last >= self.interval:
                self.last = now
                self.say(self._amount_line(elapsed))
            return
        ran = self.done - self.initial
        if self.first is None:
            self.first = (ran, elapsed)
            # a job the first step predicts short (warm-up included, an overestimate) needs no estimate line
            self.estimated = self.estimated or elapsed / ran * (self.total - self.initial) <= ESTIMATE_AFTER_S
        steps, warmup = self.first
        # the pace after the first step: the first one also pays for warm-up (allocations, kernel builds, caches),
        # and an estimate from it alone overshot 2-3x
        pace = (elapsed - warmup) / (ran - steps) if ran > steps else elapsed / ran
        left = pace * (self.total - self.done)
        if not self.estimated and ran > steps and self.mode != "off":
            self.estimated = True
            if elapsed + left > ESTIMATE_AFTER_S:
                self.say(f"{self.prefix}: {self.description}: {self.what}{self.total} {self.unit}s, "
                         f"about {duration(elapsed + left)} in all (an estimate from the first {self.done})")
                self.last = now  # the next progress line comes one interval after the estimate
        if self.bar is not None:
            self.bar.update(n)
        elif self.interval is None or (not self.estimated and self.total > steps):
            pass  # no lines of its own, or none before the estimate: it comes at the second step
        elif self.mode == "lines" and now - self.last >= self.interval and self.done < self.total:
            self.last = now
            self.say(f"{self.prefix}: {self.description}: {self.done}/{self.total} {self.unit}s "
                     f"({100 * self.done // self.total}%), {duration(elapsed)} elapsed, about {duration(left)} left")

    def _amount_line(self, elapsed: float) -> str:
        of = f" of {self.total / 2**20:.1f} MiB ({100 * self.done // self.total}%)" if self.total else " MiB"
        return f"{self.prefix}: {self.description}: {self.done / 2**20:.1f}{of}, {duration(elapsed)} elapsed"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
        elif self.unit == "B" and self.mode == "lines":
            self.say(self._amount_line(time.monotonic() - self.start))


def tile_progress(mode: str, interval: float, what: str = "",
                  prefix: str = "litesr") -> Callable[[int, str], Progress]:
    """A factory for ``litesr.tiling.InferenceOptions(progress=...)``: a :class:`Progress` of each image's tiles."""
    return lambda total, description: Progress(total, description, mode, interval=interval, what=what, prefix=prefix)
