"""Reading MIDI files into notes (tempo map, sustain pedal) and writing notes back, with mido.

Reading rules (``read_midi``):
- Types 0 and 1; all tracks merged into one note list. Type 2 (independent sequences) and SMPTE
  time division are refused with ``MidiError``.
- Every tempo change, from any track, enters the tempo map that turns ticks into seconds.
- NOTE_ON with velocity 0 is a NOTE_OFF. Notes pair by (track, channel, pitch).
- A NOTE_ON for a (track, channel, pitch) that is still sounding closes the sounding note at that
  moment and starts a new one (a re-struck key ends the previous strike, as on a piano).
- Messages at the same tick are taken in file order, so NOTE_ON then NOTE_OFF at one tick is a
  zero-length note; zero-length notes are dropped. Notes still open at the end of the file end at
  the file's last tick.
- Channel 10 (index 9) is General MIDI percussion: its notes are dropped, as pitch there names a
  drum, not a pitch.
- Sustain (``sustain=True``): CC64 >= 64 is pedal down, < 64 pedal up, per channel across tracks.
  A note whose key is released while the pedal is down keeps sounding until the pedal goes up or
  the same pitch is struck again on that channel, whichever comes first; a note released with
  the pedal up is untouched. Control changes are then dropped.
"""
from __future__ import annotations

import heapq
import os

import mido

from tgan.data.errors import MidiError
from tgan.data.notes import Note, Performance

DRUM_CHANNEL = 9
DEFAULT_TEMPO = 500000  # microseconds per beat: 120 bpm, the MIDI default
# 500 ticks per beat at 120 bpm makes one tick exactly 1 ms, so 10 ms grid times are whole ticks.
WRITE_TICKS_PER_BEAT = 500

# Event codes in the merged stream; at one tick the file order decides, not these codes.
_ON, _OFF, _PEDAL, _TEMPO = 0, 1, 2, 3


def _load(path) -> mido.MidiFile:
    path = os.fspath(path)
    try:
        size = os.path.getsize(path)
    except OSError as e:
        raise MidiError(path, f"cannot be read ({e.strerror or e})") from None
    if size == 0:
        raise MidiError(path, "empty file")
    try:
        mid = mido.MidiFile(path)
    except EOFError:
        raise MidiError(path, "truncated MIDI file (unexpected end of data)") from None
    except OSError as e:
        # mido raises OSError("MThd not found...") for files that are not MIDI at all.
        raise MidiError(path, f"not a MIDI file ({e})") from None
    except Exception as e:  # mido raises KeyError/ValueError/IndexError on corrupt data bytes
        raise MidiError(path, f"corrupt MIDI file ({type(e).__name__}: {e})") from None
    if mid.type == 2:
        raise MidiError(path, "MIDI type 2 (independent sequences) is not supported")
    if not 0 < mid.ticks_per_beat < 0x8000:
        raise MidiError(path, f"SMPTE time division is not supported (division "
                              f"{mid.ticks_per_beat})")
    return mid


def _track_events(track, t_index: int):
    """(tick, track, message index, code, channel, a, b) for the messages that matter, in order."""
    tick = 0
    out = []
    for m_index, msg in enumerate(track):
        tick += msg.time
        kind = msg.type
        if kind == "note_on" or kind == "note_off":
            if msg.channel == DRUM_CHANNEL:
                continue
            code = _ON if kind == "note_on" and msg.velocity > 0 else _OFF
            out.append((tick, t_index, m_index, code, msg.channel, msg.note, msg.velocity))
        elif kind == "control_change" and msg.control == 64:
            out.append((tick, t_index, m_index, _PEDAL, msg.channel, msg.value >= 64, 0))
        elif kind == "set_tempo":
            out.append((tick, t_index, m_index, _TEMPO, 0, msg.tempo, 0))
    return out, tick


