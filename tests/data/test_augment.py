import numpy as np
import pytest

from tgan.data import Note, Vocab, decode, encode, quantize
from tgan.data.augment import (STRETCHES, TRANSPOSITIONS, augment_variants, random_augment,
                               stretch_notes, stretch_tokens, token_pitch_range,
                               transpose_notes, transpose_tokens, valid_shifts)

V = Vocab.maestro()


def melody(lo=60, hi=72, n=40, seed=0):
    """Random overlapping notes with pitches in lo..hi, on and off the 10 ms grid."""
    rng = np.random.default_rng(seed)
    notes = []
    for _ in range(n):
        start = float(rng.uniform(0, 8))
        notes.append(Note(int(rng.integers(lo, hi + 1)), int(rng.integers(1, 128)), start,
                          start + float(rng.uniform(0, 1.5))))
    return notes


def test_grid():
    assert TRANSPOSITIONS == (-3, -2, -1, 0, 1, 2, 3)
    assert STRETCHES == (0.95, 0.975, 1.0, 1.025, 1.05)


def test_all_35_variants_in_the_middle_of_the_range():
    notes = melody()
    variants = augment_variants(notes, V)
    assert len(variants) == 35
    assert [(s, f) for s, f, _ in variants[:6]] == [(-3, 0.95), (-3, 0.975), (-3, 1.0),
                                                    (-3, 1.025), (-3, 1.05), (-2, 0.95)]
    for shift, stretch, out in variants:
        for a, b in zip(notes, out):
            assert b.pitch == a.pitch + shift and b.velocity == a.velocity
            assert b.start == pytest.approx(a.start * stretch)
            assert b.end == pytest.approx(a.end * stretch)


def test_out_of_range_combinations_dropped():
    low = [Note(22, 80, 0.0, 1.0), Note(60, 80, 0.5, 1.0)]   # only -1 of the downward shifts
    assert {s for s, _, _ in augment_variants(low, V)} == {-1, 0, 1, 2, 3}
    high = [Note(107, 80, 0.0, 1.0)]
    assert {s for s, _, _ in augment_variants(high, V)} == {-3, -2, -1, 0, 1}
    assert len(augment_variants(high, Vocab.full())) == 35
    assert valid_shifts(21, 108, V) == [0]
    assert valid_shifts(None, None, V) == list(TRANSPOSITIONS)
    assert len(augment_variants([], V)) == 35
    with pytest.raises(ValueError, match="outside the 'maestro' vocab range"):
        random_augment([Note(10, 80, 0, 1)], V, np.random.default_rng(0))


def test_random_augment_draws_valid_combinations():
    rng = np.random.default_rng(1)
    low = [Note(22, 80, 0.0, 1.0)]
    seen = set()
    for _ in range(200):
        shift, stretch, out = random_augment(low, V, rng)
        assert shift >= -1 and stretch in STRETCHES and out[0].pitch == 22 + shift
        seen.add((shift, stretch))
    assert len(seen) == 25


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_transpose_tokens_equals_transposing_notes(seed):
    notes = melody(24, 105, n=60, seed=seed)
    toks = encode(notes, V)
    lo, hi = token_pitch_range(toks, V)
    assert (lo, hi) == (min(n.pitch for n in notes), max(n.pitch for n in notes))
    for shift in TRANSPOSITIONS:
        out = transpose_tokens(toks, V, shift)
        if shift in valid_shifts(lo, hi, V):
            assert np.array_equal(out, encode(transpose_notes(notes, shift), V))
        else:
            assert out is None


def test_transpose_tokens_on_the_edges():
    toks = encode([Note(21, 80, 0, 1), Note(108, 80, 0, 1)], V)
    assert np.array_equal(transpose_tokens(toks, V, 0), toks)
    assert transpose_tokens(toks, V, 1) is None and transpose_tokens(toks, V, -1) is None
    assert token_pitch_range(encode([], V), V) == (None, None)


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_stretch_tokens(seed):
    notes = quantize(melody(n=80, seed=seed), V)
    toks = encode(notes, V)
    for stretch in STRETCHES:
        out = stretch_tokens(toks, V, stretch)
        ref = encode(stretch_notes(notes, stretch), V)
        if stretch >= 1:
            assert np.array_equal(out, ref), stretch
        # Always: the same non-shift events in the same order, decoding without repairs, and
        # every event within one step of where stretching the notes puts it.
        kinds = V.kinds[out.astype(np.int64)]
        assert np.array_equal(out[kinds != 3], toks[V.kinds[toks.astype(np.int64)] != 3])
        got, st = decode(out, V)
        assert st.repaired == 0
        want, _ = decode(ref, V)
        key = lambda n: (n.pitch, n.start)  # noqa: E731
        for a, b in zip(sorted(got, key=key), sorted(want, key=key)):
            assert a.pitch == b.pitch and abs(a.start - b.start) <= 0.0100001


def test_stretch_tokens_of_a_crop_rescales_the_trailing_shift():
    names = ["TIME_SHIFT_100", "TIME_SHIFT_100", "NOTE_ON_60", "TIME_SHIFT_40"]
    out = stretch_tokens([V.id(n) for n in names], V, 1.05)
    assert V.names(out) == ["TIME_SHIFT_100", "TIME_SHIFT_100", "TIME_SHIFT_10", "NOTE_ON_60",
                            "TIME_SHIFT_42"]
    with pytest.raises(ValueError, match="stretch must be positive, got 0"):
        stretch_tokens(out, V, 0)


def test_stretch_below_one_keeps_distinct_steps_distinct():
    # Steps 10 and 11 both round to 10 at 0.95; the second event is pushed to step 11.
    names = ["TIME_SHIFT_10", "NOTE_ON_60", "TIME_SHIFT_1", "NOTE_OFF_60"]
    out = stretch_tokens([V.id(n) for n in names], V, 0.95)
    assert V.names(out) == ["TIME_SHIFT_10", "NOTE_ON_60", "TIME_SHIFT_1", "NOTE_OFF_60"]
