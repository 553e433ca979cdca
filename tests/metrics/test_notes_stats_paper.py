"""Note statistics, paper convention: the pypianoroll 0.5.3 / mgeval quirks, worked by hand.

At 120 bpm and 24 steps per beat a step is 1/48 s, so time t sits at step position 48 t; onsets
round that position, offsets truncate it. Times avoid exact step boundaries.
"""
import math

import pytest

from tgan.data.notes import Note, Performance
from tgan.metrics import aps, ebr, ioi, isr, note_statistics, npu, pcu, pr, prs, tup


def perf(*notes, tempos=None, tpb=480):
    """Performance from (pitch, start, end[, track]) tuples, velocity 64, in the given order."""
    out = [Note(n[0], 64, float(n[1]), float(n[2]), n[3] if len(n) > 3 else 0) for n in notes]
    return Performance(out, tempos or [(0.0, 500000)], tpb)


def active_fraction(p, **kw):
    """Fraction of roll steps with any active pitch (polyphonic rate with threshold 0)."""
    return prs(p, "paper", threshold=0, **kw)


def test_pcu_folds_ten_consecutive_pitches_not_octaves():
    p = perf((58, 0.0, 0.5), (70, 0.5, 1.0), (60, 1.0, 1.5), (72, 1.5, 2.0))
    # groups 58//10=5, 70//10=7, 60//10=6, 72//10=7 -> {5, 6, 7}; pitch classes would be {10, 0}
    assert pcu(p, "paper") == 3
    assert pcu(p) == 2
    q = perf((60, 0.0, 0.5), (64, 0.5, 1.0), (67, 1.0, 1.5), (72, 1.5, 2.0))
    # C E G C: classes {0, 4, 7} = 3; groups {6, 6, 6, 7} = 2
    assert (pcu(q), pcu(q, "paper")) == (3, 2)


def test_pitches_120_and_up_light_every_group():
    p = perf((121, 0.01, 0.99))
    # pypianoroll adds pitch 120+k into position k of all 12 groups (a broadcast): 12 groups
    assert pcu(p, "paper") == 12 and pcu(p) == 1 and npu(p, "paper") == 1
    # 47 active steps (0 to 47.52 -> [0, 47)); the roll is mutated to hold 12 copies + the
    # original: 13 * 47 cells, of which the 7 C-major groups hold 7 * 47 -> 7/13
    assert isr(p, "paper") == pytest.approx(7 / 13)


def test_ebr_returns_the_non_empty_rate():
    p = perf((60, 0.01, 0.99), (64, 1.77, 1.99))
    # beats 0, .5, 1, 1.5 -> 96 steps; note 1 [0, 47) covers beats 0-1, note 2 [85, 95) beat 3
    # -> 3 of 4 beats NOT empty (the true empty-beat rate is 1/4)
    assert ebr(p, "paper") == pytest.approx(0.75)
    assert ebr(p) == pytest.approx(0.25)


def test_onset_rounds_and_offset_truncates():
    p = perf((60, 0.01, 0.99), (64, 1.77, 1.99))
    # note 1: 0.48 -> 0, 47.52 -> 47: 47 steps; note 2: 84.96 -> 85, 95.52 -> 95: 10 steps
    # 57 of 96 steps active (floor/floor would give 47 + 11, round/round 48 + 11)
    assert active_fraction(p) == pytest.approx(57 / 96)


def test_beats_follow_the_tempo_map():
    p = perf((60, 0.01, 0.49), (62, 1.3, 1.4), tempos=[(0.0, 500000), (1.0, 250000)])
    # beats 0, .5, 1.0 then 240 bpm: 1.25 (1.5 is past the end 1.4) -> 4 beats, 96 steps;
    # extra beat 2 * 1.25 - 1.0 = 1.5. note 1: [0, 23) (23.52 -> 23);
    # note 2: 3 + 0.05/0.25 = 3.2 beats -> 76.8 -> 77; 3.6 beats -> 86.4 -> 86: 9 steps
    assert active_fraction(p) == pytest.approx(32 / 96)
    # non-empty beats: 0 and 3 -> 2/4 (a constant 120 bpm would give 3 beats, 2/3)
    assert ebr(p, "paper") == pytest.approx(0.5)


def test_repeated_note_leaves_a_one_step_gap():
    p = perf((60, 0.01, 0.51), (60, 0.51, 0.99))
    # note 1 [0, 24) (24.48 -> 24); note 2 onset round(24.48) = 24 finds step 23 active and
    # clears it, then fills [24, 47): 46 of 48 steps active (not 47)
    assert active_fraction(p) == pytest.approx(46 / 48)
    assert prs(p, min_pitches=1) == pytest.approx(0.98 / 0.99)  # correct: no gap
    # 4 steps per beat: [0, 4) then onset 4 clears step 3, [4, 7): 6 of 8
    assert active_fraction(p, resolution=4) == pytest.approx(6 / 8)


