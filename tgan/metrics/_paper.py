"""The paper convention: pypianoroll 0.5.3 and mgeval as the published Table 1 used them.

Everything here reproduces library behaviour, quirks included; each quirk is named where it is
implemented. Inputs are the note arrays of a Performance (see ``notes_stats._arrays``); the
Performance stands for the MIDI file the libraries would have read.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tgan.data.notes import Performance
from tgan.metrics._grid import tempo_beats, tempo_changes

NAN = math.nan
# pypianoroll's major-scale mask rolled by its default key 3 is C major by pitch class; here the
# mask indexes the 10-pitch groups of its chroma (see _folded_roll).
C_MAJOR_GROUPS = np.zeros(12, dtype=bool)
C_MAJOR_GROUPS[[0, 2, 4, 5, 7, 9, 11]] = True


@dataclass
class PaperRoll:
    """The merged, binarised piano roll pypianoroll builds from a MIDI file."""

    roll: np.ndarray  # [128, T] bool, pitch-major (T = resolution * n_beats)
    n_beats: int
    resolution: int


def _drawable(a: dict[str, np.ndarray]) -> np.ndarray:
    """Notes pretty_midi would have created: positive length and velocity (it makes no others)."""
    return (a["end"] > a["start"]) & (a["velocity"] > 0)


def _steps(times: np.ndarray, beats: np.ndarray, beats_ext: np.ndarray, res: int) -> np.ndarray:
    """Fractional step positions, with pypianoroll's index arithmetic.

    The beat index is ``searchsorted(beats, t) - 1`` (side 'left'), so a time exactly on beat k is
    placed at the end of beat k-1 with ratio 1; a time on the first beat gets index -1, which wraps
    to the last beat and still lands on step 0. The index wrap is kept as numpy does it.
    """
    idx = np.searchsorted(beats, times) - 1
    if len(beats) == 1:
        idx = np.maximum(idx, 0)  # pypianoroll cannot build a one-beat roll; avoid 0 / 0
    base = beats[idx]
    ratio = (times - base) / (beats_ext[idx + 1] - base)
    return (idx + ratio) * res


def paper_roll(perf: Performance, a: dict[str, np.ndarray], resolution: int = 24,
               first_beat_time: float = 0.0) -> PaperRoll | None:
    """pypianoroll 0.5.3 ``Multitrack(path)`` -> merged -> binarised, from the note arrays ``a``.

    Beats: pretty_midi ``get_beats(first_beat_time)`` up to the file's end time (here the last note
    end or tempo change; pretty_midi also counts control changes and meta events, which a
    Performance does not keep). pypianoroll puts the first beat at the first time signature, which
    is time 0 in MAESTRO files, hence the default. T = resolution * n_beats steps; one beat past
    the last is extrapolated as ``2 * b[-1] - b[-2]`` (not from the tempo map).
    Notes ending at or before ``first_beat_time`` are dropped. Onset step = ``round`` (half to
    even) of the fractional position, offset step = truncation. Each track (pretty_midi
    instrument) is drawn note by note in pretty_midi's note order, which is note-off order; two
    order-dependent quirks act between notes of the same pitch: a note whose onset step follows
    an active step clears that step, and a note whose offset step is already active ends one step
    earlier. Cells [onset, offset) are set, so a note shorter than a step can vanish. Tracks are
    then merged with logical or. Returns None when there is no beat (pypianoroll raises there).
    """
    keep = _drawable(a) & (a["end"] > first_beat_time)
    if not keep.any():
        return None
    change_times, _ = tempo_changes(perf)
    end_time = max(float(a["end"][_drawable(a)].max()), float(change_times.max()))
    beats = tempo_beats(perf, end_time, first_beat_time)
    n_beats = len(beats)
    if n_beats == 0:
        return None
    if n_beats > 1:
        one_more = 2 * beats[-1] - beats[-2]
    else:  # pypianoroll raises here; extrapolate with the tempo at the only beat instead
        times, qpm = tempo_changes(perf)
        one_more = beats[0] + 60.0 / qpm[np.searchsorted(times, beats[0], side="right") - 1]
    beats_ext = np.append(beats, one_more)
    n_steps = resolution * n_beats

    pitch, start, end, track = (a[k][keep] for k in ("pitch", "start", "end", "track"))
    on = np.round(_steps(start, beats, beats_ext, resolution)).astype(np.int64)
    off = _steps(end, beats, beats_ext, resolution).astype(np.int64)
    # pretty_midi appends a note when its note-off arrives, so within one pitch of one instrument
    # notes come in order of end time (one note-off closing several note-ons closes them in onset
    # order). Only same-pitch order matters for the quirks, so this order is exact.
    order = np.lexsort((start, end, pitch, track))
    merged = np.zeros((128, n_steps), dtype=bool)
    rows = np.zeros((128, n_steps), dtype=bool)
    cur_track = None
    for t, p, s, e in zip(track[order].tolist(), pitch[order].tolist(), on[order].tolist(),
                          off[order].tolist()):
        if t != cur_track:
            if cur_track is not None:
                merged |= rows
                rows[:] = False
            cur_track = t
        row = rows[p]
        if 0 < s < n_steps and row[s - 1]:
            row[s - 1] = False
        if e < n_steps - 1 and row[e]:
            e -= 1
        row[s:e] = True
    merged |= rows
    return PaperRoll(merged, n_beats, resolution)


def _folded(roll: np.ndarray) -> np.ndarray:
    """The roll as pypianoroll's ``_to_chroma`` leaves it: pitch 120 + k or-ed into 10 g + k.

    ``_to_chroma`` adds pitches 120..127 in place into position k < 8 of EVERY 10-pitch group g
    (a broadcast), mutating the caller's roll; ``in_scale_rate`` then counts the mutated roll.
    Piano music never reaches pitch 120, so this only matters for completeness.
    """
    if not roll[120:].any():
        return roll
    out = roll.copy()
    low = out[:120].reshape(12, 10, -1)  # [group, position, T]
    low[:, :8] |= roll[120:][None]
    return out


def pcu(pr: PaperRoll) -> float:
    """Groups of 10 CONSECUTIVE pitches (0-9, 10-19, ..., 110-119) with an active cell."""
    chroma = _folded(pr.roll)[:120].reshape(12, 10, -1)
    return float(np.count_nonzero(chroma.any(axis=(1, 2))))


def npu(pr: PaperRoll) -> float:
    """Pitches with at least one active cell."""
    return float(np.count_nonzero(pr.roll.any(axis=1)))


def ebr(pr: PaperRoll) -> float:
    """pypianoroll's ``empty_beat_rate``: the fraction of beats with an active cell (NOT empty)."""
    beats = pr.roll.any(axis=0).reshape(pr.n_beats, pr.resolution)
    return float(np.count_nonzero(beats.any(axis=1)) / pr.n_beats)


