"""Note statistics, correct convention and the public API: hand-made note lists, worked by hand.

Times are chosen off the paper convention's step boundaries (1/48 s at 120 bpm) wherever both
conventions are checked, so the arithmetic in the comments is exact.
"""
import math
import time

import numpy as np
import pytest

from tgan.data.notes import Note, Performance
from tgan.metrics import (STATISTICS, aggregate, aps, clip, ebr, ioi, isr, note_statistics, npu,
                          pcu, pr, prs, tup)


def perf(*notes, tempos=None):
    """Performance from (pitch, start, end[, track]) tuples, velocity 64, in the given order."""
    out = [Note(n[0], 64, float(n[1]), float(n[2]), n[3] if len(n) > 3 else 0) for n in notes]
    return Performance(out, tempos or [(0.0, 500000)])


def test_pitch_counts_use_pitch_class_mod_12():
    p = perf((58, 0.0, 0.5), (70, 0.5, 1.0), (60, 1.0, 1.5), (72, 1.5, 2.0), (60, 2.0, 2.5))
    # classes 58%12=10, 70%12=10, 60%12=0, 72%12=0 -> {0, 10}
    assert pcu(p) == 2
    # pitches {58, 70, 60, 72}; TUP's true definition is the same count
    assert npu(p) == 4 and tup(p) == 4
    assert pr(p) == 72 - 58


def test_short_notes_and_all_tracks_count_in_correct_convention():
    # a 8 ms note still sounds, and a second track is part of the piece
    p = perf((60, 0.0, 1.0, 1), (64, 1.001, 1.009, 1), (30, 0.0, 2.0, 2), (90, 0.5, 1.5, 2))
    assert npu(p) == 4 and tup(p) == 4
    assert pr(p) == 90 - 30


def test_ebr_counts_empty_beats_on_the_tempo_map():
    p = perf((60, 0.01, 0.99), (64, 1.77, 1.99))
    # 120 bpm: beats at 0, 0.5, 1.0, 1.5 (last one before the end 1.99).
    # note 1 sounds in beats 0 and 1, note 2 in beat 3 -> beat 2 empty: 1/4
    assert ebr(p) == pytest.approx(0.25)
    # fixed grid of 0.25 s: beats 0..1.75 (8); occupied 0-3 (note 1) and 7 (1.77) -> 3 empty / 8
    assert ebr(p, beat=0.25) == pytest.approx(3 / 8)
    # grid of 1 s: beats 0, 1 -> both occupied
    assert ebr(p, beat=1.0) == 0.0


def test_ebr_note_ending_on_a_beat_does_not_occupy_the_next():
    p = perf((60, 0.0, 1.0), (64, 1.75, 2.0))
    # [0, 1.0) occupies beats 0, 1 only; beat 2 = [1.0, 1.5) empty; 1.75 -> beat 3: 1/4
    assert ebr(p) == pytest.approx(0.25)


def test_ebr_follows_a_tempo_change():
    p = perf((60, 0.01, 0.49), (62, 1.3, 1.4), tempos=[(0.0, 500000), (1.0, 250000)])
    # 120 bpm then 240 bpm at 1.0 s: beats 0, 0.5, 1.0, 1.25 (1.5 >= end 1.4).
    # occupied: beat 0 and beat 3 = [1.25, 1.5) -> 2 empty of 4
    assert ebr(p) == pytest.approx(0.5)
    # ignoring the tempo change (0.5 s grid): beats 0, 0.5, 1.0; 1.3 falls in beat 2 -> 1 of 3
    assert ebr(p, beat=0.5) == pytest.approx(1 / 3)


def test_isr_is_sounding_time_in_c_major_by_pitch_class():
    p = perf((60, 0.0, 2.0), (70, 0.0, 1.0), (72, 0.0, 1.0))
    # in scale: C (60) 2 s + C (72) 1 s = 3 s; B-flat (70) out; total 4 s -> 3/4
    assert isr(p) == pytest.approx(0.75)


def test_isr_counts_overlapping_notes_of_one_pitch_once():
    p = perf((60, 0.0, 1.0), (60, 0.5, 1.5), (61, 0.0, 1.0))
    # C sounds on [0, 1.5) = 1.5 s (not 2 s); C# 1 s -> 1.5 / 2.5
    assert isr(p) == pytest.approx(0.6)
    # scale = {C#} -> 1 / 2.5
    assert isr(p, scale=(1,)) == pytest.approx(0.4)


def test_prs_is_time_with_at_least_min_pitches_over_the_whole_span():
    five = [(q, 0.01, 0.99) for q in (60, 62, 64, 65, 67)]
    four = [(q, 2.01, 2.99) for q in (60, 62, 64, 65)]
    p = perf(*five, *four, (72, 3.51, 3.99))
    # span [0, 3.99); >= 4 pitches during 0.98 s (five) + 0.98 s (four); silence counts
    assert prs(p) == pytest.approx(1.96 / 3.99)
    assert prs(p, min_pitches=5) == pytest.approx(0.98 / 3.99)
    assert prs(p, min_pitches=6) == 0.0
    # >= 1 pitch: 0.98 + 0.98 + 0.48
    assert prs(p, min_pitches=1) == pytest.approx(2.44 / 3.99)


def test_aps_treats_a_chord_as_its_mean_pitch():
    # chord written 67, 60, 64 at t=0, then 72, then 62
    p = perf((67, 0.0, 1.0, 1), (60, 0.0, 1.0, 1), (64, 0.0, 1.0, 1), (72, 1.0, 2.0, 1),
             (62, 2.0, 3.0, 1))
    # chord mean 191/3; |72 - 191/3| = 25/3; |62 - 72| = 10 -> (25/3 + 10) / 2 = 55/6
    assert aps(p) == pytest.approx(55 / 6)
    # a note of another track joins the melody line: 30 at 0.5 s
    q = perf(*[(n.pitch, n.start, n.end, 1) for n in p.notes], (30, 0.5, 0.6, 2))
    # |30 - 191/3| = 101/3, |72 - 30| = 42, |62 - 72| = 10 -> (101/3 + 52) / 3 = 257/9
    assert aps(q) == pytest.approx(257 / 9)