def test_overlapping_same_pitch_cuts_the_earlier_note():
    p = perf((60, 0.01, 0.99), (60, 0.51, 1.49))
    # drawn in note-off order: [0, 47); then onset 24 clears step 23; [24, 71) (71.52 -> 71)
    # active: 0..22 and 24..70 = 70 of 72 steps
    assert active_fraction(p) == pytest.approx(70 / 72)


def test_notes_are_drawn_in_note_off_order():
    p = perf((60, 0.01, 1.49), (60, 0.51, 0.99))
    # pretty_midi lists a note when its note-off arrives: the inner note first, [24, 47); then
    # [0, 71) (71.52 -> 71) covers it: 71 of 72 steps. Drawn in onset order instead, the inner
    # note would clear step 23 and end one step early: 70 of 72.
    assert active_fraction(p) == pytest.approx(71 / 72)


def test_isr_masks_ten_pitch_groups_over_active_cells():
    p = perf((60, 0.01, 1.99), (70, 0.01, 0.99), (72, 0.01, 0.99))
    # cells: 60 -> [0, 95) = 95, 70 and 72 -> [0, 47) = 47 each
    # groups: 60 -> 6 (out of {0,2,4,5,7,9,11}), 70, 72 -> 7 (in): 94 / 189
    assert isr(p, "paper") == pytest.approx(94 / 189)
    # by pitch class (60, 72 in; 70 out) in time: (1.98 + 0.98) / (1.98 + 0.98 + 0.98)
    assert isr(p) == pytest.approx(2.96 / 3.94)


def test_prs_counts_more_than_threshold():
    five = [(q, 0.01, 0.99) for q in (60, 62, 64, 65, 67)]
    four = [(q, 2.01, 2.99) for q in (60, 62, 64, 65)]
    p = perf(*five, *four, (72, 3.51, 3.99))
    # 8 beats -> 192 steps; 5 pitches on [0, 47), 4 pitches on [96, 143) (96.48, 143.52)
    assert prs(p, "paper") == pytest.approx(47 / 192)  # > 4: the four-note chord is out
    assert prs(p, "paper", threshold=3) == pytest.approx(94 / 192)
    assert prs(p, "paper", threshold=2) == pytest.approx(94 / 192)  # pypianoroll's default
    assert prs(p, "paper", threshold=5) == 0.0
    assert prs(p) == pytest.approx(1.96 / 3.99)  # correct: >= 4, continuous time


def test_notes_shorter_than_a_step_or_column_vanish():
    p = perf((60, 0.01, 0.99), (64, 1.001, 1.009))
    # 64: roll position 48.048 -> onset 48, 48.43 -> offset 48: no cell;
    # 100 Hz columns int(100.1) = int(100.9) = 100: no column either
    assert npu(p, "paper") == 1 and tup(p, "paper") == 1
    assert npu(p) == 2 and tup(p) == 2


def test_tup_and_pr_read_the_first_instrument_only():
    p = perf((60, 0.0, 1.0, 1), (64, 1.0, 2.0, 1), (30, 0.0, 2.0, 2), (90, 0.5, 1.5, 2),
             (50, 1.001, 1.009, 1))
    # track 1: 60, 64 (50 fills no 100 Hz column) -> 2 pitches, range 4; track 2 ignored
    assert (tup(p, "paper"), pr(p, "paper")) == (2, 4)
    assert (tup(p), pr(p)) == (5, 60)
    # the first instrument is the lowest track with notes, whatever its index
    q = perf((30, 0.0, 2.0, 3), (62, 0.0, 1.0, 2), (65, 0.5, 1.5, 2))
    assert (tup(q, "paper"), pr(q, "paper")) == (2, 3)


def test_aps_reads_one_track_in_file_order_chords_included():
    # chord written 67, 60, 64 at t=0 (file order), then 72, then 62, all in track 1
    p = perf((67, 0.0, 1.0, 1), (60, 0.0, 1.0, 1), (64, 0.0, 1.0, 1), (30, 0.5, 0.6, 2),
             (72, 1.0, 2.0, 1), (62, 2.0, 3.0, 1))
    # 67->60->64->72->62: 7, 4, 8, 10 -> 29/4; the track-2 note is not read
    assert aps(p, "paper") == pytest.approx(29 / 4)
    assert aps(p, "paper", track=1) == pytest.approx(29 / 4)
    assert math.isnan(aps(p, "paper", track=2))  # one note in track 2
    assert aps(p) == pytest.approx(257 / 9)  # correct: chord means, all tracks


def test_ioi_counts_simultaneous_onsets_as_zero():
    p = perf((60, 0.0, 0.4), (64, 0.0, 0.4), (62, 0.5, 1.0), (65, 1.5, 2.0))
    # sorted starts 0, 0, 0.5, 1.5: diffs 0, 0.5, 1.0 -> 0.5 (correct: 0.75)
    assert ioi(p, "paper") == pytest.approx(0.5)
    assert ioi(p) == pytest.approx(0.75)


