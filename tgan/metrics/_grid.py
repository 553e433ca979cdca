"""Beat grids: the tempo map walked as pretty_midi's ``get_beats`` walks it, or a fixed period.

Both conventions place beats with these helpers; the paper convention needs the arithmetic of
pretty_midi 0.2.9 to the last bit, because pypianoroll rounds note times against these beats and a
one-ulp difference moves a note that sits exactly on a step boundary by one step.
"""
from __future__ import annotations

import numpy as np

from tgan.data.notes import Performance

DEFAULT_USEC_PER_BEAT = 500000  # 120 quarter notes per minute, the MIDI default


def _tempo_entries(perf: Performance) -> list[tuple[float, int]]:
    entries = sorted(perf.tempos, key=lambda e: e[0])
    if not entries or entries[0][0] > 0.0:
        entries = [(0.0, DEFAULT_USEC_PER_BEAT)] + entries
    return entries


def _clock(perf: Performance):
    """pretty_midi 0.2.9's tick clock for the file ``perf`` was read from.

    Returns (entry times, entry ticks, entry usec) of the Performance's own tempo map, with ticks
    recovered from the times, and (start tick, start time, tick scale) of pretty_midi's segments:
    pretty_midi keeps the last tempo at tick 0, drops a change whose tick scale
    ``60 / ((6e7 / usec) * ticks_per_beat)`` equals the previous one, and times tick t of a
    segment as ``start_time + scale * (t - start_tick)``.
    """
    tpb = perf.ticks_per_beat
    entries = _tempo_entries(perf)
    e_time = [float(t) for t, _ in entries]
    e_usec = [int(u) for _, u in entries]
    e_tick = [0]
    for k in range(1, len(entries)):
        sec_per_tick = e_usec[k - 1] / (1e6 * tpb)
        e_tick.append(e_tick[-1] + round((e_time[k] - e_time[k - 1]) / sec_per_tick))
    seg_tick: list[int] = []
    seg_scale: list[float] = []
    for tick, usec in zip(e_tick, e_usec):
        scale = 60.0 / ((6e7 / usec) * tpb)
        if tick == 0 and seg_tick:
            seg_scale[-1] = scale
        elif not seg_scale or scale != seg_scale[-1]:
            seg_tick.append(tick)
            seg_scale.append(scale)
    seg_time = [0.0]
    for k in range(1, len(seg_tick)):
        seg_time.append(seg_time[-1] + seg_scale[k - 1] * (seg_tick[k] - seg_tick[k - 1]))
    return ((np.asarray(e_time), np.asarray(e_tick), np.asarray(e_usec, dtype=np.float64)),
            (np.asarray(seg_tick), np.asarray(seg_time), np.asarray(seg_scale)))


def tempo_changes(perf: Performance) -> tuple[np.ndarray, np.ndarray]:
    """Tempo change times (s) and tempi (quarter notes per minute) as pretty_midi 0.2.9 has them.

    The tempo is ``60 / (tick_scale * ticks_per_beat)``; times and tempi come out of the same
    floating-point chain as pretty_midi's (with ``perf.ticks_per_beat``), so they match bit for bit.
    A map that does not start at time 0 gets pretty_midi's default 120 qpm before its first entry.
    """
    _, (_, seg_time, seg_scale) = _clock(perf)
    return seg_time, 60.0 / (seg_scale * perf.ticks_per_beat)


def file_times(perf: Performance, times: np.ndarray) -> np.ndarray:
    """``times`` as pretty_midi would compute them from the file's ticks.

    A reader turns ticks into seconds with its own arithmetic; pretty_midi's differs in the last
    bits, and pypianoroll's rounding turns those bits into whole steps for notes that sit exactly
    on a step boundary (about one MAESTRO note in 16). Each time whose tick on the Performance's
    tempo map is within 1e-6 of an integer is recomputed on pretty_midi's clock; other times (notes
    not read from a file) are returned unchanged.
    """
    (e_time, e_tick, e_usec), (seg_tick, seg_time, seg_scale) = _clock(perf)
    tpb = perf.ticks_per_beat
    k = np.maximum(np.searchsorted(e_time, times, side="right") - 1, 0)
    ticks_f = e_tick[k] + (times - e_time[k]) / (e_usec[k] / (1e6 * tpb))
    ticks = np.rint(ticks_f)
    on_grid = np.abs(ticks_f - ticks) < 1e-6
    ticks = ticks.astype(np.int64)
    j = np.maximum(np.searchsorted(seg_tick, ticks, side="right") - 1, 0)
    pm = seg_time[j] + seg_scale[j] * (ticks - seg_tick[j])
    return np.where(on_grid, pm, times)


def tempo_beats(perf: Performance, end_time: float, start_time: float = 0.0) -> np.ndarray:
    """Beat times (s) on the tempo map of ``perf``, from ``start_time`` to before ``end_time``.

    Reproduces pretty_midi 0.2.9 ``PrettyMIDI.get_beats(start_time)`` for a file whose time
    signature is absent or a non-compound x/4 starting at time 0 (beats are quarter notes; MAESTRO
    files are 4/4 from time 0): beats step by the current period; a beat that would cross a tempo
    change is split, the part before the change at the old period and the rest at the new one.
    The last beat returned is the last one strictly before ``end_time`` (pretty_midi generates
    beats while the last one is before the end time, then drops the final one). Empty when
    ``start_time >= end_time``.
    """
    change_times, qpm = tempo_changes(perf)
    change_times = change_times.tolist()
    qpm = qpm.tolist()
    n_changes = len(change_times)
    beats = [float(start_time)]
    idx = 0
    while idx < n_changes - 1 and beats[-1] > change_times[idx + 1]:
        idx += 1
    # The expressions below keep pretty_midi's operation order ((x * 60) / bpm, not x * period),
    # so the floating-point results are identical.
    while beats[-1] < end_time:
        bpm = qpm[idx]
        nxt = beats[-1] + 60.0 / bpm
        if idx < n_changes - 1 and nxt > change_times[idx + 1]:
            nxt = beats[-1]
            remaining = 1.0
            while idx < n_changes - 1 and nxt + remaining * 60.0 / bpm >= change_times[idx + 1]:
                overshot = (change_times[idx + 1] - nxt) / (60.0 / bpm)
                nxt += overshot * 60.0 / bpm
                remaining -= overshot
                idx += 1
                bpm = qpm[idx]
            nxt += remaining * 60.0 / bpm
        beats.append(nxt)
    return np.asarray(beats[:-1], dtype=np.float64)


def fixed_beats(period: float, end_time: float, start_time: float = 0.0) -> np.ndarray:
    """Beat times ``start_time + k * period`` for every k >= 0 with the beat before ``end_time``."""
    if not period > 0.0:
        raise ValueError(f"beat period must be a positive number of seconds, got {period!r}")
    n = int(np.ceil((end_time - start_time) / period)) if end_time > start_time else 0
    beats = start_time + period * np.arange(n + 1, dtype=np.float64)
    return beats[beats < end_time]