def isr(pr: PaperRoll) -> float:
    """Active cells whose 10-pitch group g is in {0,2,4,5,7,9,11}, over all active cells."""
    folded = _folded(pr.roll)
    per_group = folded[:120].reshape(12, -1).sum(axis=1)
    total = np.count_nonzero(folded)
    return float(per_group[C_MAJOR_GROUPS].sum() / total) if total else NAN


def prs(pr: PaperRoll, threshold: int) -> float:
    """Steps with MORE than ``threshold`` active pitches, over all T steps."""
    counts = pr.roll.sum(axis=0)
    return float(np.count_nonzero(counts > threshold) / counts.shape[0])


def first_instrument_pitches(a: dict[str, np.ndarray], fs: float) -> np.ndarray | None:
    """Distinct pitches in pretty_midi's ``instruments[0].get_piano_roll(fs)``; None without notes.

    pretty_midi creates instruments per (program, channel, track) in order of appearance, tracks
    in file order, so ``instruments[0]`` is the first track with a note; a Performance keeps the
    track but not the channel or program, so all notes of the lowest track index with notes
    stand for it (exact for MAESTRO: one piano on one channel in track 1). A note fills columns
    ``int(start * fs)`` to ``int(end * fs)`` (exclusive), so one shorter than a column may vanish.
    The sustain-pedal pass of ``get_piano_roll`` only extends active cells and so cannot change
    the set of pitches; pitch bends (none in piano MIDI) are not modelled.
    """
    ok = _drawable(a)
    if not ok.any():
        return None
    first = a["track"][ok].min()
    sel = ok & (a["track"] == first)
    cols_on = (a["start"][sel] * fs).astype(np.int64)
    cols_off = (a["end"][sel] * fs).astype(np.int64)
    return np.unique(a["pitch"][sel][cols_off > cols_on])


def tup(pitches: np.ndarray | None) -> float:
    """mgeval ``total_used_pitch``: number of pitches present in the first instrument's roll."""
    return NAN if pitches is None else float(len(pitches))


def pr(pitches: np.ndarray | None) -> float:
    """mgeval ``pitch_range``: highest minus lowest pitch present (NaN when none is present)."""
    return NAN if pitches is None or len(pitches) == 0 else float(pitches[-1] - pitches[0])


def aps(a: dict[str, np.ndarray], track: int | None) -> float:
    """mgeval ``avg_pitch_shift``: mean |p[i+1] - p[i]| over the note-ons of MIDI track ``track``.

    mgeval reads track 1 (``pattern[1]``); None picks the lowest track index with notes, the
    same track for MAESTRO files and usable for in-memory notes that all sit in track 0.
    Note-ons with velocity > 0 in file order, chords included (a chord contributes the intervals
    between its own notes in the order they are written). A Performance keeps ties in NOTE_ON
    order, so its note order restricted to one track is the file order. Fewer than two notes: NaN.
    """
    on = a["velocity"] > 0
    if track is None:
        if not on.any():
            return NAN
        track = int(a["track"][on].min())
    sel = (a["track"] == track) & on
    p = a["pitch"][sel]
    return float(np.abs(np.diff(p)).mean()) if len(p) > 1 else NAN


def ioi(a: dict[str, np.ndarray]) -> float:
    """mgeval ``avg_IOI``: mean of diff(sorted note starts) over all instruments.

    Simultaneous onsets each count, contributing intervals of 0. Fewer than two notes: NaN.
    """
    starts = np.sort(a["start"][_drawable(a)])
    return float(np.diff(starts).mean()) if len(starts) > 1 else NAN