def test_a_piece_shorter_than_one_beat_gets_one_beat():
    p = perf((60, 0.01, 0.3))
    # pypianoroll cannot build a one-beat roll; here: 24 steps, [0, 14) (14.4 -> 14)
    assert active_fraction(p) == pytest.approx(14 / 24)
    assert ebr(p, "paper") == 1.0


def test_times_are_recomputed_on_pretty_midi_clock():
    # tick 112 at 384 ticks per beat, 120 bpm: a reader computing 112 * 500000 / (1e6 * 384) gets
    # 0.14583333333333334; pretty_midi computes 112 * (60 / (120 * 384)) = 0.14583333333333331.
    # That is step 7 exactly, and pypianoroll truncates pretty_midi's 6.9999... to 6.
    end = 112 * 500000 / (1e6 * 384)
    assert end * 48 >= 7.0
    p = perf((60, 0.0, end), tpb=384)
    assert active_fraction(p) == pytest.approx(6 / 24)


# Performance as read from a MIDI file (96 ticks per beat, tempo 120 -> 85.7 -> 150 qpm, two
# note tracks with repeated and overlapping pitches, notes on exact step boundaries). The expected
# values come from pypianoroll 0.5.3 (Multitrack -> merged -> binarised) and from mgeval's
# definitions on pretty_midi 0.2.9, run on that file.
GOLDEN_TEMPOS = [(0.0, 500000), (1.5104166666666665, 700000), (3.9020833333333336, 400000)]
GOLDEN_NOTES = [
    (61, 78, 0.010416666666666666, 0.5104166666666666, 2),
    (54, 111, 0.29166666666666663, 0.7916666666666666, 2),
    (62, 105, 0.29166666666666663, 0.3125, 2),
    (62, 82, 0.375, 0.625, 1),
    (42, 92, 0.3958333333333333, 0.41666666666666663, 2),
    (60, 55, 0.4114583333333333, 1.015625, 1),
    (61, 48, 0.41666666666666663, 0.5104166666666666, 2),
    (42, 92, 0.41666666666666663, 0.5729166666666666, 2),
    (62, 82, 0.625, 0.65625, 1),
    (60, 97, 0.625, 1.015625, 1),
    (61, 48, 0.6666666666666666, 0.7291666666666666, 2),
    (104, 2, 0.6927083333333333, 0.9427083333333333, 2),
    (54, 111, 0.7916666666666666, 0.9114583333333333, 2),
    (61, 105, 0.875, 2.1666666666666665, 1),
    (60, 58, 0.890625, 1.015625, 1),
    (50, 15, 0.9375, 1.1875, 2),
    (104, 2, 0.9427083333333333, 1.0364583333333333, 2),
    (60, 97, 1.125, 1.140625, 1),
    (61, 21, 1.5, 1.7218749999999998, 2),
    (61, 21, 1.7218749999999998, 2.130208333333333, 2),
    (62, 54, 1.7291666666666665, 1.7583333333333333, 2),
    (62, 54, 1.7583333333333333, 1.809375, 2),
    (61, 125, 2.4875, 3.1875, 1),
    (79, 74, 2.9614583333333333, 3.3114583333333334, 1),
    (62, 49, 3.0708333333333333, 3.1291666666666664, 1),
    (33, 124, 3.6906250000000003, 3.98125, 1),
    (34, 25, 3.829166666666667, 3.8583333333333334, 1),
    (96, 111, 4.260416666666667, 4.660416666666666, 2),
    (106, 116, 4.352083333333334, 4.36875, 2),
    (54, 4, 4.360416666666667, 4.377083333333333, 2),
    (62, 62, 4.727083333333334, 5.127083333333333, 1),
    (61, 66, 4.84375, 4.860416666666667, 1),
    (81, 40, 4.985416666666667, 4.989583333333334, 1),
]
GOLDEN = {"PCU": 7.0, "NPU": 10.0, "EBR": 1.0, "ISR": 0.296028880866426,
          "PRS": 0.016666666666666666, "TUP": 6.0, "PR": 46.0, "APS": 8.785714285714286,
          "IOI": 0.15546875}
GOLDEN_PRS = {1: 0.2125, 0: 0.7541666666666667}


def test_matches_the_libraries_on_a_file():
    p = Performance([Note(*n) for n in GOLDEN_NOTES], GOLDEN_TEMPOS, 96)
    stats = note_statistics(p, "paper")
    for k, v in GOLDEN.items():
        assert stats[k] == pytest.approx(v, rel=1e-12, abs=1e-12), k
    for threshold, v in GOLDEN_PRS.items():
        assert prs(p, "paper", threshold=threshold) == pytest.approx(v, rel=1e-12), threshold
