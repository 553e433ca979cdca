"""Training-set augmentation: transposition by -3..+3 semitones x time-stretch by
{0.95, 0.975, 1.0, 1.025, 1.05}; a combination that pushes a note out of the vocab's pitch range
is dropped (35 combinations at most).

Two equivalent routes:
- on notes, before encoding: ``augment_variants``, ``random_augment``;
- on tokens, for the cached training crops: ``transpose_tokens`` (an id remap) and
  ``stretch_tokens`` (TIME_SHIFT runs rescaled). ``encode(transpose(notes))`` equals
  ``transpose_tokens(encode(notes))`` exactly; ``stretch_tokens(encode(notes), f)`` equals
  ``encode(stretch(quantize(notes), f))`` whenever no two event steps fall on one step after
  stretching, always the case for f >= 1. For f < 1 two neighbouring steps can round to one step;
  there the later one is pushed one step on, which keeps the event order and every note at least
  one step long (``encode`` would reorder the events of the merged step instead).
"""
from __future__ import annotations

import math

import numpy as np

from tgan.data.events import STEP
from tgan.data.notes import Note, Performance
from tgan.data.vocab import (MAX_SHIFT_STEPS, NOTE_OFF, NOTE_ON, STEPS_PER_SECOND, TIME_SHIFT,
                             TOKEN_DTYPE, Vocab)

TRANSPOSITIONS = tuple(range(-3, 4))
STRETCHES = (0.95, 0.975, 1.0, 1.025, 1.05)


def _notes_of(notes) -> list[Note]:
    return notes.notes if isinstance(notes, Performance) else list(notes)


def transpose_notes(notes, shift: int) -> list[Note]:
    """Every pitch moved by ``shift`` semitones (no range check)."""
    return [Note(n.pitch + shift, n.velocity, n.start, n.end, n.track) for n in _notes_of(notes)]


def stretch_notes(notes, stretch: float) -> list[Note]:
    """Every time multiplied by ``stretch`` (> 1 is slower)."""
    if not stretch > 0:
        raise ValueError(f"stretch must be positive, got {stretch}")
    return [Note(n.pitch, n.velocity, n.start * stretch, n.end * stretch, n.track)
            for n in _notes_of(notes)]


def valid_shifts(min_pitch: int | None, max_pitch: int | None, vocab: Vocab) -> list[int]:
    """The transpositions in -3..+3 that keep pitches ``min_pitch..max_pitch`` inside the vocab
    (all of them when there are no pitches, i.e. ``min_pitch`` is None)."""
    if min_pitch is None:
        return list(TRANSPOSITIONS)
    return [s for s in TRANSPOSITIONS
            if vocab.in_range(min_pitch + s) and vocab.in_range(max_pitch + s)]


def augment_variants(notes, vocab: Vocab) -> list[tuple[int, float, list[Note]]]:
    """All (shift, stretch, notes) combinations whose notes stay in the vocab's pitch range,
    shift-major in increasing order; (0, 1.0) is among them when the input is in range."""
    notes = _notes_of(notes)
    pitches = [n.pitch for n in notes]
    lo, hi = (min(pitches), max(pitches)) if pitches else (None, None)
    out = []
    for shift in valid_shifts(lo, hi, vocab):
        moved = transpose_notes(notes, shift)
        for stretch in STRETCHES:
            out.append((shift, stretch, stretch_notes(moved, stretch)))
    return out


def random_augment(notes, vocab: Vocab, rng: np.random.Generator
                   ) -> tuple[int, float, list[Note]]:
    """One combination drawn uniformly among the valid ones: (shift, stretch, notes).

    Raises:
        ValueError: no combination keeps the notes in range (they are out of range already).
    """
    notes = _notes_of(notes)
    pitches = [n.pitch for n in notes]
    shifts = valid_shifts(min(pitches), max(pitches), vocab) if pitches else list(TRANSPOSITIONS)
    if not shifts:
        raise ValueError(f"notes span pitches {min(pitches)}..{max(pitches)}, outside the "
                         f"{vocab.preset!r} vocab range {vocab.min_pitch}..{vocab.max_pitch}")
    shift = int(shifts[rng.integers(len(shifts))])
    stretch = float(STRETCHES[rng.integers(len(STRETCHES))])
    return shift, stretch, stretch_notes(transpose_notes(notes, shift), stretch)


