"""Metrics: pure functions over notes and tokens; no model imports except the CA / PLL scorers.

Note statistics (Table 1 of the paper), each ``f(perf, convention="correct", **options) -> float``
on a :class:`tgan.data.notes.Performance`::

    pcu  npu  ebr  isr  prs  tup  pr  aps  ioi
    note_statistics(perf, convention="correct", **options) -> {"PCU": ..., ..., "IOI": ...}
    clip(perf, seconds=None) -> Performance          # the first N seconds
    aggregate(list_of_stat_dicts) -> {"mean": {name: ...}, "std": {...}, "n": {...}}  # skips NaN

A performance without notes gives NaN. A bad convention name raises ValueError naming
``convention``; an option of the other convention raises ValueError naming it.

``convention="correct"`` -- what the names mean (default). Notes of all tracks count.

- PCU: distinct pitch classes ``pitch % 12``.      NPU: distinct pitches.
- EBR: fraction of beats with no sounding note. Beats from time 0 to the end of the last note,
  on the tempo map's quarter notes (``beat=None``; 0.5 s at the MIDI default 120 bpm) or on a
  fixed grid (``beat=0.5`` seconds). A note occupies the beats from its onset's to the one holding
  the instant before its end.
- ISR: sounding time of in-scale pitches (``scale``, default C major {0,2,4,5,7,9,11} by pitch
  class) over sounding time of all pitches; each pitch sounds on the union of its notes.
- PRS: fraction of the time [0, end of last note) with at least ``min_pitches`` (4) distinct
  pitches sounding, in continuous time (no step resolution); silence is in the denominator.
- TUP: distinct pitches (the true quantity equals NPU).   PR: highest minus lowest pitch.
- APS: onsets within ``chord_tol`` s (default 0: exactly equal) form a chord whose pitch is the
  mean of its pitches; mean |difference| between consecutive chords.
- IOI: mean time between consecutive chords' first onsets, in seconds.

``convention="paper"`` -- pypianoroll 0.5.3 (PCU, NPU, EBR, ISR, PRS) and mgeval (TUP, PR, APS,
IOI), as the published numbers were computed, quirks included:

- One piano roll for the first five: ``resolution`` (24) steps per beat, beats from pretty_midi's
  ``get_beats`` on the tempo map (bit-exact arithmetic), onset step rounded, offset step
  truncated, same-pitch neighbour quirks of pypianoroll's parser, tracks merged, binarised.
- PCU: 12 groups of 10 CONSECUTIVE pitches (pitch // 10), not pitch % 12.  NPU: pitches in roll.
- EBR: fraction of beats that are NOT empty.   ISR: C-major mask on the 10-pitch groups.
- PRS: steps with MORE than ``threshold`` pitches; 4 here (pypianoroll's own default is 2).
- TUP, PR: pretty_midi ``get_piano_roll(fs=100)`` of the first instrument only (lowest track
  index with notes).
- APS: consecutive note-on pitches of one MIDI track in file order, chords included. mgeval
  reads track 1; ``track=None`` (default) takes the first track with notes: track 1 in MAESTRO
  files, track 0 for notes decoded from tokens.
- IOI: mean of diff(sorted note starts), simultaneous onsets giving 0.

Apply the sustain pedal when reading the MIDI (the paper's data path did); the libraries
themselves ignore it. Note times are recomputed on pretty_midi's tick clock (exact for notes read
from a file), because pypianoroll's rounding sees the last bits of a time. On the 48 maestro-mini
files read without the pedal, the paper convention equals pypianoroll 0.5.3 + pretty_midi 0.2.9
(and mgeval's definitions on them) exactly, given the same end time (see below).

What a Performance cannot carry, and so is approximated:

- The roll's end time is the last note end or tempo change; pretty_midi also counts control
  changes and meta events, which can add a beat (pedal releases after the last note).
- pypianoroll's first beat is the first time signature (time 0 in MAESTRO and in files pretty_midi
  writes); without one it estimates it from onsets. ``first_beat_time`` replaces both; the meter
  is taken as a non-compound x/4, so beats are quarter notes.
- pretty_midi splits instruments by (program, channel, track); the first instrument is taken to
  be the lowest track with notes.
- pypianoroll raises on a piece shorter than two beats; here the missing beat comes from the tempo.
- mgeval counts every note-on of the track, even one never closed, which never becomes a Note.
- ``_to_chroma`` mutates the caller's roll for pitches >= 120, so a metric called after it on the
  same array sees the change; here each metric sees the unmutated roll (ISR its own mutation).
"""
from tgan.metrics.notes_stats import (
    C_MAJOR,
    CONVENTIONS,
    DEFAULTS,
    STATISTICS,
    aggregate,
    aps,
    clip,
    ebr,
    ioi,
    isr,
    note_statistics,
    npu,
    pcu,
    pr,
    prs,
    tup,
)

__all__ = [
    "C_MAJOR", "CONVENTIONS", "DEFAULTS", "STATISTICS", "aggregate", "aps", "clip", "ebr", "ioi",
    "isr", "note_statistics", "npu", "pcu", "pr", "prs", "tup",
]
