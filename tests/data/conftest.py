"""Builders of small MIDI files for the data tests, and cached reads of maestro-mini."""
import pathlib
import struct

import mido
import pytest

TPB = 480  # ticks per beat of the hand-built files; at 120 bpm one tick is 1/960 s


def _vlq(n: int) -> bytes:
    """MIDI variable-length quantity."""
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def raw_midi(tracks: list[list[tuple[int, bytes]]], fmt: int = 0, tpb: int = TPB) -> bytes:
    """A MIDI file from raw (delta ticks, event bytes) per track, so tests can write running
    status, which mido never writes. End-of-track events are appended."""
    body = b""
    for events in tracks:
        data = b"".join(_vlq(d) + ev for d, ev in events) + b"\x00\xff\x2f\x00"
        body += b"MTrk" + struct.pack(">I", len(data)) + data
    return b"MThd" + struct.pack(">IHHH", 6, fmt, len(tracks), tpb) + body


def make_midi(path, tracks, file_type: int = 1, tpb: int = TPB):
    """Write ``tracks`` (lists of mido messages with delta times) to ``path``; returns path."""
    mid = mido.MidiFile(type=file_type, ticks_per_beat=tpb)
    for msgs in tracks:
        mid.tracks.append(mido.MidiTrack(msgs))
    mid.save(str(path))
    return path


def on(note, vel=100, t=0, ch=0):
    return mido.Message("note_on", note=note, velocity=vel, time=t, channel=ch)


def off(note, t=0, ch=0, vel=0, kind="note_off"):
    if kind == "note_on":  # NOTE_ON with velocity 0
        return mido.Message("note_on", note=note, velocity=0, time=t, channel=ch)
    return mido.Message("note_off", note=note, velocity=vel, time=t, channel=ch)


def pedal(down: bool, t=0, ch=0):
    return mido.Message("control_change", control=64, value=127 if down else 0, time=t, channel=ch)


def tempo(bpm, t=0):
    return mido.MetaMessage("set_tempo", tempo=mido.bpm2tempo(bpm), time=t)


@pytest.fixture
def midi_tools():
    """The builders above, for tests (tests/data is not a package)."""
    import types

    return types.SimpleNamespace(raw_midi=raw_midi, make_midi=make_midi, on=on, off=off,
                                 pedal=pedal, tempo=tempo, TPB=TPB)


def simple_song(path, pitches=(60, 64, 67), step_ticks=240, track_kind=1):
    """A short type-1 file: tempo track plus one melody track, one note per ``step_ticks``."""
    msgs = []
    for p in pitches:
        msgs += [on(p, 80), off(p, step_ticks)]
    return make_midi(path, [[tempo(120)], msgs], file_type=track_kind)


@pytest.fixture
def song_folder(tmp_path):
    """A folder of 6 small MIDI files (two in a sub-folder), for data-set tests."""
    root = tmp_path / "songs"
    (root / "sub").mkdir(parents=True)
    for i in range(4):
        simple_song(root / f"song{i}.mid", pitches=(60 + i, 64 + i, 67 + i, 72 + i))
    for i in range(2):
        simple_song(root / "sub" / f"piece{i}.MIDI", pitches=(48 + i, 55, 59 + i))
    return root


# The same place tests/conftest.py looks; a session-wide fixture cannot use its per-test fixture.
MAESTRO_MINI = pathlib.Path(__file__).resolve().parents[3] / "shared" / "data" / "maestro-mini"


@pytest.fixture(scope="session")
def maestro_performances():
    """read_midi of every maestro-mini file, read once per session: [(path, Performance)].
    Reading all 48 files with mido takes ~5-10 s on two cores, so tests share one read."""
    from tgan.data import read_midi

    files = sorted(MAESTRO_MINI.glob("*/*.midi"))
    if not files:
        pytest.skip(f"real MAESTRO data not found at {MAESTRO_MINI}")
    return [(f, read_midi(f)) for f in files]
