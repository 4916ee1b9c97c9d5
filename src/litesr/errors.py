"""The one family of errors a user can fix: every command prints them as one line, with no traceback.

Anything else that escapes a command is a bug in litesr and keeps its traceback. Each class keeps the built-in
base callers caught before the family existed (``ValueError``, ``FileNotFoundError``, ``KeyError``, ``OSError``).
This module imports nothing from litesr, so every layer (models, io, runtime, cli) can raise these.
"""

from __future__ import annotations


class LitesrError(Exception):
    """Base of every user-facing litesr error: the message says what is wrong and what to do."""


class UsageError(LitesrError, ValueError):
    """A wrong argument, option or input, explained in one line."""


class NotFoundError(LitesrError, FileNotFoundError):
    """A file or folder the user named does not exist (or holds nothing usable)."""

    def __str__(self) -> str:  # FileNotFoundError would print "[Errno None]" otherwise
        return str(self.args[0]) if self.args else ""


class UnknownNameError(LitesrError, KeyError):
    """An unknown model, architecture or option value; a KeyError too, for callers that catch one."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class OutputError(LitesrError, OSError):
    """An output cannot be written (folder missing or read-only, disk full, name taken by a file).

    The message names the real output path, never the temporary file it was being written through.
    """

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class DivergedError(LitesrError, FloatingPointError):
    """A training run produced a non-finite loss or weights; the message says how to continue."""


class DownloadError(LitesrError, OSError):
    """Named weights could not be fetched (offline, server down, cut short, wrong checksum); the message names the
    URL, the expected sha256 and where the file can be placed by hand. Nothing partial is left behind."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""
