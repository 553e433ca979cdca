"""The note types shared by the MIDI reader, the event codec, augmentation and the metrics."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Note:
    """One sounding note, times in seconds.

    ``track`` is the index of the MIDI track the note came from (0 for a type-0 file).
    """

    pitch: int
    velocity: int
    start: float
    end: float
    track: int = 0


@dataclass
class Performance:
    """What a MIDI file holds once read: its notes and the timing facts the metrics need.

    ``notes`` are ordered by start time; notes starting at the same time keep the order of their
    NOTE_ON messages in the file (track by track, then message order), so the per-track note-on
    order of the file can be recovered.
    ``tempos`` lists (time in seconds, microseconds per beat), first entry at time 0.
    """

    notes: list[Note]
    tempos: list[tuple[float, int]] = field(default_factory=lambda: [(0.0, 500000)])
    ticks_per_beat: int = 480
    source: str = ""

    @property
    def duration(self) -> float:
        """End of the last note in seconds (0 for an empty performance)."""
        return max((n.end for n in self.notes), default=0.0)
