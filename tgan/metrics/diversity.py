"""Diversity of a set of samples: what selection must not buy its scores with.

A selection that keeps the candidates a critic likes best can win by collapsing to one kind of
piece. Two measures of a set (higher = more diverse), each over the set as a whole:

- ``distinct_ngrams``: distinct token n-grams (n = 4) over all n-grams of all pieces (a piece's
  tokens up to its first EOS). Repeated phrases across or within pieces lower it.
- ``pitch_histogram_distance``: the mean over pairs of pieces of the total-variation distance
  between their pitch histograms (notes counted per MIDI pitch, normalised): 0 when every piece
  uses its pitches in the same proportions, 1 when no two share a pitch.
"""
from __future__ import annotations

from itertools import combinations
from pathlib import Path
from typing import Sequence

import numpy as np


def distinct_ngrams(pieces: Sequence[Sequence[int]], n: int = 4, eos_id: int | None = None) -> float:
    """Distinct n-grams over all n-grams of ``pieces`` (token ids); NaN when none has n tokens."""
    seen, total = set(), 0
    for p in pieces:
        t = np.asarray(p, dtype=np.int64).ravel()
        if eos_id is not None and (t == eos_id).any():
            t = t[: int(np.argmax(t == eos_id))]
        if len(t) < n:
            continue
        grams = np.lib.stride_tricks.sliding_window_view(t, n)
        total += len(grams)
        seen.update(map(tuple, grams.tolist()))
    return len(seen) / total if total else float("nan")


def pitch_histogram_distance(pieces_pitches: Sequence[Sequence[int]]) -> float:
    """Mean pairwise total-variation distance of the pieces' pitch histograms (128 bins); NaN with
    fewer than two pieces holding notes."""
    hists = []
    for pitches in pieces_pitches:
        h = np.bincount(np.asarray(pitches, dtype=np.int64), minlength=128)[:128].astype(np.float64)
        if h.sum():
            hists.append(h / h.sum())
    if len(hists) < 2:
        return float("nan")
    return float(np.mean([0.5 * np.abs(a - b).sum() for a, b in combinations(hists, 2)]))


def folder_diversity(folder, vocab) -> dict:
    """Both measures over the MIDI files of ``folder`` (``*.mid``), their tokens in ``vocab``:
    {"distinct_4grams", "pitch_histogram_distance", "pieces", "tokens_median"} (the pieces' median
    length in tokens: selection can change it, and with it the share of early, more realistic
    blocks that CA sees)."""
    from tgan.data.events import encode
    from tgan.data.midi import read_midi

    tokens, pitches = [], []
    for path in sorted(Path(folder).glob("*.mid")):
        perf = read_midi(path)
        tokens.append(encode(perf, vocab, out_of_range="drop"))
        pitches.append([note.pitch for note in perf.notes])
    lengths = [len(t) for t in tokens]
    return {"distinct_4grams": distinct_ngrams(tokens, 4),
            "pitch_histogram_distance": pitch_histogram_distance(pitches),
            "pieces": len(tokens), "tokens_median": float(np.median(lengths)) if lengths else float("nan")}