def read_midi(path, sustain: bool = True) -> Performance:
    """Read a type-0 or type-1 MIDI file into a ``Performance`` (see the module docstring).

    Args:
        path: the file.
        sustain: extend notes held by the sustain pedal (CC64), as the paper's data path does.

    Returns:
        notes sorted by start, ties in NOTE_ON file order (track, then message index); the tempo
        map as (seconds, microseconds per beat) from time 0; the file's ticks per beat.

    Raises:
        MidiError: the file is empty, truncated, not MIDI, type 2, or uses SMPTE timing.
    """
    mid = _load(path)
    per_track, last_tick = [], 0
    try:
        for t_index, track in enumerate(mid.tracks):
            events, end = _track_events(track, t_index)
            per_track.append(events)
            last_tick = max(last_tick, end)
    except AttributeError as e:  # a message without the expected fields
        raise MidiError(path, f"corrupt MIDI message ({e})") from None

    tpb = mid.ticks_per_beat
    seg_tick, seg_sec, tempo = 0, 0.0, DEFAULT_TEMPO
    tempos = [(0.0, DEFAULT_TEMPO)]

    def seconds(tick: int) -> float:
        return seg_sec + (tick - seg_tick) * tempo / (1e6 * tpb)

    # note key (track, channel, pitch) -> [start seconds, velocity, order key]
    held: dict[tuple, list] = {}
    # (channel, pitch) -> list of [start, velocity, order, track] released under the pedal
    pedal_held: dict[tuple, list] = {}
    pedal_down = [False] * 16
    notes: list[tuple] = []  # (start, order key, Note)

    def emit(start, velocity, order, track, pitch, end):
        if end > start:
            notes.append((start, order, Note(pitch, velocity, start, end, track)))

    def release_pedalled(channel, pitch, now):
        for start, velocity, order, track in pedal_held.pop((channel, pitch), ()):
            emit(start, velocity, order, track, pitch, now)

    for tick, track, m_index, code, channel, a, b in heapq.merge(*per_track):
        now = seconds(tick)
        if code == _TEMPO:
            seg_tick, seg_sec, tempo = tick, now, a
            if tempos[-1][0] == now:
                tempos[-1] = (now, a)  # several changes at one moment: the last one holds
            else:
                tempos.append((now, a))
        elif code == _ON:
            key = (track, channel, a)
            if key in held:  # re-struck while sounding: the old strike ends here
                start, velocity, order = held.pop(key)
                emit(start, velocity, order, track, a, now)
            release_pedalled(channel, a, now)
            held[key] = [now, b, (track, m_index)]
        elif code == _OFF:
            key = (track, channel, a)
            if key not in held:
                continue  # a NOTE_OFF without a sounding note is ignored
            start, velocity, order = held.pop(key)
            if sustain and pedal_down[channel] and now > start:
                pedal_held.setdefault((channel, a), []).append([start, velocity, order, track])
            else:
                emit(start, velocity, order, track, a, now)
        elif code == _PEDAL and sustain:
            if pedal_down[channel] and not a:
                for ch, pitch in [k for k in pedal_held if k[0] == channel]:
                    release_pedalled(ch, pitch, now)
            pedal_down[channel] = bool(a)

    end = seconds(last_tick)
    for (ch, pitch) in list(pedal_held):
        release_pedalled(ch, pitch, end)
    for (track, ch, pitch), (start, velocity, order) in held.items():
        emit(start, velocity, order, track, pitch, end)

    notes.sort(key=lambda x: (x[0], x[1]))
    return Performance(notes=[n for _, _, n in notes], tempos=tempos, ticks_per_beat=tpb,
                       source=os.fspath(path))


