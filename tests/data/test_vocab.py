import numpy as np
import pytest

from tgan.data.vocab import (NOTE_OFF, NOTE_ON, SPECIAL, TIME_SHIFT, VELOCITY, Vocab,
                             bin_to_velocity, velocity_to_bin)


@pytest.mark.parametrize("name,events,size,lo,hi", [("maestro", 308, 311, 21, 108),
                                                     ("full", 388, 391, 0, 127)])
def test_sizes_and_layout(name, events, size, lo, hi):
    v = Vocab.by_name(name)
    assert (v.num_events, v.size, v.lm_size) == (events, size, size - 1)
    assert (v.min_pitch, v.max_pitch, v.preset) == (lo, hi, name)
    assert (v.pad_id, v.eos_id, v.mask_id) == (0, 1, size - 1)
    p = hi - lo + 1
    assert v.note_on(lo) == 2 and v.note_on(hi) == 1 + p
    assert v.note_off(lo) == 2 + p and v.note_off(hi) == 1 + 2 * p
    assert v.time_shift(1) == 2 + 2 * p and v.time_shift(100) == 101 + 2 * p
    assert v.velocity(1) == 102 + 2 * p and v.velocity(32) == 133 + 2 * p == size - 2
    counts = {k: int((v.kinds == k).sum()) for k in (SPECIAL, NOTE_ON, NOTE_OFF, TIME_SHIFT,
                                                     VELOCITY)}
    assert counts == {SPECIAL: 3, NOTE_ON: p, NOTE_OFF: p, TIME_SHIFT: 100, VELOCITY: 32}


def test_constructors_agree():
    assert Vocab.maestro() == Vocab.by_name("maestro")
    assert Vocab.full() == Vocab.by_name("full")
    assert Vocab.maestro() != Vocab.full()
    with pytest.raises(ValueError, match="'maestro' or 'full'.*'piano'"):
        Vocab.by_name("piano")


@pytest.mark.parametrize("name", ["maestro", "full"])
def test_every_id_has_a_name_that_maps_back(name):
    v = Vocab.by_name(name)
    names = [v.name(i) for i in range(v.size)]
    assert len(set(names)) == v.size
    assert [v.id(n) for n in names] == list(range(v.size))
    assert names[:2] == ["PAD", "EOS"] and names[-1] == "MASK"


def test_names():
    v = Vocab.maestro()
    assert v.name(v.note_on(60)) == "NOTE_ON_60"
    assert v.name(v.note_off(21)) == "NOTE_OFF_21"
    assert v.name(v.time_shift(10)) == "TIME_SHIFT_10"
    assert v.name(v.velocity(5)) == "VELOCITY_5"
    assert v.id("NOTE_ON_60") == v.note_on(60)
    assert v.names(np.array([0, 1, v.mask_id])) == ["PAD", "EOS", "MASK"]


def test_errors_name_the_value():
    v = Vocab.maestro()
    with pytest.raises(KeyError, match="NOTE_UP_60"):
        v.id("NOTE_UP_60")
    with pytest.raises(KeyError):
        v.id("TIME_SHIFT_x")
    with pytest.raises(ValueError, match="21..108.*got 20"):
        v.id("NOTE_ON_20")
    with pytest.raises(ValueError, match="21..108.*got 109"):
        v.note_off(109)
    with pytest.raises(ValueError, match="0..310.*got 311"):
        v.name(311)
    with pytest.raises(ValueError, match="got -1"):
        v.name(-1)
    with pytest.raises(ValueError, match="1..100.*got 0"):
        v.time_shift(0)
    with pytest.raises(ValueError, match="1..100.*got 101"):
        v.id("TIME_SHIFT_101")
    with pytest.raises(ValueError, match="1..32.*got 33"):
        v.velocity(33)
    with pytest.raises(ValueError, match="ids in 0..310.*got 400"):
        v.check_tokens([3, 400])
    with pytest.raises(ValueError, match="1-D"):
        v.check_tokens([[1, 2]])
    with pytest.raises(TypeError, match="integer"):
        v.check_tokens(np.array([1.0, 2.0]))
    with pytest.raises(ValueError, match="pitch range"):
        Vocab("bad", 60, 50)


def test_velocity_bins():
    assert [velocity_to_bin(v) for v in (1, 4, 5, 8, 9, 124, 125, 127)] == \
        [1, 1, 2, 2, 3, 31, 32, 32]
    assert [bin_to_velocity(b) for b in (1, 2, 32)] == [1, 5, 125]
    for v in range(1, 128):
        assert velocity_to_bin(bin_to_velocity(velocity_to_bin(v))) == velocity_to_bin(v)
    with pytest.raises(ValueError, match="1..127.*got 0"):
        velocity_to_bin(0)
    with pytest.raises(ValueError, match="1..32.*got 0"):
        bin_to_velocity(0)


def test_token_seconds_counts_time_shifts_only():
    v = Vocab.maestro()
    secs = v.token_seconds
    assert secs.shape == (v.size,)
    assert secs[v.time_shift(10)] == pytest.approx(0.1) and secs[v.time_shift(100)] == pytest.approx(1.0)
    assert secs[v.note_on(60)] == secs[v.velocity(5)] == secs[v.eos_id] == 0
