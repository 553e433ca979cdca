"""encode / decode against hand-computed event lists, decoding repairs, and the round trip on
every maestro-mini file."""
import numpy as np
import pytest
import torch

from tgan.data import Note, Performance, Vocab, decode, encode, quantize, read_midi, tokens_to_midi
from tgan.data.events import quantized_steps
from tgan.data.vocab import velocity_to_bin

V = Vocab.maestro()


def ids(*names):
    return [V.id(n) for n in names]


def enc(notes, **kw):
    toks = encode(notes, V, **kw)
    assert toks.dtype == np.int16
    return V.names(toks)


def test_single_note():
    assert enc([Note(60, 100, 0.0, 0.5)]) == ["VELOCITY_25", "NOTE_ON_60", "TIME_SHIFT_50",
                                              "NOTE_OFF_60"]


def test_leading_silence_and_long_gaps_repeat_time_shift_100():
    notes = [Note(62, 80, 5.0, 5.3), Note(60, 80, 2.5, 2.6)]  # input order does not matter
    assert enc(notes) == ["TIME_SHIFT_100", "TIME_SHIFT_100", "TIME_SHIFT_50", "VELOCITY_20",
                          "NOTE_ON_60", "TIME_SHIFT_10", "NOTE_OFF_60", "TIME_SHIFT_100",
                          "TIME_SHIFT_100", "TIME_SHIFT_40", "NOTE_ON_62", "TIME_SHIFT_30",
                          "NOTE_OFF_62"]


def test_same_step_offs_before_ons_ascending_pitch_and_velocity_changes():
    notes = [Note(64, 50, 0.0, 0.5), Note(60, 100, 0.0, 0.5),
             Note(60, 100, 0.5, 1.0), Note(67, 52, 0.5, 1.0)]
    assert enc(notes) == ["VELOCITY_25", "NOTE_ON_60", "VELOCITY_13", "NOTE_ON_64",
                          "TIME_SHIFT_50", "NOTE_OFF_60", "NOTE_OFF_64",
                          "VELOCITY_25", "NOTE_ON_60", "VELOCITY_13", "NOTE_ON_67",
                          "TIME_SHIFT_50", "NOTE_OFF_60", "NOTE_OFF_67"]


def test_velocity_event_only_when_the_bin_changes():
    notes = [Note(60, 97, 0.0, 0.1), Note(62, 100, 0.2, 0.3)]  # both bin 25
    assert enc(notes) == ["VELOCITY_25", "NOTE_ON_60", "TIME_SHIFT_10", "NOTE_OFF_60",
                          "TIME_SHIFT_10", "NOTE_ON_62", "TIME_SHIFT_10", "NOTE_OFF_62"]


def test_rounding_and_one_step_minimum():
    # 0.004 -> step 0, 0.0149 -> step 1, 0.005 -> step 1 (halves round up); a note of length 0
    # after rounding lasts one step.
    notes = [Note(60, 64, 0.004, 0.0149), Note(62, 64, 0.005, 0.005)]
    assert enc(notes) == ["VELOCITY_16", "NOTE_ON_60", "TIME_SHIFT_1", "NOTE_OFF_60",
                          "NOTE_ON_62", "TIME_SHIFT_1", "NOTE_OFF_62"]


def test_overlapping_notes_of_one_pitch():
    assert enc([Note(60, 80, 0.0, 1.0), Note(60, 80, 0.5, 0.7)]) == \
        ["VELOCITY_20", "NOTE_ON_60", "TIME_SHIFT_50", "NOTE_OFF_60", "NOTE_ON_60",
         "TIME_SHIFT_20", "NOTE_OFF_60"]
    # Same onset step: only the last in input order is kept.
    assert enc([Note(60, 80, 0.0, 1.0), Note(60, 40, 0.001, 0.3)]) == \
        ["VELOCITY_10", "NOTE_ON_60", "TIME_SHIFT_30", "NOTE_OFF_60"]


def test_out_of_range_pitches_raise_or_drop():
    notes = [Note(10, 80, 0.0, 0.1), Note(60, 80, 0.0, 0.1)]
    with pytest.raises(ValueError, match="note 0: pitch must be in 21..108.*got 10"):
        encode(notes, V)
    assert enc(notes, out_of_range="drop") == ["VELOCITY_20", "NOTE_ON_60", "TIME_SHIFT_10",
                                               "NOTE_OFF_60"]
    full = Vocab.full()
    assert full.names(encode(notes, full))[:3] == ["VELOCITY_20", "NOTE_ON_10", "NOTE_ON_60"]
    with pytest.raises(ValueError, match="out_of_range must be 'raise' or 'drop'"):
        encode(notes, V, out_of_range="clip")


def test_bad_notes_raise():
    with pytest.raises(ValueError, match="note 0: velocity must be in 1..127, got 0"):
        encode([Note(60, 0, 0.0, 0.1)], V)
    with pytest.raises(ValueError, match="note 0: times"):
        encode([Note(60, 10, 0.5, 0.1)], V)


def test_eos_empty_and_performance_input():
    assert enc([], eos=True) == ["EOS"]
    assert encode([], V).shape == (0,)
    perf = Performance([Note(60, 100, 0.0, 0.5)])
    assert enc(perf) == enc(perf.notes)


