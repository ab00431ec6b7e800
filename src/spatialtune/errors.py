"""One base class for every error a user can cause: the CLI prints its message and exits 1, without a traceback."""

from __future__ import annotations


class SpatialtuneError(ValueError):
    """An error in the user's input, data, configuration or folders, with a message that says what to do."""


class UnknownNameError(SpatialtuneError, KeyError):
    """A name that no registry entry has (the message lists the closest known names)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class MissingFileError(SpatialtuneError, FileNotFoundError):
    """A file or folder the user named that is not there (still a FileNotFoundError for callers that catch that)."""