def write_midi(notes, path, *, file_type: int = 1, ticks_per_beat: int = WRITE_TICKS_PER_BEAT,
               bpm: float = 120.0, program: int = 0, markers=()) -> None:
    """Write notes (or a Performance) to a MIDI file at one fixed tempo.

    ``markers``: (seconds, text) pairs written as MIDI marker events in the tempo track (where a
    primer ends, for example); reading the file back ignores them.

    Type 1 (default): track 0 holds the tempo, then one track per distinct ``Note.track`` in
    increasing order (so notes read back carry track 1, 2, ...). Type 0: one track, channel 0.
    The default 500 ticks per beat at 120 bpm is 1 ms per tick, so times on the 10 ms grid are
    written exactly. At one tick NOTE_OFFs come before NOTE_ONs, so a pitch struck again the
    moment it ends reads back as two notes. A note shorter than one tick is given one tick.

    Raises:
        ValueError: a pitch outside 0..127, a velocity outside 1..127, a negative time, or a bad
            ``file_type`` / ``ticks_per_beat`` / ``bpm``.
    """
    if isinstance(notes, Performance):
        notes = notes.notes
    if file_type not in (0, 1):
        raise ValueError(f"file_type must be 0 or 1, got {file_type}")
    if not 1 <= ticks_per_beat < 0x8000:
        raise ValueError(f"ticks_per_beat must be in 1..32767, got {ticks_per_beat}")
    if not bpm > 0:
        raise ValueError(f"bpm must be positive, got {bpm}")
    tempo = mido.bpm2tempo(bpm)
    ticks_per_second = ticks_per_beat * 1e6 / tempo

    track_ids = sorted({n.track for n in notes}) if file_type == 1 else [0]
    events: dict[int, list] = {t: [] for t in track_ids}
    for i, n in enumerate(notes):
        if not 0 <= n.pitch <= 127:
            raise ValueError(f"note {i}: pitch must be in 0..127, got {n.pitch}")
        if not 1 <= n.velocity <= 127:
            raise ValueError(f"note {i}: velocity must be in 1..127, got {n.velocity}")
        if n.start < 0 or n.end < n.start:
            raise ValueError(f"note {i}: times must satisfy 0 <= start <= end, got "
                             f"start={n.start}, end={n.end}")
        on = round(n.start * ticks_per_second)
        off = max(round(n.end * ticks_per_second), on + 1)
        bucket = events[n.track if file_type == 1 else 0]
        bucket.append((on, 1, i, "note_on", n.pitch, n.velocity))
        bucket.append((off, 0, i, "note_off", n.pitch, 0))

    marks = []  # (tick, order, index, "marker", text, 0): before the notes of their tick
    for seconds, text in markers:
        if not seconds >= 0:
            raise ValueError(f"marker {text!r}: its time must be >= 0 s, got {seconds}")
        marks.append((round(seconds * ticks_per_second), -1, -1, "marker", str(text), 0))
    if file_type == 0:
        events[0] += marks
    mid = mido.MidiFile(type=file_type, ticks_per_beat=ticks_per_beat)
    meta = mido.MidiTrack()
    meta.append(mido.MetaMessage("set_tempo", tempo=tempo, time=0))
    mid.tracks.append(meta)
    if file_type == 1:
        last = 0
        for tick, _, _, _, text, _ in sorted(marks):
            meta.append(mido.MetaMessage("marker", text=text, time=tick - last))
            last = tick
    for t in track_ids:
        track = meta if file_type == 0 else mido.MidiTrack()
        if track is not meta:
            mid.tracks.append(track)
        track.append(mido.Message("program_change", program=program, channel=0, time=0))
        last = 0
        for tick, _, _, kind, pitch, velocity in sorted(events[t], key=lambda e: e[:3]):
            if kind == "marker":
                track.append(mido.MetaMessage("marker", text=pitch, time=tick - last))
            else:
                track.append(mido.Message(kind, note=pitch, velocity=velocity, channel=0, time=tick - last))
            last = tick
        track.append(mido.MetaMessage("end_of_track", time=0))
    if file_type == 1:
        meta.append(mido.MetaMessage("end_of_track", time=0))
    mid.save(os.fspath(path))
