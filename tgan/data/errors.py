"""Exceptions of the data layer. Both subclass ValueError so callers can catch either broadly."""
from __future__ import annotations


class MidiError(ValueError):
    """A MIDI file that cannot be read: empty, truncated, not MIDI, or of an unsupported kind.

    The message names the file. ``path`` holds it for callers that want it on its own.
    """

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class DataError(ValueError):
    """A data set that cannot be prepared: a missing or unreadable path, a MAESTRO csv without the
    expected columns, a missing optional dependency, or a data set that yields no tokens."""
