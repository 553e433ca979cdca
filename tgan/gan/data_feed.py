"""What the trainer needs from the data layer: prepared data, training crops, whole pieces for the
MLE stream, validation chunks.

Training crops never contain PAD: a crop starts at a random token of a piece (a piece drawn with
probability proportional to its length) and, where the piece ends first, goes on with EOS and
another piece from its first token, as many pieces as it takes. Padded real crops would be a tell
the discriminator learns at once (fakes never contain PAD), so a data set shorter than a rollout is
read round and round, joined by EOS, never padded. A share of rows (``START_SHARE``) instead begins
at the first token of a piece, behind EOS: EOS then stands for "start of a piece", which is how
unconditional sampling begins.

Crops are drawn from torch's default generator, whose state every checkpoint saves, so a resumed
run sees the same crops as an uninterrupted one. ``draw_piece`` draws whole augmented pieces from a
generator the caller owns (the MLE stream's, see ``tgan.gan.mle.PieceStream``).
Under torchrun, rank 0 prepares the cache first; the other ranks then read it.
"""
from __future__ import annotations

import numpy as np
import torch

from tgan.data.augment import STRETCHES, stretch_tokens, stretched_length_bound, transpose_tokens, valid_shifts
from tgan.data.datasets import prepare
from tgan.data.errors import DataError
from tgan.data.loader import as_numpy_rng, chunks

START_SHARE = 0.125  # rows of a batch that begin a piece (EOS + its first tokens)
_FALLBACK = {"validation": ("validation", "test", "train"), "test": ("test", "validation", "train"),
             "train": ("train",)}