def test_decode_orphan_note_off_and_restrike():
    notes, st = decode(ids("NOTE_OFF_60", "VELOCITY_20", "NOTE_ON_62", "TIME_SHIFT_10",
                           "NOTE_OFF_62"), V)
    assert notes == [Note(62, 77, 0.0, 0.1)] and st.orphan_note_offs == 1
    notes, st = decode(ids("NOTE_ON_60", "TIME_SHIFT_10", "NOTE_ON_60", "TIME_SHIFT_10",
                           "NOTE_OFF_60"), V)
    assert notes == [Note(60, 64, 0.0, 0.1), Note(60, 64, 0.1, 0.2)]  # 64 before any VELOCITY
    assert st.restruck == 1 and st.repaired == 1
    notes, st = decode(ids("NOTE_ON_60", "NOTE_ON_60", "TIME_SHIFT_10", "NOTE_OFF_60"), V)
    assert notes == [Note(60, 64, 0.0, 0.1)] and (st.restruck, st.zero_length) == (1, 1)


def test_decode_unclosed_notes():
    toks = ids("VELOCITY_20", "NOTE_ON_60", "TIME_SHIFT_10", "NOTE_ON_62", "TIME_SHIFT_10",
               "NOTE_OFF_62")
    notes, st = decode(toks, V)
    assert notes == [Note(60, 77, 0.0, 3.0), Note(62, 77, 0.1, 0.2)] and st.unclosed == 1
    notes, _ = decode(toks, V, max_note_duration=None)
    assert notes[0] == Note(60, 77, 0.0, 0.2)
    notes, st = decode(ids("NOTE_ON_60"), V, max_note_duration=None)
    assert notes == [] and st.zero_length == 1
    # A note closed by its NOTE_OFF is never capped.
    notes, _ = decode(ids("NOTE_ON_60", *["TIME_SHIFT_100"] * 5, "NOTE_OFF_60"), V)
    assert notes == [Note(60, 64, 0.0, 5.0)]


def test_decode_specials():
    toks = ids("PAD", "VELOCITY_20", "NOTE_ON_60", "MASK", "TIME_SHIFT_10", "NOTE_OFF_60", "EOS",
               "NOTE_ON_62", "TIME_SHIFT_10")
    notes, st = decode(toks, V)
    assert notes == [Note(60, 77, 0.0, 0.1)]
    assert (st.pad, st.mask, st.eos, st.after_eos, st.n_tokens, st.n_notes) == \
        (1, 1, True, 2, 7, 1)
    # Tensors and lists work; ids outside the vocab are an error, not a repair.
    assert decode(torch.tensor(toks), V)[0] == notes
    with pytest.raises(ValueError, match="ids in 0..310.*got 311"):
        decode([3, 311], V)


def test_tokens_to_midi(tmp_path):
    toks = encode([Note(60, 100, 0.0, 0.5), Note(64, 50, 0.25, 1.33)], V)
    stats = tokens_to_midi(toks, V, tmp_path / "out.mid")
    assert stats.n_notes == 2
    back = read_midi(tmp_path / "out.mid")
    assert [(n.pitch, n.velocity, n.start, n.end) for n in back.notes] == \
        [(n.pitch, n.velocity, pytest.approx(n.start), pytest.approx(n.end))
         for n in decode(toks, V)[0]]
    assert np.array_equal(encode(back, V), toks)


def test_round_trip_on_every_maestro_mini_file(maestro_performances):
    assert len(maestro_performances) == 48
    for path, perf in maestro_performances:
        toks = encode(perf, V, out_of_range="drop")
        notes, st = decode(toks, V)
        assert st.repaired == 0 and st.pad == st.mask == 0, path
        assert np.array_equal(encode(notes, V), toks), path     # identical events
        rows, dropped = quantized_steps(perf, V, out_of_range="drop")
        assert dropped <= len(perf.notes) // 1000, path          # overlaps cut, rarely dropped
        # decode gives the quantized notes (quantize()), sorted by start then pitch ...
        rows = rows[np.lexsort((rows[:, 2], rows[:, 0]))]
        assert [(n.pitch, velocity_to_bin(n.velocity), round(n.start * 100), round(n.end * 100))
                for n in notes] == [tuple(r) for r in rows[:, [2, 3, 0, 1]].tolist()], path
        # ... whose onsets are within 5 ms of the source's, with its pitch and velocity bin.
        src = np.array([(n.start, n.pitch, velocity_to_bin(n.velocity)) for n in perf.notes])
        i = rows[:, 4]
        assert np.abs(rows[:, 0] * 0.01 - src[i, 0]).max() <= 0.005 + 1e-9, path
        assert np.array_equal(rows[:, 2], src[i, 1]) and np.array_equal(rows[:, 3], src[i, 2])


def test_quantize_matches_decode():
    notes = [Note(60, 100, 0.013, 0.5), Note(60, 30, 0.2, 0.9), Note(72, 1, 0.2, 0.2)]
    assert quantize(notes, V) == decode(encode(notes, V), V)[0] == \
        [Note(60, 97, 0.01, 0.2), Note(60, 29, 0.2, 0.9), Note(72, 1, 0.2, 0.21)]