def test_chord_tolerance_groups_a_rolled_chord():
    p = perf((60, 0.00, 1.0), (64, 0.01, 1.0), (67, 0.02, 1.0), (72, 1.0, 2.0))
    # exact onsets: four separate notes: |4| |3| |5| -> 4; onsets 0, .01, .02, 1.0 -> 1/3 s
    assert aps(p) == pytest.approx(4.0)
    assert ioi(p) == pytest.approx(1 / 3)
    # 15 ms tolerance: gaps of 10 ms chain into one chord (mean 191/3), then 72
    assert aps(p, chord_tol=0.015) == pytest.approx(25 / 3)
    assert ioi(p, chord_tol=0.015) == pytest.approx(1.0)


def test_ioi_is_between_distinct_onsets():
    p = perf((60, 0.0, 0.4), (64, 0.0, 0.4), (62, 0.5, 1.0), (65, 1.5, 2.0))
    # distinct onsets 0, 0.5, 1.5 -> (0.5 + 1.0) / 2
    assert ioi(p) == pytest.approx(0.75)


def test_single_note_and_empty_performance():
    one = perf((60, 0.0, 1.0))
    assert aps(one) != aps(one) and ioi(one) != ioi(one)  # NaN: no pair of onsets
    assert pcu(one) == 1 and pr(one) == 0
    for convention in ("correct", "paper"):
        stats = note_statistics(Performance([]), convention)
        assert list(stats) == list(STATISTICS)
        assert all(math.isnan(v) for v in stats.values())


def test_note_statistics_matches_the_single_functions():
    p = perf((60, 0.01, 0.99, 1), (64, 0.26, 1.49, 1), (67, 0.51, 1.99, 1), (71, 1.01, 1.24, 1))
    funcs = dict(PCU=pcu, NPU=npu, EBR=ebr, ISR=isr, PRS=prs, TUP=tup, PR=pr, APS=aps, IOI=ioi)
    for convention in ("correct", "paper"):
        stats = note_statistics(p, convention)
        assert tuple(stats) == STATISTICS
        for k, f in funcs.items():
            assert stats[k] == pytest.approx(f(p, convention), nan_ok=True), (convention, k)
    assert note_statistics(p, "correct", min_pitches=2)["PRS"] == prs(p, min_pitches=2)
    assert note_statistics(p, "correct", min_pitches=2)["PRS"] != prs(p)


def test_bad_arguments_are_named():
    p = perf((60, 0.0, 1.0))
    with pytest.raises(ValueError, match="convention"):
        pcu(p, "papers")
    with pytest.raises(ValueError, match="convention"):
        note_statistics(p, convention="true")
    with pytest.raises(ValueError, match="threshold"):
        prs(p, "correct", threshold=3)
    with pytest.raises(ValueError, match="min_pitches"):
        note_statistics(p, "paper", min_pitches=3)
    with pytest.raises(TypeError, match="bogus"):
        note_statistics(p, bogus=1)
    with pytest.raises(ValueError, match="beat"):
        ebr(p, beat=-0.5)
    with pytest.raises(ValueError, match="min_pitches"):
        prs(p, min_pitches=0)
    with pytest.raises(ValueError, match="scale"):
        isr(p, scale=(12,))


def test_clip_keeps_the_first_seconds():
    p = perf((60, 0.0, 1.0), (62, 0.5, 2.0), (64, 2.5, 3.0),
             tempos=[(0.0, 500000), (2.0, 400000)])
    c = clip(p, 1.5)
    assert [(n.pitch, n.start, n.end) for n in c.notes] == [(60, 0.0, 1.0), (62, 0.5, 1.5)]
    assert c.tempos == [(0.0, 500000)]
    assert p.notes[1].end == 2.0  # the input is left alone
    assert len(clip(p).notes) == 3
    with pytest.raises(ValueError, match="seconds"):
        clip(p, 0)


def test_aggregate_averages_and_skips_nan():
    rows = [{"PCU": 1.0, "EBR": math.nan}, {"PCU": 3.0, "EBR": 0.5}, {"PCU": 2.0, "EBR": math.nan}]
    ag = aggregate(rows)
    assert ag["mean"] == {"PCU": 2.0, "EBR": 0.5}
    # population std of 1, 3, 2 = sqrt(2/3)
    assert ag["std"]["PCU"] == pytest.approx(math.sqrt(2 / 3)) and ag["std"]["EBR"] == 0.0
    assert ag["n"] == {"PCU": 3, "EBR": 1}
    assert math.isnan(aggregate([{"APS": math.nan}])["mean"]["APS"])


def test_a_whole_piece_takes_well_under_a_second():
    rng = np.random.default_rng(0)
    start = np.sort(rng.uniform(0, 600, 10_000))  # 10k notes over 10 minutes, like MAESTRO
    notes = [Note(int(q), 64, float(s), float(s + d), 1)
             for q, s, d in zip(rng.integers(21, 109, 10_000), start, rng.uniform(0.05, 2, 10_000))]
    p = Performance(notes, [(0.0, 500000)])
    for convention in ("correct", "paper"):
        t = time.perf_counter()
        note_statistics(p, convention)
        # measured about 0.05 s on a shared 2-core CPU; 1 s leaves room for a loaded machine
        assert time.perf_counter() - t < 1.0, convention
