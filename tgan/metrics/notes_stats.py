"""The nine note statistics of Table 1, in two conventions, plus clipping and averaging helpers.

``convention="correct"`` (default) computes what the names say; ``convention="paper"`` reproduces
pypianoroll 0.5.3 (PCU, NPU, EBR, ISR, PRS) and mgeval (TUP, PR, APS, IOI) as the published numbers
were computed, quirks included. The exact definitions are in the docstrings below and in
``tgan.metrics`` (package docstring). A performance without notes gives NaN for every statistic.
"""
from __future__ import annotations

import logging
import math
from dataclasses import replace
from typing import Any, Iterable, Mapping

import numpy as np

from tgan.data.notes import Performance
from tgan.metrics import _correct, _paper
from tgan.metrics._grid import file_times, fixed_beats, tempo_beats

logger = logging.getLogger(__name__)

CONVENTIONS = ("correct", "paper")
STATISTICS = ("PCU", "NPU", "EBR", "ISR", "PRS", "TUP", "PR", "APS", "IOI")
C_MAJOR = (0, 2, 4, 5, 7, 9, 11)

# Options of each convention and their defaults; None means "the convention's default" in the
# public signatures, and an option of the other convention is refused rather than ignored.
DEFAULTS: dict[str, dict[str, Any]] = {
    "correct": {
        "beat": None,  # None: quarter notes of the tempo map; a float: a fixed beat of that many s
        "scale": C_MAJOR,  # pitch classes counted as in scale by ISR
        "min_pitches": 4,  # PRS counts time with at least this many pitches sounding
        "chord_tol": 0.0,  # onsets at most this far apart (s) form one chord for APS and IOI
    },
    "paper": {
        "resolution": 24,  # piano-roll steps per beat (pypianoroll's default)
        "first_beat_time": 0.0,  # pypianoroll's first beat: the first time signature (0 in MAESTRO)
        "threshold": 4,  # PRS counts steps with MORE than this many pitches (pypianoroll: 2)
        "fs": 100.0,  # columns per second of mgeval's pretty_midi roll (TUP, PR)
        "track": None,  # MIDI track whose note-ons APS reads; None: the first track with notes
    },
}


def _options(convention: str, given: Mapping[str, Any]) -> dict[str, Any]:
    if convention not in CONVENTIONS:
        raise ValueError(f"convention must be one of {CONVENTIONS}, got {convention!r}")
    opts = dict(DEFAULTS[convention])
    for name, value in given.items():
        if value is None:
            continue
        if name not in opts:
            other = [c for c in CONVENTIONS if name in DEFAULTS[c]]
            if other:
                raise ValueError(f"{name} is an option of convention={other[0]!r}, "
                                 f"not of convention={convention!r}")
            raise TypeError(f"unknown option {name!r}; options of convention={convention!r}: "
                            f"{sorted(opts)}")
        opts[name] = value
    _check(opts)
    return opts


def _check(o: Mapping[str, Any]) -> None:
    def bad(name: str, expected: str) -> ValueError:
        return ValueError(f"{name} must be {expected}, got {o[name]!r}")

    if "beat" in o and o["beat"] is not None and not (isinstance(o["beat"], (int, float))
                                                      and o["beat"] > 0):
        raise bad("beat", "None (tempo map) or a positive number of seconds")
    if "scale" in o and not all(isinstance(c, (int, np.integer)) and 0 <= c < 12
                                for c in o["scale"]):
        raise bad("scale", "pitch classes in 0..11")
    if "min_pitches" in o and not (isinstance(o["min_pitches"], int) and o["min_pitches"] >= 1):
        raise bad("min_pitches", "an int >= 1")
    if "chord_tol" in o and not o["chord_tol"] >= 0:
        raise bad("chord_tol", "a number of seconds >= 0")
    if "resolution" in o and not (isinstance(o["resolution"], int) and o["resolution"] >= 1):
        raise bad("resolution", "an int >= 1")
    if "first_beat_time" in o and not o["first_beat_time"] >= 0:
        raise bad("first_beat_time", "a time >= 0 s")
    if "threshold" in o and not (isinstance(o["threshold"], int) and o["threshold"] >= 0):
        raise bad("threshold", "an int >= 0")
    if "fs" in o and not o["fs"] > 0:
        raise bad("fs", "a positive number of columns per second")
    if "track" in o and o["track"] is not None and not (isinstance(o["track"], int)
                                                        and o["track"] >= 0):
        raise bad("track", "None or a track index >= 0")


