"""The token vocabulary: Music Transformer "performance" events on a 10 ms grid, plus specials.

Id layout (the same for both vocabularies, P = number of pitches, lo = lowest pitch)::

    0                      PAD
    1                      EOS
    2 .. 1+P               NOTE_ON_lo .. NOTE_ON_hi
    2+P .. 1+2P            NOTE_OFF_lo .. NOTE_OFF_hi
    2+2P .. 101+2P         TIME_SHIFT_1 .. TIME_SHIFT_100     (steps of 10 ms)
    102+2P .. 133+2P       VELOCITY_1 .. VELOCITY_32          (velocity bins)
    134+2P                 MASK                               (last id)

PAD = 0 lets zero-filled buffers read as padding; PAD, EOS and the events keep the ids of
Magenta's performance encoding with two reserved ids, which the released Transformer-GAN code
used (310 tokens for the MAESTRO range). MASK, needed only by the BERT discriminator's masked
pre-training, comes last so a generator can predict the first ``lm_size`` ids and never MASK.

``Vocab.maestro()``: pitches 21..108, 308 events, 311 ids. ``Vocab.full()``: 0..127, 388 events,
391 ids.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

STEPS_PER_SECOND = 100
MAX_SHIFT_STEPS = 100
NUM_VELOCITY_BINS = 32
TOKEN_DTYPE = np.int16

# Kinds of ids, as stored in ``Vocab.kinds``.
SPECIAL, NOTE_ON, NOTE_OFF, TIME_SHIFT, VELOCITY = 0, 1, 2, 3, 4
_KIND_NAMES = {NOTE_ON: "NOTE_ON", NOTE_OFF: "NOTE_OFF", TIME_SHIFT: "TIME_SHIFT",
               VELOCITY: "VELOCITY"}
_SPECIALS = ("PAD", "EOS", "MASK")


def velocity_to_bin(velocity: int) -> int:
    """MIDI velocity 1..127 -> bin 1..32: ``(v - 1) // 4 + 1``.

    Velocity 0 is a note-off, never a bin."""
    if not 1 <= int(velocity) <= 127:
        raise ValueError(f"velocity must be in 1..127, got {velocity}")
    return (int(velocity) - 1) // 4 + 1


def bin_to_velocity(vbin: int) -> int:
    """Bin 1..32 -> the lowest MIDI velocity of the bin: ``1 + (bin - 1) * 4``."""
    if not 1 <= int(vbin) <= NUM_VELOCITY_BINS:
        raise ValueError(f"velocity bin must be in 1..{NUM_VELOCITY_BINS}, got {vbin}")
    return 1 + (int(vbin) - 1) * 4


@dataclass(frozen=True)
class Vocab:
    """Token ids <-> event names for one pitch range; see the module docstring for the layout.

    Build with ``Vocab.maestro()``, ``Vocab.full()`` or ``Vocab.by_name(name)``.
    ``preset`` is "maestro", "full" or a custom label. ``kinds[i]`` and ``values[i]`` give the
    kind (SPECIAL, NOTE_ON, ...) and value (pitch, steps, velocity bin; -1 for specials) of id
    ``i`` as arrays, for vectorised code.
    """

    preset: str
    min_pitch: int
    max_pitch: int
    kinds: np.ndarray = field(init=False, repr=False, compare=False)
    values: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self):
        if not 0 <= self.min_pitch <= self.max_pitch <= 127:
            raise ValueError(f"pitch range must satisfy 0 <= min_pitch <= max_pitch <= 127, "
                             f"got {self.min_pitch}..{self.max_pitch}")
        p = self.num_pitches
        kinds = np.concatenate([[SPECIAL, SPECIAL], np.full(p, NOTE_ON), np.full(p, NOTE_OFF),
                                np.full(MAX_SHIFT_STEPS, TIME_SHIFT),
                                np.full(NUM_VELOCITY_BINS, VELOCITY), [SPECIAL]]).astype(np.int8)
        pitches = np.arange(self.min_pitch, self.max_pitch + 1)
        values = np.concatenate([[-1, -1], pitches, pitches, np.arange(1, MAX_SHIFT_STEPS + 1),
                                 np.arange(1, NUM_VELOCITY_BINS + 1), [-1]]).astype(np.int16)
        kinds.flags.writeable = False
        values.flags.writeable = False
        object.__setattr__(self, "kinds", kinds)
        object.__setattr__(self, "values", values)

    # -- constructors -----------------------------------------------------------------------
    @classmethod
    def maestro(cls) -> "Vocab":
        """The piano range 21..108 used for MAESTRO: 308 events, 311 ids."""
        return cls("maestro", 21, 108)

    @classmethod
    def full(cls) -> "Vocab":
        """The whole MIDI range 0..127: 388 events, 391 ids."""
        return cls("full", 0, 127)

    @classmethod
    def by_name(cls, name: str) -> "Vocab":
        """``"maestro"`` or ``"full"``."""
        if name == "maestro":
            return cls.maestro()
        if name == "full":
            return cls.full()
        raise ValueError(f"vocab name must be 'maestro' or 'full', got {name!r}")

    # -- sizes and special ids ----------------------------------------------------------------
    @property
    def num_pitches(self) -> int:
        return self.max_pitch - self.min_pitch + 1

    @property
    def num_events(self) -> int:
        """NOTE_ON + NOTE_OFF + TIME_SHIFT + VELOCITY events (308 or 388)."""
        return 2 * self.num_pitches + MAX_SHIFT_STEPS + NUM_VELOCITY_BINS

    @property
    def size(self) -> int:
        """All ids, specials included (311 or 391)."""
        return self.num_events + 3

    @property
    def lm_size(self) -> int:
        """Ids a generator predicts: PAD, EOS and the events, MASK left out (310 or 390)."""
        return self.size - 1

    @property
    def token_seconds(self) -> np.ndarray:
        """Seconds of music each id advances, float64 [size]: TIME_SHIFT_n is n * 10 ms, every
        other id 0. Cumulative sums give a token sequence's time line."""
        return np.where(self.kinds == TIME_SHIFT, self.values, 0) / STEPS_PER_SECOND

    pad_id = 0
    eos_id = 1

    @property
    def mask_id(self) -> int:
        return self.size - 1

    @property
    def note_on_offset(self) -> int:
        return 2

    @property
    def note_off_offset(self) -> int:
        return 2 + self.num_pitches

    @property
    def time_shift_offset(self) -> int:
        """Id of TIME_SHIFT_1."""
        return 2 + 2 * self.num_pitches

    @property
    def velocity_offset(self) -> int:
        """Id of VELOCITY_1."""
        return self.time_shift_offset + MAX_SHIFT_STEPS

    # -- event -> id ----------------------------------------------------------------------------
    def in_range(self, pitch: int) -> bool:
        return self.min_pitch <= pitch <= self.max_pitch

    def _check_pitch(self, pitch: int) -> int:
        if not self.in_range(pitch):
            raise ValueError(f"pitch must be in {self.min_pitch}..{self.max_pitch} for the "
                             f"{self.preset!r} vocab, got {pitch}")
        return int(pitch)

    def note_on(self, pitch: int) -> int:
        return self.note_on_offset + self._check_pitch(pitch) - self.min_pitch

    def note_off(self, pitch: int) -> int:
        return self.note_off_offset + self._check_pitch(pitch) - self.min_pitch

    def time_shift(self, steps: int) -> int:
        """Id of TIME_SHIFT_<steps>, steps in 1..100 (10 ms each)."""
        if not 1 <= steps <= MAX_SHIFT_STEPS:
            raise ValueError(f"time shift steps must be in 1..{MAX_SHIFT_STEPS}, got {steps}")
        return self.time_shift_offset + int(steps) - 1

    def velocity(self, vbin: int) -> int:
        """Id of VELOCITY_<vbin>, vbin in 1..32 (see ``velocity_to_bin``)."""
        if not 1 <= vbin <= NUM_VELOCITY_BINS:
            raise ValueError(f"velocity bin must be in 1..{NUM_VELOCITY_BINS}, got {vbin}")
        return self.velocity_offset + int(vbin) - 1

    # -- names ------------------------------------------------------------------------------------
    def name(self, token: int) -> str:
        """"NOTE_ON_60", "TIME_SHIFT_10", "VELOCITY_5", "PAD", "EOS" or "MASK" for an id."""
        t = int(token)
        if not 0 <= t < self.size:
            raise ValueError(f"token id must be in 0..{self.size - 1} for the {self.preset!r} "
                             f"vocab, got {token}")
        kind = int(self.kinds[t])
        if kind == SPECIAL:
            return "MASK" if t == self.mask_id else _SPECIALS[t]
        return f"{_KIND_NAMES[kind]}_{int(self.values[t])}"

    def id(self, name: str) -> int:
        """The id of an event name such as "NOTE_ON_60"; KeyError for an unknown name,
        ValueError for a known kind with a value outside this vocab."""
        if name == "PAD":
            return self.pad_id
        if name == "EOS":
            return self.eos_id
        if name == "MASK":
            return self.mask_id
        kind, _, value = str(name).rpartition("_")
        makers = {"NOTE_ON": self.note_on, "NOTE_OFF": self.note_off,
                  "TIME_SHIFT": self.time_shift, "VELOCITY": self.velocity}
        if kind not in makers or not value.isdigit():
            raise KeyError(f"unknown event name {name!r}; expected PAD, EOS, MASK or "
                           f"NOTE_ON_<pitch>, NOTE_OFF_<pitch>, TIME_SHIFT_<1..100>, "
                           f"VELOCITY_<1..32>")
        return makers[kind](int(value))

    def names(self, tokens) -> list[str]:
        """Names of a sequence of ids, for debugging."""
        return [self.name(t) for t in np.asarray(tokens).reshape(-1)]

    def check_tokens(self, tokens, arg: str = "tokens") -> np.ndarray:
        """``tokens`` as a 1-D int array, ValueError naming ``arg`` when an id is out of range."""
        arr = np.asarray(tokens)
        if arr.ndim != 1:
            raise ValueError(f"{arg} must be 1-D, got shape {tuple(arr.shape)}")
        if arr.size and not np.issubdtype(arr.dtype, np.integer):
            raise TypeError(f"{arg} must hold integer ids, got dtype {arr.dtype}")
        if arr.size and (arr.min() < 0 or arr.max() >= self.size):
            bad = int(arr[(arr < 0) | (arr >= self.size)][0])
            raise ValueError(f"{arg} must hold ids in 0..{self.size - 1} for the {self.preset!r} "
                             f"vocab, got {bad}")
        return arr.astype(np.int64, copy=False)
