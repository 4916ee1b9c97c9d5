"""Stop signals: SIGTERM and SIGHUP end a command as Ctrl-C (SIGINT) does.

While a command runs, TERM and HUP raise :class:`Stopped`, a ``KeyboardInterrupt``: what a command holds open is
cleaned up on the way out exactly as for Ctrl-C (atomic writes delete their temporary file), and the command
exits with the shell's status for the signal, 128 + its number (130 INT, 143 TERM, 129 HUP).
"""

from __future__ import annotations

import contextlib
import signal
import threading
from typing import Iterator

#: The signals handled like Ctrl-C (where the platform has them).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGHUP") if hasattr(signal, name))


class Stopped(KeyboardInterrupt):
    """A stop signal arrived; ``signum`` says which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = int(signum)


def signal_name(exc: BaseException) -> str:
    """SIGTERM, SIGHUP, or SIGINT for a plain Ctrl-C."""
    return signal.Signals(getattr(exc, "signum", signal.SIGINT)).name


def exit_status(exc: BaseException) -> int:
    """128 + the signal's number: 130 for Ctrl-C, 143 for SIGTERM, 129 for SIGHUP."""
    return 128 + int(getattr(exc, "signum", signal.SIGINT))


@contextlib.contextmanager
def stop_signals_interrupt() -> Iterator[None]:
    """Within the block, :data:`STOP_SIGNALS` raise :class:`Stopped`; the previous handlers come back after it."""
    if threading.current_thread() is not threading.main_thread():  # handlers can only be set in the main thread
        yield
        return

    def stop(signum, frame):
        raise Stopped(signum)

    saved = {s: signal.signal(s, stop) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in saved.items():
            signal.signal(s, handler)