def _arrays(perf: Performance) -> dict[str, np.ndarray]:
    """Column arrays of the notes, in the Performance's order (by start, ties in NOTE_ON order)."""
    notes = perf.notes
    return {
        "pitch": np.fromiter((n.pitch for n in notes), np.int64, len(notes)),
        "velocity": np.fromiter((n.velocity for n in notes), np.int64, len(notes)),
        "start": np.fromiter((n.start for n in notes), np.float64, len(notes)),
        "end": np.fromiter((n.end for n in notes), np.float64, len(notes)),
        "track": np.fromiter((n.track for n in notes), np.int64, len(notes)),
    }


def _compute(perf: Performance, convention: str, names: Iterable[str],
             given: Mapping[str, Any]) -> dict[str, float]:
    opts = _options(convention, given)
    names = list(names)
    if not perf.notes:
        logger.debug("no notes in %r: statistics are NaN", perf.source)
        return {k: math.nan for k in names}
    a = _arrays(perf)
    out: dict[str, float] = {}
    if convention == "correct":
        duration = float(a["end"].max())
        for k in names:
            if k in ("PCU", "NPU", "TUP", "PR"):
                out[k] = {"PCU": _correct.pcu, "NPU": _correct.npu, "TUP": _correct.npu,
                          "PR": _correct.pr}[k](a)
            elif k == "EBR":
                beats = (tempo_beats(perf, duration) if opts["beat"] is None
                         else fixed_beats(float(opts["beat"]), duration))
                out[k] = _correct.ebr(a, beats)
            elif k == "ISR":
                out[k] = _correct.isr(a, np.asarray(opts["scale"], dtype=np.int64))
            elif k == "PRS":
                out[k] = _correct.prs(a, opts["min_pitches"], duration)
            elif k == "APS":
                out[k] = _correct.aps(a, float(opts["chord_tol"]))
            elif k == "IOI":
                out[k] = _correct.ioi(a, float(opts["chord_tol"]))
        return out
    # Times as pretty_midi reads them from the file: pypianoroll's rounding sees the last bits.
    a["start"] = file_times(perf, a["start"])
    a["end"] = file_times(perf, a["end"])
    roll = pitches = None
    if {"PCU", "NPU", "EBR", "ISR", "PRS"} & set(names):
        roll = _paper.paper_roll(perf, a, opts["resolution"], float(opts["first_beat_time"]))
    if {"TUP", "PR"} & set(names):
        pitches = _paper.first_instrument_pitches(a, float(opts["fs"]))
    for k in names:
        if k in ("PCU", "NPU", "EBR", "ISR", "PRS"):
            if roll is None:
                out[k] = math.nan
            elif k == "PRS":
                out[k] = _paper.prs(roll, opts["threshold"])
            else:
                out[k] = {"PCU": _paper.pcu, "NPU": _paper.npu, "EBR": _paper.ebr,
                          "ISR": _paper.isr}[k](roll)
        elif k == "TUP":
            out[k] = _paper.tup(pitches)
        elif k == "PR":
            out[k] = _paper.pr(pitches)
        elif k == "APS":
            out[k] = _paper.aps(a, opts["track"])
        elif k == "IOI":
            out[k] = _paper.ioi(a)
    return out


def note_statistics(perf: Performance, convention: str = "correct",
                    **options: Any) -> dict[str, float]:
    """The nine statistics of ``perf``, keys "PCU" "NPU" "EBR" "ISR" "PRS" "TUP" "PR" "APS" "IOI".

    ``options`` are those of the chosen convention (see ``DEFAULTS``): correct: beat, scale,
    min_pitches, chord_tol; paper: resolution, first_beat_time, threshold, fs, track. Shared
    intermediates (the paper piano roll) are built once. ValueError names a bad convention or an
    option of the other convention; TypeError names an unknown option.
    """
    return _compute(perf, convention, STATISTICS, options)


