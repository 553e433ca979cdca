"""The correct convention: the statistics as their names define them, in continuous time.

Time-based statistics (EBR, ISR, PRS) are measured exactly on note intervals rather than on a
sampled roll, so they have no step resolution to choose. A pitch sounds on the union of its notes'
intervals [start, end): two overlapping notes of one pitch count once, as they do on a keyboard.
Inputs are the note arrays of a Performance (see ``notes_stats._arrays``).
"""
from __future__ import annotations

import math

import numpy as np

NAN = math.nan


def pcu(a: dict[str, np.ndarray]) -> float:
    """Distinct pitch classes (pitch % 12)."""
    return float(len(np.unique(a["pitch"] % 12)))


def npu(a: dict[str, np.ndarray]) -> float:
    """Distinct pitches."""
    return float(len(np.unique(a["pitch"])))


def pr(a: dict[str, np.ndarray]) -> float:
    """Highest minus lowest pitch."""
    return float(a["pitch"].max() - a["pitch"].min())


def ebr(a: dict[str, np.ndarray], beats: np.ndarray) -> float:
    """Fraction of beats [b_k, b_k+1) in which no note sounds; NaN without beats.

    A note occupies the beats from the one holding its onset to the one holding the instant just
    before its end; a zero-length note occupies the beat holding its onset.
    """
    n = len(beats)
    if n == 0:
        return NAN
    first = np.searchsorted(beats, a["start"], side="right") - 1
    last = np.maximum(np.searchsorted(beats, a["end"], side="left") - 1, first)
    cover = np.zeros(n + 1, dtype=np.int64)  # difference array over beat indices
    np.add.at(cover, first, 1)
    np.add.at(cover, last + 1, -1)
    occupied = np.cumsum(cover[:n]) > 0
    return float(np.count_nonzero(~occupied) / n)


def _pitch_unions(a: dict[str, np.ndarray]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(pitch, start, end) of the disjoint intervals in which each pitch sounds."""
    order = np.lexsort((a["start"], a["pitch"]))
    pitch, start, end = a["pitch"][order], a["start"][order], a["end"][order]
    cuts = np.flatnonzero(np.diff(pitch)) + 1
    out_p, out_s, out_e = [], [], []
    # One vectorised pass per distinct pitch (at most 128), so running maxima never cross pitches.
    for p, s, e in zip(np.split(pitch, cuts), np.split(start, cuts), np.split(end, cuts)):
        reach = np.maximum.accumulate(e)
        new = np.ones(len(s), dtype=bool)
        new[1:] = s[1:] > reach[:-1]
        heads = np.flatnonzero(new)
        tails = np.append(heads[1:] - 1, len(s) - 1)
        out_p.append(p[heads])
        out_s.append(s[heads])
        out_e.append(reach[tails])
    return np.concatenate(out_p), np.concatenate(out_s), np.concatenate(out_e)


def isr(a: dict[str, np.ndarray], scale: np.ndarray) -> float:
    """Sounding time of pitches whose class is in ``scale`` over the sounding time of all pitches.

    Time is summed per pitch (a three-note chord held 1 s counts 3 s), which is the continuous-time
    version of counting active piano-roll cells. NaN when no note has positive length.
    """
    p, s, e = _pitch_unions(a)
    length = e - s
    total = length.sum()
    if total <= 0:
        return NAN
    in_scale = np.isin(p % 12, scale)
    return float(length[in_scale].sum() / total)


def prs(a: dict[str, np.ndarray], min_pitches: int, duration: float) -> float:
    """Fraction of the time [0, duration) during which at least ``min_pitches`` pitches sound.

    Silence counts in the denominator (the span is the same as for EBR: from time 0 to the end
    of the last note). NaN when the duration is 0.
    """
    if duration <= 0:
        return NAN
    _, s, e = _pitch_unions(a)
    times = np.concatenate([s, e])
    steps = np.concatenate([np.ones(len(s), np.int64), -np.ones(len(e), np.int64)])
    order = np.argsort(times, kind="stable")
    times, count = times[order], np.cumsum(steps[order])
    # count[i] pitches sound on [times[i], times[i+1]); ties give zero-width pieces.
    widths = np.diff(times)
    return float(widths[count[:-1] >= min_pitches].sum() / duration)


def _onset_groups(a: dict[str, np.ndarray], chord_tol: float) -> tuple[np.ndarray, np.ndarray]:
    """(first onset time, mean pitch) of each chord, in onset order.

    Sorted onsets form one chord while each is at most ``chord_tol`` s after the previous one.
    """
    order = np.argsort(a["start"], kind="stable")
    start, pitch = a["start"][order], a["pitch"][order].astype(np.float64)
    new = np.ones(len(start), dtype=bool)
    new[1:] = np.diff(start) > chord_tol
    heads = np.flatnonzero(new)
    sizes = np.diff(np.append(heads, len(start)))
    return start[heads], np.add.reduceat(pitch, heads) / sizes


def aps(a: dict[str, np.ndarray], chord_tol: float) -> float:
    """Mean |difference| between the mean pitches of consecutive chords (onset groups).

    A single note is a chord of one; NaN with fewer than two chords.
    """
    _, pitch = _onset_groups(a, chord_tol)
    return float(np.abs(np.diff(pitch)).mean()) if len(pitch) > 1 else NAN


def ioi(a: dict[str, np.ndarray], chord_tol: float) -> float:
    """Mean time (s) between consecutive chords (onset groups); NaN with fewer than two."""
    onset, _ = _onset_groups(a, chord_tol)
    return float(np.diff(onset).mean()) if len(onset) > 1 else NAN