class DataFeed:
    """Training crops, whole training pieces and evaluation chunks of one prepared data set."""

    def __init__(self, data, vocab_name: str = "maestro", info=None, progress: bool = True, augment: bool = True):
        from tgan.gan import distributed as D

        info = info or D.DistInfo()
        if info.is_main:
            self.prepared = prepare(data, vocab_name=vocab_name, progress=progress)
        D.barrier(info)
        if not info.is_main:
            self.prepared = prepare(data, vocab_name=vocab_name, progress=False)
        self.vocab = self.prepared.vocab
        files = self.prepared.files["train"]
        if not files or not sum(f.n_tokens for f in files):
            raise DataError(f"data set {self.prepared.index['source']} has no training files with notes")
        self.info, self.augment = info, augment
        sizes = np.array([f.n_tokens for f in files], dtype=np.float64)
        self._p = sizes / sizes.sum()
        self._shifts = [valid_shifts(f.min_pitch, f.max_pitch, self.vocab) for f in files]
        self.train_tokens = int(sizes.sum())
        self.longest_piece = int(sizes.max())

    def resolve_split(self, split: str) -> str:
        """The split that serves ``split``: itself when it has files, else its fallback (DataError if none)."""
        for s in _FALLBACK[split]:
            if self.prepared.files[s]:
                return s
        raise DataError(f"data set {self.prepared.index['source']} has no {split} files")

    # -- augmented reading -------------------------------------------------------------------------
    def _read(self, i: int, start: int, need: int, rng: np.random.Generator, split: str = "train") -> np.ndarray:
        """At least ``need`` tokens of piece ``i`` of ``split`` from ``start`` (fewer only where the
        piece ends); training pieces transposed and stretched as one draw (int64)."""
        toks = self.prepared.file_tokens(split, i)
        if not self.augment or split != "train":
            return np.asarray(toks[start:start + need], dtype=np.int64)
        shift = int(self._shifts[i][rng.integers(len(self._shifts[i]))])
        stretch = float(STRETCHES[rng.integers(len(STRETCHES))])
        window = stretched_length_bound(need) if stretch != 1.0 else need
        while True:
            out = stretch_tokens(toks[start:start + window], self.vocab, stretch)
            if len(out) >= need or start + window >= len(toks):  # a stretch can shorten the window
                break
            window *= 2
        out = transpose_tokens(out, self.vocab, shift)
        assert out is not None, "shift chosen within the file's pitch range"
        return np.asarray(out, dtype=np.int64)

    def draw_piece(self, rng: np.random.Generator) -> np.ndarray:
        """One whole training piece, drawn uniformly, augmented (int64)."""
        i = int(rng.integers(len(self.prepared.files["train"])))
        return self._read(i, 0, self.prepared.files["train"][i].n_tokens, rng)

    def _row(self, length: int, rng: np.random.Generator, from_start: bool, split: str = "train",
             p: np.ndarray | None = None) -> torch.Tensor:
        files = self.prepared.files[split]
        p = self._p if p is None else p
        parts, have = [], 0
        if from_start:
            parts, have = [np.array([self.vocab.eos_id])], 1
        else:
            i = int(rng.choice(len(p), p=p))
            start = int(rng.integers(files[i].n_tokens))
            parts.append(self._read(i, start, length, rng, split))
            have = len(parts[-1])
        while have < length:  # the piece ended: EOS, then another piece from its first token
            if not from_start or len(parts) > 1:
                parts.append(np.array([self.vocab.eos_id]))
                have += 1
            from_start = False
            i = int(rng.choice(len(p), p=p))
            parts.append(self._read(i, 0, length - have, rng, split))
            have += len(parts[-1])
        return torch.from_numpy(np.concatenate(parts)[:length])

    def sample(self, batch_size: int, length: int) -> torch.Tensor:
        """Training crops [B, length] (augmented, no PAD), drawn from torch's default generator."""
        if batch_size < 1 or length < 1:
            raise ValueError(f"sample: batch_size and length must be >= 1, got {batch_size}, {length}")
        starts = (torch.rand(batch_size) < START_SHARE).tolist()
        rng = as_numpy_rng(torch.default_generator)
        return torch.stack([self._row(length, rng, s) for s in starts]).long()

    # -- evaluation ---------------------------------------------------------------------------------
    def held_out_crops(self, batch_size: int, length: int, rng: np.random.Generator,
                       split: str = "validation") -> torch.Tensor:
        """Crops [B, length] of a held-out split (falls back as ``chunks`` does), not augmented,
        drawn as training crops are (a random start, further pieces behind EOS, a share of rows
        from a piece's start) but from ``rng``, the caller's: drawing them leaves the training
        stream untouched."""
        if batch_size < 1 or length < 1:
            raise ValueError(f"held_out_crops: batch_size and length must be >= 1, got {batch_size}, {length}")
        s = self.resolve_split(split)
        sizes = np.array([f.n_tokens for f in self.prepared.files[s]], dtype=np.float64)
        if not sizes.sum():
            raise DataError(f"data set {self.prepared.index['source']} has no tokens in split {s!r}")
        starts = rng.random(batch_size) < START_SHARE
        return torch.stack([self._row(length, rng, bool(st), s, sizes / sizes.sum()) for st in starts]).long()

    def piece_windows(self, count: int, length: int, rng: np.random.Generator, split: str = "train",
                      augment: bool = True) -> list[np.ndarray]:
        """``count`` windows of one piece each, never across a piece boundary: a piece drawn in
        proportion to its length, then a uniform start among its ``length``-token windows; the
        piece ends with EOS, so a window that reaches its end holds it, and a piece shorter than
        ``length`` is one shorter window (itself and EOS). Training pieces are augmented (with
        ``augment``) as training crops are. Drawn from ``rng``, the caller's (int64 arrays)."""
        s = self.resolve_split(split)
        files = self.prepared.files[s]
        sizes = np.array([f.n_tokens + 1 for f in files], dtype=np.float64)
        out = []
        for i in rng.choice(len(files), size=count, p=sizes / sizes.sum()):
            n = files[int(i)].n_tokens + 1  # with the EOS that ends the piece
            start = int(rng.integers(n - length + 1)) if n > length else 0
            if augment and s == "train" and self.augment:
                w = self._read(int(i), start, length, rng, s)
            else:
                w = np.asarray(self.prepared.file_tokens(s, int(i))[start:start + length], dtype=np.int64)
            if len(w) < length:  # the window reaches the piece's end (a stretch may shorten it too)
                w = np.concatenate([w, [self.vocab.eos_id]])
            out.append(w[:length])
        return out

    def chunks(self, split: str, length: int, limit: int = 0):
        """Up to ``limit`` (0 = all) non-overlapping chunks [length] of a split (falls back to
        test, then train, where the split is empty); a file shorter than ``length`` gives one
        padded chunk (PAD targets are not scored)."""
        s = self.resolve_split(split)
        n = 0
        for c in chunks(self.prepared, s, length, pad_last=True):
            if int((c != self.vocab.pad_id).sum()) < 2:
                continue
            yield c
            n += 1
            if limit and n >= limit:
                return

    def piece(self, split: str, i: int) -> np.ndarray:
        """The tokens of piece ``i`` of a split (int64)."""
        s = self.resolve_split(split)
        n = len(self.prepared.files[s])
        if not 0 <= i < n:
            raise ValueError(f"piece index must be in 0..{n - 1} for split {s!r}, got {i}")
        return np.asarray(self.prepared.file_tokens(s, i), dtype=np.int64)

    def num_pieces(self, split: str) -> int:
        return len(self.prepared.files[self.resolve_split(split)])
