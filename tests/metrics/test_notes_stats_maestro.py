"""Note statistics on a real MAESTRO performance: plausible ranges and the relations between the
two conventions that hold on whole piano pieces."""
import csv
import time

import pytest

from tgan.metrics import note_statistics


def _first_train_file(root):
    for name in sorted(root.glob("*.csv")):
        with open(name, newline="") as f:
            for row in csv.DictReader(f):
                if row["split"] == "train":
                    return root / row["midi_filename"]
    pytest.skip(f"no train row in a csv under {root}")


def test_whole_piece_statistics_are_plausible(maestro_mini):
    midi = pytest.importorskip("tgan.data.midi")
    perf = midi.read_midi(_first_train_file(maestro_mini), sustain=True)
    t = time.perf_counter()
    c = note_statistics(perf, "correct")
    p = note_statistics(perf, "paper")
    # about 0.15 s for both on a ~10k-note piece
    assert time.perf_counter() - t < 2.0

    pitches = [n.pitch for n in perf.notes]
    assert c["PCU"] == 12  # a whole piano piece uses every pitch class
    assert c["NPU"] == len(set(pitches)) == c["TUP"]
    assert c["PR"] == max(pitches) - min(pitches) and 30 <= c["PR"] <= 87
    assert 0 <= c["EBR"] < 0.2  # a performance is rarely silent for a whole beat
    assert 0.3 < c["ISR"] < 0.95 and 0 < c["PRS"] < 1
    assert 2 < c["APS"] < 25 and 0.02 < c["IOI"] < 0.5

    # paper PCU counts 10-pitch blocks: at most the blocks between the lowest and highest pitch
    assert p["PCU"] <= max(pitches) // 10 - min(pitches) // 10 + 1 < 12
    # paper EBR is the NON-empty rate: close to 1 - the true rate on the same 0.5 s beats
    assert p["EBR"] > 0.8 and abs(p["EBR"] - (1 - c["EBR"])) < 0.05
    assert p["NPU"] <= c["NPU"] and p["TUP"] <= c["TUP"] and p["PR"] <= c["PR"]
    assert 0.3 < p["ISR"] < 0.95 and 0 <= p["PRS"] < 1
    # chords add zero intervals to the paper IOI, so it cannot exceed the true one
    assert p["IOI"] <= c["IOI"] + 1e-9
    assert 2 < p["APS"] < 25


def _union_per_pitch(notes):
    """{pitch: [(start, end), ...]} with each pitch's note intervals merged."""
    out = {}
    for n in sorted(notes, key=lambda n: (n.pitch, n.start)):
        iv = out.setdefault(n.pitch, [])
        if iv and n.start <= iv[-1][1]:
            iv[-1] = (iv[-1][0], max(iv[-1][1], n.end))
        else:
            iv.append((n.start, n.end))
    return out


def test_statistics_equal_their_definitions_on_a_real_performance(maestro_mini):
    """Four statistics recomputed here from the notes, straight from their definitions."""
    import numpy as np

    midi = pytest.importorskip("tgan.data.midi")
    perf = midi.read_midi(_first_train_file(maestro_mini), sustain=True)
    notes = perf.notes
    c, p = note_statistics(perf, "correct"), note_statistics(perf, "paper")

    onsets = sorted({n.start for n in notes})
    chords = [np.mean([n.pitch for n in notes if n.start == t]) for t in onsets]
    assert c["IOI"] == pytest.approx(np.mean(np.diff(onsets)), rel=1e-9)
    assert c["APS"] == pytest.approx(np.mean(np.abs(np.diff(chords))), rel=1e-9)
    assert p["IOI"] == pytest.approx(np.mean(np.diff(sorted(n.start for n in notes))), rel=1e-4)

    union = _union_per_pitch(notes)
    sounding = {q: sum(e - s for s, e in iv) for q, iv in union.items()}
    in_scale = sum(t for q, t in sounding.items() if q % 12 in (0, 2, 4, 5, 7, 9, 11))
    assert c["ISR"] == pytest.approx(in_scale / sum(sounding.values()), rel=1e-9)

    events = sorted([(s, 1) for iv in union.values() for s, _ in iv]
                    + [(e, -1) for iv in union.values() for _, e in iv])
    end, k, last, poly = max(n.end for n in notes), 0, 0.0, 0.0
    for t, d in events:  # time with >= 4 distinct pitches sounding
        if k >= 4:
            poly += t - last
        k, last = k + d, t
    assert c["PRS"] == pytest.approx(poly / end, rel=1e-9)
