"""Notes <-> event tokens (Music Transformer performance encoding on a 10 ms grid).

Encoding rules (``encode``; ``quantize`` gives the notes exactly as they will decode):
- Times round to the nearest 10 ms step, measured from time 0 (leading silence is encoded).
  A note shorter than one step after rounding gets one step.
- Notes of one pitch never overlap in the event stream: a note still sounding when the same
  pitch starts again is cut at the new onset; of several notes of one pitch starting on the
  same step only the last (in input order) is kept.
- Within one step: all NOTE_OFFs (ascending pitch), then all NOTE_ONs (ascending pitch), each
  NOTE_ON preceded by a VELOCITY event when its bin differs from the current one (there is no
  current bin at the start, so the first NOTE_ON always has one).
- Gaps are TIME_SHIFT_100 repeated, then the remainder.
- Pitches outside the vocab: ``out_of_range="raise"`` (ValueError) or ``"drop"`` the note.

Decoding (``decode``) is lenient, for generated sequences: see its docstring.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tgan.data.notes import Note, Performance
from tgan.data.vocab import (MAX_SHIFT_STEPS, NOTE_OFF, NOTE_ON, STEPS_PER_SECOND,
                             TIME_SHIFT, TOKEN_DTYPE, VELOCITY, Vocab, bin_to_velocity)

# Velocity of NOTE_ONs that come before any VELOCITY event (a crop or a generated sequence).
DEFAULT_VELOCITY = 64
STEP = 1.0 / STEPS_PER_SECOND


def _notes_of(notes_or_performance) -> list[Note]:
    if isinstance(notes_or_performance, Performance):
        return notes_or_performance.notes
    return list(notes_or_performance)


def _steps(t: np.ndarray) -> np.ndarray:
    # Half steps round up (np.round and round() send 0.5 and 1.5 different ways).
    return np.floor(t * STEPS_PER_SECOND + 0.5).astype(np.int64)


def quantized_steps(notes_or_performance, vocab: Vocab, out_of_range: str = "raise"
                    ) -> tuple[np.ndarray, int]:
    """The notes after the encoding rules (rounding, one-step minimum, overlap cuts, range
    policy) as an int64 array [N, 5] of (start step, end step, pitch, velocity bin, input
    index), sorted by start step then input index; and the number of notes dropped."""
    if out_of_range not in ("raise", "drop"):
        raise ValueError(f"out_of_range must be 'raise' or 'drop', got {out_of_range!r}")
    notes = _notes_of(notes_or_performance)
    n = len(notes)
    pitch = np.fromiter((x.pitch for x in notes), np.int64, n)
    vel = np.fromiter((x.velocity for x in notes), np.int64, n)
    start = np.fromiter((x.start for x in notes), np.float64, n)
    end = np.fromiter((x.end for x in notes), np.float64, n)
    inside = (pitch >= vocab.min_pitch) & (pitch <= vocab.max_pitch)
    if out_of_range == "raise" and not inside.all():
        i = int(np.flatnonzero(~inside)[0])
        raise ValueError(f"note {i}: pitch must be in {vocab.min_pitch}..{vocab.max_pitch} for "
                         f"the {vocab.preset!r} vocab, got {pitch[i]} (pass "
                         f"out_of_range='drop' to drop such notes)")
    bad = inside & ((start < 0) | (end < start) | ~np.isfinite(end))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"note {i}: times must satisfy 0 <= start <= end, got "
                         f"start={start[i]}, end={end[i]}")
    bad = inside & ((vel < 1) | (vel > 127))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise ValueError(f"note {i}: velocity must be in 1..127, got {vel[i]}")
    idx = np.flatnonzero(inside)
    s = _steps(start[idx])
    e = np.maximum(_steps(end[idx]), s + 1)
    rows = np.stack([s, e, pitch[idx], (vel[idx] - 1) // 4 + 1, idx], axis=1)
    # Cut overlaps pitch by pitch: order by (pitch, start, index) and clip each end at the
    # next onset of the same pitch; a note clipped to nothing (same onset) is dropped.
    rows = rows[np.lexsort((rows[:, 4], rows[:, 0], rows[:, 2]))]
    if len(rows) > 1:
        nxt = rows[1:, 0]
        cut = (rows[1:, 2] == rows[:-1, 2]) & (nxt < rows[:-1, 1])
        rows[:-1, 1] = np.where(cut, nxt, rows[:-1, 1])
        rows = rows[rows[:, 1] > rows[:, 0]]
    rows = rows[np.lexsort((rows[:, 4], rows[:, 0]))]
    return rows, n - len(rows)


def quantize(notes_or_performance, vocab: Vocab, out_of_range: str = "raise") -> list[Note]:
    """The notes exactly as ``decode(encode(notes))`` returns them: times on the 10 ms grid,
    velocities at their bin's lowest value, overlaps cut (see the module docstring), track 0,
    sorted by start then pitch."""
    rows, _ = quantized_steps(notes_or_performance, vocab, out_of_range)
    rows = rows[np.lexsort((rows[:, 2], rows[:, 0]))]
    return [Note(p, bin_to_velocity(b), s * STEP, e * STEP, 0)
            for s, e, p, b, _ in rows.tolist()]


def encode(notes_or_performance, vocab: Vocab, out_of_range: str = "raise",
           eos: bool = False) -> np.ndarray:
    """Encode notes (or a Performance) to token ids, following the module docstring's rules.

    Args:
        notes_or_performance: ``Note`` objects (any order) or a ``Performance``.
        vocab: the vocabulary.
        out_of_range: ``"raise"`` (ValueError naming the note) or ``"drop"`` for pitches
            outside the vocab's range.
        eos: append EOS.

    Returns:
        1-D array of ids, dtype int16.
    """
    rows, _ = quantized_steps(notes_or_performance, vocab, out_of_range)
    m = len(rows)
    # Events: onsets and offsets; ordered by step, then offs (0) before ons (1), then pitch.
    step = np.concatenate([rows[:, 1], rows[:, 0]])
    is_on = np.concatenate([np.zeros(m, np.int64), np.ones(m, np.int64)])
    pitch = np.concatenate([rows[:, 2], rows[:, 2]])
    vbin = np.concatenate([np.zeros(m, np.int64), rows[:, 3]])
    order = np.lexsort((pitch, is_on, step))
    step, is_on, pitch, vbin = step[order], is_on[order], pitch[order], vbin[order]
    event_id = np.where(is_on == 1, vocab.note_on_offset, vocab.note_off_offset) \
        + pitch - vocab.min_pitch
    # A VELOCITY before a NOTE_ON whose bin differs from the previous NOTE_ON's (or the first).
    ons = np.flatnonzero(is_on)
    need_vel = np.zeros(len(step), bool)
    if len(ons):
        on_bins = vbin[ons]
        need_vel[ons] = np.concatenate([[True], on_bins[1:] != on_bins[:-1]])
    # Gaps: gap // 100 TIME_SHIFT_100s, then TIME_SHIFT_<gap % 100> if non-zero.
    gap = np.diff(step, prepend=0)
    n_shift = gap // MAX_SHIFT_STEPS + (gap % MAX_SHIFT_STEPS > 0)
    per_event = n_shift + need_vel + 1
    pos = np.cumsum(per_event) - 1               # where each event's own token goes
    first = pos + 1 - per_event                  # its first (shift) token
    out = np.full(int(per_event.sum()) + int(eos), vocab.time_shift(MAX_SHIFT_STEPS),
                  dtype=np.int64)
    rem = gap % MAX_SHIFT_STEPS
    has_rem = rem > 0
    out[(first + n_shift - 1)[has_rem]] = vocab.time_shift_offset + rem[has_rem] - 1
    out[(pos - 1)[need_vel]] = vocab.velocity_offset + vbin[need_vel] - 1
    out[pos] = event_id
    if eos:
        out[-1] = vocab.eos_id
    return out.astype(TOKEN_DTYPE)


@dataclass
class DecodeStats:
    """What ``decode`` had to repair or skip."""

    n_tokens: int = 0          # tokens read (up to and including EOS)
    n_notes: int = 0           # notes returned
    orphan_note_offs: int = 0  # NOTE_OFF for a pitch not sounding: ignored
    restruck: int = 0          # NOTE_ON for a pitch already sounding: the old note closed first
    unclosed: int = 0          # notes never closed: ended by max_note_duration or sequence end
    zero_length: int = 0       # notes that would last 0 steps: dropped
    pad: int = 0               # PAD tokens skipped
    mask: int = 0              # MASK tokens skipped
    eos: bool = False          # an EOS stopped decoding
    after_eos: int = 0         # tokens after the EOS, ignored

    @property
    def repaired(self) -> int:
        """Grammar faults repaired: orphan NOTE_OFFs, re-strikes, unclosed and empty notes."""
        return self.orphan_note_offs + self.restruck + self.unclosed + self.zero_length


def decode(tokens, vocab: Vocab, max_note_duration: float | None = 3.0, cut_at_end: bool = False
           ) -> tuple[list[Note], DecodeStats]:
    """Decode token ids to notes, leniently.

    - TIME_SHIFT advances time, VELOCITY sets the velocity of later NOTE_ONs (64 before any).
    - NOTE_OFF for a pitch not sounding is ignored; NOTE_ON for a pitch sounding closes the
      sounding note at this time first. Notes that would last 0 steps are dropped.
    - A note whose NOTE_OFF never comes ends ``max_note_duration`` seconds after its start
      (3 s, as in the released code); with ``max_note_duration=None`` it ends at the time of the
      last token instead (dropped if that is its start). Notes closed by a NOTE_OFF are never
      capped, so any encoded note decodes to its full length. ``cut_at_end``: such a note ends
      no later than the last token's time either (at least one step after its start), so a
      sample's music ends where its tokens do.
    - PAD and MASK are skipped; EOS stops decoding. All of this is counted in ``DecodeStats``.

    Args:
        tokens: 1-D ids (list, numpy array or tensor); ids outside the vocab raise ValueError.

    Returns:
        (notes sorted by start, ties in NOTE_ON order, track 0; stats)
    """
    if hasattr(tokens, "detach"):  # a torch tensor, without importing torch here
        tokens = tokens.detach().cpu().numpy()
    ids = vocab.check_tokens(tokens)
    kinds, values = vocab.kinds[ids].tolist(), vocab.values[ids].tolist()
    stats = DecodeStats()
    now, velocity, order = 0, DEFAULT_VELOCITY, 0
    sounding: dict[int, tuple[int, int, int]] = {}  # pitch -> (start step, order, velocity)
    done: list[tuple[int, int, int, int, int]] = []  # (start, order, pitch, velocity, end)
    restruck = orphans = zero = pad = mask = 0
    n = len(kinds)
    for i in range(n):
        kind, value = kinds[i], values[i]
        if kind == TIME_SHIFT:
            now += value
        elif kind == NOTE_ON:
            old = sounding.get(value)
            if old is not None:
                restruck += 1
                if now > old[0]:
                    done.append((old[0], old[1], value, old[2], now))
                else:
                    zero += 1
            sounding[value] = (now, order, velocity)
            order += 1
        elif kind == NOTE_OFF:
            old = sounding.pop(value, None)
            if old is None:
                orphans += 1
            elif now > old[0]:
                done.append((old[0], old[1], value, old[2], now))
            else:
                zero += 1
        elif kind == VELOCITY:
            velocity = 1 + (value - 1) * 4  # bin_to_velocity, inlined: this loop is hot
        else:
            t = int(ids[i])
            if t == vocab.eos_id:
                stats.eos = True
                stats.after_eos = n - i - 1
                n = i + 1
                break
            if t == vocab.mask_id:
                mask += 1
            else:
                pad += 1
    cap = None if max_note_duration is None else int(round(max_note_duration * STEPS_PER_SECOND))
    for pitch, (start, o, vel) in sounding.items():
        stats.unclosed += 1
        end = now if cap is None else start + cap
        if cut_at_end and cap is not None:
            end = min(end, max(now, start + 1))
        if end > start:
            done.append((start, o, pitch, vel, end))
        else:
            zero += 1
    done.sort()
    notes = [Note(p, v, s * STEP, e * STEP, 0) for s, _, p, v, e in done]
    stats.n_tokens = n
    stats.restruck, stats.orphan_note_offs, stats.zero_length = restruck, orphans, zero
    stats.pad, stats.mask = pad, mask
    stats.n_notes = len(notes)
    return notes, stats


def tokens_to_midi(tokens, vocab: Vocab, path, max_note_duration: float | None = 3.0,
                   **write_kwargs) -> DecodeStats:
    """Decode ``tokens`` (see ``decode``) and write them to a MIDI file (see ``write_midi``,
    whose keyword arguments pass through). Returns the decoding stats."""
    from tgan.data.midi import write_midi

    notes, stats = decode(tokens, vocab, max_note_duration=max_note_duration)
    write_midi(notes, path, **write_kwargs)
    return stats