def pcu(perf: Performance, convention: str = "correct", *, resolution: int | None = None,
        first_beat_time: float | None = None) -> float:
    """Pitch classes used.

    correct: number of distinct ``pitch % 12`` among all notes (all tracks, any length).
    paper: pypianoroll ``n_pitch_classes_used`` on the merged binarised roll: its chroma folds
    pitches 0..119 into 12 groups of 10 CONSECUTIVE pitches (group = pitch // 10), so it counts
    the 10-semitone blocks touched (about range / 10 on piano); notes that vanish from the
    24-per-beat roll do not count.
    """
    return _compute(perf, convention, ["PCU"], dict(resolution=resolution,
                                                    first_beat_time=first_beat_time))["PCU"]


def npu(perf: Performance, convention: str = "correct", *, resolution: int | None = None,
        first_beat_time: float | None = None) -> float:
    """Number of pitches used.

    correct: distinct pitches among all notes. paper: pypianoroll ``n_pitches_used``: pitches with
    an active cell in the merged roll (a note shorter than about one step may vanish).
    """
    return _compute(perf, convention, ["NPU"], dict(resolution=resolution,
                                                    first_beat_time=first_beat_time))["NPU"]


def ebr(perf: Performance, convention: str = "correct", *, beat: float | None = None,
        resolution: int | None = None, first_beat_time: float | None = None) -> float:
    """Empty-beat rate.

    correct: fraction of beats in which no note sounds. Beats start at time 0 and run to the end
    of the last note; ``beat=None`` takes the quarter notes of the Performance's tempo map (120 bpm,
    0.5 s, when it has none), ``beat=0.5`` a fixed grid of 0.5 s. A note occupies every beat from
    the one holding its onset to the one holding the instant before its end.
    paper: pypianoroll ``empty_beat_rate``, which returns the fraction of beats that are NOT
    empty (a beat = ``resolution`` steps of the roll), i.e. 1 - the true rate up to roll effects.
    """
    return _compute(perf, convention, ["EBR"], dict(beat=beat, resolution=resolution,
                                                    first_beat_time=first_beat_time))["EBR"]


def isr(perf: Performance, convention: str = "correct", *, scale: Iterable[int] | None = None,
        resolution: int | None = None, first_beat_time: float | None = None) -> float:
    """In-scale rate (C major by default).

    correct: sounding time of pitches whose class is in ``scale`` (default {0,2,4,5,7,9,11}) over
    the sounding time of all pitches, each pitch's time being the union of its notes' intervals
    (continuous-time analogue of active roll cells; a chord counts once per pitch).
    paper: pypianoroll ``in_scale_rate``: active cells whose 10-pitch GROUP (pitch // 10) is in
    {0,2,4,5,7,9,11}, over all active cells.
    """
    return _compute(perf, convention, ["ISR"], dict(scale=scale, resolution=resolution,
                                                    first_beat_time=first_beat_time))["ISR"]


def prs(perf: Performance, convention: str = "correct", *, min_pitches: int | None = None,
        threshold: int | None = None, resolution: int | None = None,
        first_beat_time: float | None = None) -> float:
    """Polyphony rate.

    correct: fraction of the time from 0 to the end of the last note during which at least
    ``min_pitches`` (default 4, the paper's text) distinct pitches sound; silence counts in the
    denominator. paper: pypianoroll ``polyphonic_rate``: fraction of all roll steps with MORE than
    ``threshold`` active pitches; default 4 here, which reproduces the published values
    (pypianoroll's own default is 2).
    """
    return _compute(perf, convention, ["PRS"], dict(min_pitches=min_pitches, threshold=threshold,
                                                    resolution=resolution,
                                                    first_beat_time=first_beat_time))["PRS"]


def tup(perf: Performance, convention: str = "correct", *, fs: float | None = None) -> float:
    """Total used pitch.

    correct: distinct pitches among all notes (the same quantity as NPU). paper: mgeval
    ``total_used_pitch``: pitches present in pretty_midi's ``get_piano_roll(fs=100)`` of the FIRST
    instrument only (all notes of the lowest track index with notes; a note filling no column,
    ``int(end * fs) == int(start * fs)``, is absent; 0 when every note vanishes).
    """
    return _compute(perf, convention, ["TUP"], dict(fs=fs))["TUP"]


