"""read_midi / write_midi on hand-built files with hand-computed expected notes (tpb 480)."""
import struct

import mido
import pytest

from tgan.data import MidiError, Note, read_midi, write_midi


def notes_of(perf):
    return [(n.pitch, n.velocity, round(n.start, 9), round(n.end, 9), n.track)
            for n in perf.notes]


def test_type0_tempo_changes(tmp_path, midi_tools):
    t = midi_tools
    track = [t.tempo(120), t.on(60, 90), t.off(60, 480),          # 0 .. 0.5 s at 120 bpm
             t.tempo(60), t.on(62, 70), t.off(62, 480),           # 0.5 .. 1.5 s at 60 bpm
             t.tempo(240), t.on(64, 50), t.off(64, 480)]          # 1.5 .. 1.75 s at 240 bpm
    perf = read_midi(t.make_midi(tmp_path / "a.mid", [track], file_type=0))
    assert notes_of(perf) == [(60, 90, 0.0, 0.5, 0), (62, 70, 0.5, 1.5, 0),
                              (64, 50, 1.5, 1.75, 0)]
    assert perf.tempos == [(0.0, 500000), (0.5, 1000000), (1.5, 250000)]
    assert perf.ticks_per_beat == 480 and perf.source.endswith("a.mid")
    assert perf.duration == 1.75


def test_type1_tracks_merged_and_tie_order(tmp_path, midi_tools):
    t = midi_tools
    meta = [t.tempo(100), t.tempo(150, 960)]                      # 0.6 s, then 0.4 s per beat
    # Simultaneous onsets: track 1 before track 2, then message order (67 before 60).
    tr1 = [t.on(67, 80), t.on(60, 81), t.off(67, 960), t.off(60), t.on(72, 82), t.off(72, 480)]
    tr2 = [t.on(48, 83), t.off(48, 960), t.on(50, 84), t.off(50, 480)]
    perf = read_midi(t.make_midi(tmp_path / "b.mid", [meta, tr1, tr2]))
    assert notes_of(perf) == [(67, 80, 0.0, 1.2, 1), (60, 81, 0.0, 1.2, 1), (48, 83, 0.0, 1.2, 2),
                              (72, 82, 1.2, 1.6, 1), (50, 84, 1.2, 1.6, 2)]
    assert perf.tempos == [(0.0, 600000), (1.2, 400000)]


def test_running_status_and_velocity_zero_note_off(tmp_path, midi_tools):
    data = midi_tools.raw_midi([[
        (0, b"\x90\x3c\x64"),        # NOTE_ON 60 vel 100
        (480, b"\x3c\x00"),          # running status: NOTE_ON 60 vel 0 = NOTE_OFF
        (0, b"\x40\x50"),            # running status: NOTE_ON 64 vel 80
        (240, b"\x80\x40\x00"),      # NOTE_OFF 64
    ]])
    path = tmp_path / "rs.mid"
    path.write_bytes(data)
    assert notes_of(read_midi(path)) == [(60, 100, 0.0, 0.5, 0), (64, 80, 0.5, 0.75, 0)]


def test_restruck_pitch_closes_the_sounding_note(tmp_path, midi_tools):
    t = midi_tools
    track = [t.on(60, 90), t.on(60, 70, 240), t.off(60, 240), t.off(60, 240)]
    perf = read_midi(t.make_midi(tmp_path / "o.mid", [track], file_type=0))
    # The second NOTE_ON ends the first; the first NOTE_OFF ends the second; the last is stray.
    assert notes_of(perf) == [(60, 90, 0.0, 0.25, 0), (60, 70, 0.25, 0.5, 0)]


def test_drum_channel_dropped_and_zero_length_dropped(tmp_path, midi_tools):
    t = midi_tools
    track = [t.on(36, 100, ch=9), t.on(60, 90), t.on(62, 90), t.off(62),  # 62: zero length
             t.off(36, 480, ch=9), t.off(60)]
    assert notes_of(read_midi(t.make_midi(tmp_path / "d.mid", [track], file_type=0))) == \
        [(60, 90, 0.0, 0.5, 0)]


def test_unclosed_note_ends_at_end_of_file(tmp_path, midi_tools):
    t = midi_tools
    track = [t.on(60, 90), t.on(64, 90, 480), mido.MetaMessage("end_of_track", time=480)]
    assert notes_of(read_midi(t.make_midi(tmp_path / "u.mid", [track], file_type=0))) == \
        [(60, 90, 0.0, 1.0, 0), (64, 90, 0.5, 1.0, 0)]


def _pedal_song(t):
    return [t.pedal(True), t.on(60, 90), t.off(60, 240),          # 60 released under the pedal
            t.on(62, 80, 240), t.on(60, 70, 120),                 # 62 at 0.5 s; 60 again 0.625 s
            t.off(62, 120),                                       # 62 released under the pedal
            t.pedal(False, 240),                                  # pedal up at 1.0 s
            t.off(60, 240),                                       # second 60 ends 1.25 s
            t.on(65, 60, 240), t.off(65, 60),                     # 1.5 .. 1.5625, pedal up
            t.pedal(True, 40), t.pedal(True, 0, ch=1), t.pedal(False, 0, ch=1),
            t.on(67, 60, 100), t.off(67, 100),                    # ticks 1640 .. 1740: pedal
            mido.MetaMessage("end_of_track", time=240)]           # file ends at tick 1980