def token_pitch_range(tokens, vocab: Vocab) -> tuple[int, int] | tuple[None, None]:
    """Lowest and highest pitch named by NOTE_ON/NOTE_OFF tokens, (None, None) without any."""
    ids = vocab.check_tokens(tokens)
    kinds = vocab.kinds[ids]
    pitches = vocab.values[ids][(kinds == NOTE_ON) | (kinds == NOTE_OFF)]
    if pitches.size == 0:
        return None, None
    return int(pitches.min()), int(pitches.max())


def transpose_tokens(tokens, vocab: Vocab, shift: int) -> np.ndarray | None:
    """NOTE_ON/NOTE_OFF ids moved by ``shift`` semitones; None when a pitch would leave the
    vocab's range. Other ids are unchanged."""
    ids = vocab.check_tokens(tokens)
    kinds = vocab.kinds[ids]
    is_note = (kinds == NOTE_ON) | (kinds == NOTE_OFF)
    if is_note.any():
        pitches = vocab.values[ids][is_note]
        if pitches.min() + shift < vocab.min_pitch or pitches.max() + shift > vocab.max_pitch:
            return None
    out = ids.copy()
    out[is_note] += shift  # within the NOTE_ON (or NOTE_OFF) block, ids follow pitch
    return out.astype(TOKEN_DTYPE)


def _new_step(steps: np.ndarray, stretch: float) -> np.ndarray:
    # The same float operations as encode(stretch_notes(decode(tokens))): step * STEP is the
    # decoded time, times stretch, then rounded half up to the grid.
    return np.floor(steps * STEP * stretch * STEPS_PER_SECOND + 0.5).astype(np.int64)


def stretch_tokens(tokens, vocab: Vocab, stretch: float) -> np.ndarray:
    """Time-stretch a token sequence by rescaling its TIME_SHIFT runs (see the module docstring).

    Times are measured from the start of ``tokens``, so a crop can be stretched on its own. Every
    other token keeps its order; a trailing TIME_SHIFT run is rescaled too.
    """
    if not stretch > 0:
        raise ValueError(f"stretch must be positive, got {stretch}")
    ids = vocab.check_tokens(tokens)
    kinds = vocab.kinds[ids]
    is_shift = kinds == TIME_SHIFT
    if stretch == 1.0 or not is_shift.any():
        return ids.astype(TOKEN_DTYPE)
    steps = np.where(is_shift, vocab.values[ids], 0).astype(np.int64)
    time_before = np.cumsum(steps) - steps  # time at which each token happens
    events = np.flatnonzero(~is_shift)
    # Group boundaries: an event whose time differs from the previous event's time.
    ev_time = time_before[events]
    new_time = _new_step(ev_time, stretch)
    # Keep distinct steps distinct (only needed for stretch < 1): running max of (t - rank).
    if stretch < 1 and events.size:
        first = np.ones(events.size, dtype=bool)
        first[1:] = ev_time[1:] != ev_time[:-1]
        rank = np.cumsum(first) - 1  # group index of each event
        group_t = new_time[first]
        group_t = np.maximum.accumulate(group_t - np.arange(group_t.size)) + np.arange(group_t.size)
        new_time = group_t[rank]
    end_old = int(steps.sum())
    end_new = int(_new_step(np.array([end_old]), stretch)[0])
    if events.size:
        last_old, last_new = int(ev_time[-1]), int(new_time[-1])
        end_new = max(end_new, last_new + (1 if end_old > last_old else 0))
    out: list[int] = []
    shift0 = vocab.time_shift_offset
    now = 0

    def advance(to: int):
        gap = to - now
        while gap > 0:
            k = min(gap, MAX_SHIFT_STEPS)
            out.append(shift0 + k - 1)
            gap -= k

    for idx, t in zip(events.tolist(), new_time.tolist()):
        if t != now:
            advance(t)
            now = t
        out.append(int(ids[idx]))
    advance(end_new)
    return np.asarray(out, dtype=TOKEN_DTYPE)


def stretched_length_bound(length: int) -> int:
    """A window of this many tokens, stretched by any factor in STRETCHES, usually gives at
    least ``length`` tokens (callers still extend the window when it does not)."""
    return length + int(math.ceil(length * 0.1)) + 8