def pr(perf: Performance, convention: str = "correct", *, fs: float | None = None) -> float:
    """Pitch range in semitones.

    correct: highest minus lowest pitch among all notes. paper: mgeval ``pitch_range`` on the
    first instrument's 100 Hz roll, as for TUP (NaN when every note vanishes; mgeval raises).
    """
    return _compute(perf, convention, ["PR"], dict(fs=fs))["PR"]


def aps(perf: Performance, convention: str = "correct", *, chord_tol: float | None = None,
        track: int | None = None) -> float:
    """Average pitch shift between consecutive notes, in semitones.

    correct: notes of all tracks grouped into chords (sorted onsets at most ``chord_tol`` s apart,
    default 0: exactly simultaneous); each chord's pitch is the mean of its pitches; the mean
    |difference| between consecutive chords. A lone note is a chord of one.
    paper: mgeval ``avg_pitch_shift``: mean |difference| of consecutive note-on pitches
    (velocity > 0) of one MIDI track in file order, chords included, so a chord adds the
    intervals between its own notes. mgeval reads track 1 literally; ``track=None`` (default)
    takes the first track with notes, which is track 1 in MAESTRO files (track 0 holds the tempo
    map) and track 0 for notes decoded from tokens. NaN with fewer than two chords / notes.
    """
    return _compute(perf, convention, ["APS"], dict(chord_tol=chord_tol, track=track))["APS"]


def ioi(perf: Performance, convention: str = "correct", *, chord_tol: float | None = None) -> float:
    """Mean inter-onset interval in seconds.

    correct: mean time between consecutive distinct onsets (chords as in APS, each at its first
    onset), i.e. (last onset - first onset) / (number of chords - 1).
    paper: mgeval ``avg_IOI``: mean of diff(sorted starts of all notes of all instruments), so
    each extra note of a chord adds an interval of 0. NaN with fewer than two onsets.
    """
    return _compute(perf, convention, ["IOI"], dict(chord_tol=chord_tol))["IOI"]


def clip(perf: Performance, seconds: float | None = None) -> Performance:
    """The first ``seconds`` of ``perf`` (all of it when None) as a new Performance.

    Notes starting before ``seconds`` are kept and end at ``min(end, seconds)``; later notes and
    tempo changes are dropped. Clipping by tokens belongs to the caller, on the token sequence.
    """
    if seconds is None:
        return Performance(list(perf.notes), list(perf.tempos), perf.ticks_per_beat, perf.source)
    if not (isinstance(seconds, (int, float)) and seconds > 0):
        raise ValueError(f"seconds must be None or a positive number, got {seconds!r}")
    notes = [n if n.end <= seconds else replace(n, end=float(seconds))
             for n in perf.notes if n.start < seconds]
    tempos = [t for t in perf.tempos if t[0] < seconds] or list(perf.tempos[:1])
    return Performance(notes, tempos, perf.ticks_per_beat, perf.source)


def aggregate(stats: Iterable[Mapping[str, float]]) -> dict[str, dict[str, float]]:
    """Average per-sample statistics: {"mean": {name: m}, "std": {name: s}, "n": {name: count}}.

    NaNs are left out; "std" is the population standard deviation (ddof=0); "n" counts the
    non-NaN values. Names are taken in order of first appearance; a statistic that is NaN in
    every sample gets mean and std NaN and n 0.
    """
    values: dict[str, list[float]] = {}
    for row in stats:
        for k, v in row.items():
            values.setdefault(k, []).append(float(v))
    out: dict[str, dict[str, float]] = {"mean": {}, "std": {}, "n": {}}
    for k, vs in values.items():
        x = np.asarray(vs, dtype=np.float64)
        x = x[~np.isnan(x)]
        out["mean"][k] = float(x.mean()) if len(x) else math.nan
        out["std"][k] = float(x.std()) if len(x) else math.nan
        out["n"][k] = len(x)
    return out