def test_sustain_pedal(tmp_path, midi_tools):
    path = midi_tools.make_midi(tmp_path / "p.mid", [_pedal_song(midi_tools)], file_type=0)
    start67, end = round(1640 / 960, 9), round(1980 / 960, 9)
    assert notes_of(read_midi(path)) == [
        (60, 90, 0.0, 0.625, 0),     # extended, cut by the re-strike of 60 before pedal-up
        (62, 80, 0.5, 1.0, 0),       # extended to the pedal release
        (60, 70, 0.625, 1.25, 0),    # released after pedal-up: untouched
        (65, 60, 1.5, 1.5625, 0),    # released before pedal-down: untouched
        (67, 60, start67, end, 0),   # pedal never released: ends with the file
    ]
    assert notes_of(read_midi(path, sustain=False)) == [
        (60, 90, 0.0, 0.25, 0), (62, 80, 0.5, 0.75, 0), (60, 70, 0.625, 1.25, 0),
        (65, 60, 1.5, 1.5625, 0), (67, 60, start67, round(1740 / 960, 9), 0)]


def test_pedal_of_another_channel_does_not_sustain(tmp_path, midi_tools):
    t = midi_tools
    track = [t.pedal(True, ch=1), t.on(60, 90), t.off(60, 240), t.pedal(False, 480, ch=1)]
    perf = read_midi(t.make_midi(tmp_path / "c.mid", [track], file_type=0))
    assert notes_of(perf) == [(60, 90, 0.0, 0.25, 0)]


def test_bad_files_raise_midi_error_naming_the_file(tmp_path, midi_tools):
    t = midi_tools
    good = t.make_midi(tmp_path / "good.mid", [[t.on(60), t.off(60, 480)]], 0).read_bytes()
    cases = {"empty.mid": (b"", "empty"), "trunc.mid": (good[:-6], "truncated"),
             "text.mid": (b"hello, this is not MIDI at all\n" * 4, "not a MIDI file"),
             "type2.mid": (midi_tools.raw_midi([[(0, b"\x90\x3c\x64")]], fmt=2), "type 2"),
             "smpte.mid": (midi_tools.raw_midi([[(0, b"\x90\x3c\x64")]], tpb=0xE728), "SMPTE")}
    for name, (data, reason) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(MidiError, match=reason) as err:
            read_midi(path)
        assert name in str(err.value) and err.value.path == str(path)
        assert isinstance(err.value, ValueError)
    with pytest.raises(MidiError, match="missing.mid.*cannot be read"):
        read_midi(tmp_path / "missing.mid")


def test_write_read_round_trip_on_the_10ms_grid(tmp_path):
    notes = [Note(60, 100, 0.0, 0.51, 3), Note(64, 1, 0.01, 0.02, 3), Note(67, 127, 0.33, 2.97, 7),
             Note(60, 90, 0.51, 1.23, 3), Note(21, 64, 12.34, 12.35, 7)]
    write_midi(notes, tmp_path / "w1.mid")
    back = read_midi(tmp_path / "w1.mid")
    assert [(n.pitch, n.velocity, n.track) for n in back.notes] == \
        [(60, 100, 1), (64, 1, 1), (67, 127, 2), (60, 90, 1), (21, 64, 2)]
    for a, b in zip(notes, back.notes):
        assert abs(a.start - b.start) < 1e-9 and abs(a.end - b.end) < 1e-9
    assert back.tempos == [(0.0, 500000)] and back.ticks_per_beat == 500
    mid = mido.MidiFile(tmp_path / "w1.mid")
    assert mid.type == 1 and len(mid.tracks) == 3

    write_midi(notes, tmp_path / "w0.mid", file_type=0, ticks_per_beat=960)
    back0 = read_midi(tmp_path / "w0.mid")
    assert mido.MidiFile(tmp_path / "w0.mid").type == 0
    assert {n.track for n in back0.notes} == {0}
    for a, b in zip(sorted(notes, key=lambda n: (n.start, n.pitch)), back0.notes):
        assert abs(a.start - b.start) < 6e-4 and abs(a.end - b.end) < 6e-4


def test_write_gives_zero_length_notes_one_tick(tmp_path):
    write_midi([Note(60, 80, 0.5, 0.5)], tmp_path / "z.mid")
    (n,) = read_midi(tmp_path / "z.mid").notes
    assert n.start == pytest.approx(0.5) and n.end == pytest.approx(0.501)


def test_write_rejects_bad_notes(tmp_path):
    with pytest.raises(ValueError, match="note 1: pitch must be in 0..127, got 128"):
        write_midi([Note(60, 80, 0, 1), Note(128, 80, 0, 1)], tmp_path / "x.mid")
    with pytest.raises(ValueError, match="velocity must be in 1..127, got 0"):
        write_midi([Note(60, 0, 0, 1)], tmp_path / "x.mid")
    with pytest.raises(ValueError, match="start=2"):
        write_midi([Note(60, 80, 2, 1)], tmp_path / "x.mid")
    with pytest.raises(ValueError, match="file_type must be 0 or 1, got 2"):
        write_midi([], tmp_path / "x.mid", file_type=2)


def test_raw_header_builder_is_valid(midi_tools):
    data = midi_tools.raw_midi([[(0, b"\x90\x3c\x64")]], fmt=1, tpb=96)
    assert data[:4] == b"MThd" and struct.unpack(">IHHH", data[4:14]) == (6, 1, 1, 96)


@pytest.mark.parametrize("value,end", [(64, 0.75), (63, 0.25), (127, 0.75), (0, 0.25)])
def test_pedal_is_down_from_value_64(tmp_path, midi_tools, value, end):
    t = midi_tools
    track = [mido.Message("control_change", control=64, value=value, time=0), t.on(60, 90), t.off(60, 240),
             mido.Message("control_change", control=64, value=0, time=480)]
    perf = read_midi(t.make_midi(tmp_path / "v.mid", [track], file_type=0))
    assert notes_of(perf) == [(60, 90, 0.0, end, 0)]
