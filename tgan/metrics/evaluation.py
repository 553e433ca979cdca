"""Evaluation of generated music against a data set, as in Table 1 of the paper.

Two sides are compared: the pieces of one split of a data set, and one or more folders of sample
MIDI files. Each side is a ``PieceSet`` of Performances (notes with the sustain pedal applied, as
``read_midi(sustain=True)`` reads them; rendered scores for the bundled corpus).

- Note statistics are computed per piece, on the whole piece or a clip of it, then averaged
  (mean, population std, count; a piece without notes gives NaN and is left out of the means).
  ``clip_seconds`` keeps the first S seconds (``tgan.metrics.clip``); ``clip_tokens`` encodes the
  piece, keeps its first N tokens and decodes them again (notes still sounding at the cut end
  there; the tempo map becomes the MIDI default, 120 bpm).
- PLL and CA need a BERT masked-LM, the scorer, which the caller passes in (this module imports
  no model): ``score_pll`` masks each position of the first ``piece_len`` (2048) tokens of each
  piece, in blocks of ``block_len`` (512) tokens; ``score_ca`` tells real from generated 128-token
  blocks with pieces held out whole (``tgan.metrics.ca``).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from tgan.data.errors import DataError, MidiError
from tgan.data.events import decode, encode
from tgan.data.midi import read_midi
from tgan.data.notes import Performance
from tgan.data.vocab import Vocab
from tgan.metrics.notes_stats import CONVENTIONS, aggregate, clip, note_statistics

logger = logging.getLogger(__name__)

MIDI_SUFFIXES = (".mid", ".midi")
PLL_PIECE_TOKENS = 2048  # tokens of each piece scored by PLL (the paper's protocol)
PLL_BLOCK_TOKENS = 512  # BERT block length for PLL (bounded by the BERT's max_len)
CA_BLOCK_TOKENS = 128  # block length of the real/fake classifier


@dataclass
class PieceSet:
    """The pieces of one side of the comparison, as read."""

    name: str  # label in the table: the data set, or the sample folder as given
    root: str  # the folder (or corpus name) the pieces come from
    pieces: list[Performance] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # one per piece, same order
    skipped: list[dict] = field(default_factory=list)  # {"path", "reason"} per file left out

    def describe(self) -> str:
        """One line: name, pieces read, files skipped."""
        extra = f", {len(self.skipped)} skipped" if self.skipped else ""
        return f"{self.name} ({len(self.pieces)} pieces{extra})"


def _progress(items, desc: str, progress: bool):
    if not progress:
        return items
    from tgan.progress import progress as bar

    return bar(items, desc=desc, unit="file", leave=False)


# What ``python -m tgan.generate`` writes beside its samples (how each was made): not a sample.
SAMPLES_SIDECAR = "samples.json"


def read_sample_folder(folder, name: str | None = None, progress: bool = False) -> PieceSet:
    """Read every file under ``folder`` (recursively, sorted) as a sample, except the
    ``samples.json`` that ``python -m tgan.generate`` writes beside its samples.

    .mid/.midi files are read with ``read_midi(sustain=True)``; any other file, and a MIDI file
    that cannot be read, is skipped with a warning naming it and counted in ``skipped``.

    Raises:
        DataError: ``folder`` does not exist, is not a folder, holds no files, or holds no
            readable MIDI file (the message names the folder).
    """
    root = Path(os.fspath(folder)).expanduser()
    label = name or os.fspath(folder)
    if not root.exists():
        raise DataError(f"sample folder {root} does not exist")
    if not root.is_dir():
        raise DataError(f"sample folder {root} is not a folder (pass folders of .mid/.midi files "
                        f"to --samples)")
    paths = sorted(p for p in root.rglob("*") if p.is_file() and p.name != SAMPLES_SIDECAR)
    if not paths:
        raise DataError(f"sample folder {root} is empty (expected .mid/.midi files)")
    out = PieceSet(label, str(root))
    for p in _progress(paths, f"reading {root.name}", progress):
        if p.suffix.lower() not in MIDI_SUFFIXES:
            reason = "not a MIDI file (expected .mid or .midi)"
        else:
            try:
                out.pieces.append(read_midi(p, sustain=True))
                out.files.append(str(p))
                continue
            except MidiError as e:
                reason = e.reason
        logger.warning("skipping %s: %s", p, reason)
        out.skipped.append({"path": str(p), "reason": reason})
    if not out.pieces:
        raise DataError(f"sample folder {root} holds no readable MIDI file "
                        f"({len(out.skipped)} file(s) skipped, e.g. {out.skipped[0]['path']}: "
                        f"{out.skipped[0]['reason']})")
    return out


def read_data_split(source, split: str = "train", max_pieces: int | None = None,
                    progress: bool = False, name: str | None = None) -> PieceSet:
    """Read the pieces of one split of a resolved data set (``tgan.data.resolve_source``).

    MIDI files are read with the sustain pedal applied; the corpus's scores are rendered. The
    first ``max_pieces`` items of the split (in key order) are read; files that cannot be read,
    and files the data set lists but lacks, are skipped and counted.

    Raises:
        ValueError: ``split`` is not a split name or ``max_pieces`` < 1.
        DataError: the split has no items or no readable piece.
    """
    from tgan.data.sources import SPLITS

    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if max_pieces is not None and max_pieces < 1:
        raise ValueError(f"max_pieces must be >= 1 or None, got {max_pieces}")
    items = [it for it in source.items if it.split == split][:max_pieces]
    label = name or Path(source.root).name or source.root
    out = PieceSet(label, source.root)
    out.skipped = [{"path": p, "reason": r} for p, r in source.missing]
    if not items:
        raise DataError(f"data set {source.describe()} has no pieces in split {split!r}")
    for it in _progress(items, f"reading {split}", progress):
        try:
            if it.kind == "score":
                from tgan.data.corpus import render_score

                perf = render_score(it.path)[0]
            else:
                perf = read_midi(it.path, sustain=True)
        except MidiError as e:
            reason = e.reason
        except DataError:
            raise
        except Exception as e:  # a score music21 cannot parse
            reason = f"cannot be read ({type(e).__name__}: {e})"
        else:
            out.pieces.append(perf)
            out.files.append(it.path)
            continue
        logger.warning("skipping %s: %s", it.path, reason)
        out.skipped.append({"path": it.path, "reason": reason})
    if not out.pieces:
        raise DataError(f"no readable piece in split {split!r} of {source.describe()}")
    return out


def clip_piece(perf: Performance, seconds: float | None = None, tokens: int | None = None,
               vocab: Vocab | None = None) -> Performance:
    """The part of ``perf`` the statistics see: all of it, its first ``seconds``, or its first
    ``tokens`` tokens (encoded with ``vocab``, pitches outside its range dropped, then decoded;
    notes sounding at the cut end there). At most one of ``seconds`` and ``tokens``."""
    if seconds is not None and tokens is not None:
        raise ValueError("give at most one of seconds and tokens, not both")
    if tokens is None:
        return clip(perf, seconds)
    if not (isinstance(tokens, (int, np.integer)) and tokens > 0):
        raise ValueError(f"tokens must be None or a positive int, got {tokens!r}")
    vocab = vocab or Vocab.maestro()
    ids = encode(perf, vocab, out_of_range="drop")[:tokens]
    notes, _ = decode(ids, vocab, max_note_duration=None)
    return Performance(notes, source=perf.source)


def set_statistics(pieces: Sequence[Performance], conventions: Iterable[str] = ("correct",),
                   clip_seconds: float | None = None, clip_tokens: int | None = None,
                   vocab: Vocab | None = None, progress: bool = False,
                   desc: str = "statistics") -> dict:
    """Per-piece note statistics, averaged: {convention: {"mean", "std", "n"}} plus "empty", the
    number of pieces without notes after clipping (left out of the means)."""
    conventions = list(conventions)
    for c in conventions:
        if c not in CONVENTIONS:
            raise ValueError(f"convention must be one of {CONVENTIONS}, got {c!r}")
    rows: dict[str, list[dict]] = {c: [] for c in conventions}
    empty = 0
    for perf in _progress(pieces, desc, progress):
        part = clip_piece(perf, clip_seconds, clip_tokens, vocab)
        empty += not part.notes
        for c in conventions:
            rows[c].append(note_statistics(part, c))
    out: dict = {c: aggregate(rows[c]) for c in conventions}
    out["empty"] = empty
    return out


def difference(sample_mean: dict, data_mean: dict) -> dict:
    """sample - data, per statistic (NaN where either is NaN or missing)."""
    return {k: float(v) - float(data_mean.get(k, np.nan)) for k, v in sample_mean.items()}


def piece_tokens(pieces: Sequence[Performance], vocab: Vocab) -> list[np.ndarray]:
    """Every piece encoded with ``vocab`` (pitches outside its range dropped), int64 each."""
    return [encode(p, vocab, out_of_range="drop").astype(np.int64) for p in pieces]


def pll_blocks(tokens: Sequence[np.ndarray], piece_len: int = PLL_PIECE_TOKENS,
               block_len: int = PLL_BLOCK_TOKENS, max_pieces: int | None = None) -> np.ndarray:
    """[N, block_len] blocks: the first ``piece_len`` tokens of each piece, cut into whole blocks
    (a piece shorter than one block gives none). ``max_pieces`` bounds the pieces used."""
    from tgan.metrics.scorers import split_blocks

    blocks = []
    for t in list(tokens)[:max_pieces]:
        blocks += split_blocks(t[:piece_len], block_len)
    return np.stack(blocks) if blocks else np.zeros((0, block_len), np.int64)


def score_pll(bert, tokens: Sequence[np.ndarray], mask_id: int, block_len: int = PLL_BLOCK_TOKENS,
              piece_len: int = PLL_PIECE_TOKENS, max_pieces: int | None = None,
              batch_size: int = 64, device="cpu", progress: bool = False,
              desc: str = "PLL") -> dict:
    """Pseudo-log-likelihood (nats/token, <= 0) of pieces under ``bert``'s masked LM.

    Returns {"value", "blocks", "block_len", "piece_len"}; "value" is NaN with "note" when no
    piece holds ``block_len`` tokens.
    """
    import torch

    from tgan.metrics.scorers import pseudo_log_likelihood

    blocks = pll_blocks(tokens, piece_len, block_len, max_pieces)
    out = {"value": float("nan"), "blocks": len(blocks), "block_len": block_len,
           "piece_len": piece_len}
    if not len(blocks):
        out["note"] = f"no piece holds {block_len} tokens"
        return out
    bar = None
    if progress:
        from tgan.progress import progress as progress_bar

        bar = progress_bar(total=len(blocks), desc=desc, unit="block", leave=False)
    try:
        out["value"] = pseudo_log_likelihood(bert, torch.from_numpy(blocks), mask_id, batch_size,
                                             device, bar)
    finally:
        if bar is not None:
            bar.close()
    return out


def score_ca(bert, real_tokens: Sequence[np.ndarray], fake_tokens: Sequence[np.ndarray],
             block_len: int = CA_BLOCK_TOKENS, max_blocks: int | None = None, folds: int = 5,
             classifier: str = "linear", seed: int = 0, batch_size: int = 32, device="cpu",
             finetune_steps: int = 200, progress: bool = False, desc: str = "CA") -> dict:
    """Classifier accuracy between real and generated ``block_len``-token blocks, held out by
    piece in ``folds`` folds (``tgan.metrics.ca.ca_by_piece``; at most ``max_blocks`` per side,
    0 or None = all). Returns its dict; "mean" is NaN with a "note" when a side has fewer than two
    pieces holding a block."""
    from tgan.metrics.ca import ca_by_piece

    return ca_by_piece(bert, real_tokens, fake_tokens, block_len, folds, max_blocks or None,
                       classifier, seed, batch_size, device, finetune_steps=finetune_steps,
                       progress=progress, desc=desc)
