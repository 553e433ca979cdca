"""What the trainer needs from the data layer: prepared data, training crops, validation chunks.

Crops are drawn from torch's default generator (through ``TokenCrops.sample_batch``), whose state
every checkpoint saves, so a resumed run sees the same crops as an uninterrupted one. A share of
rows (``START_SHARE``) instead begins at the first token of a piece, behind EOS: EOS then stands
for "start of a piece", which is how unconditional sampling begins.
Under torchrun, rank 0 prepares the cache first; the other ranks then read it.
"""
from __future__ import annotations

import numpy as np
import torch

from tgan.data.augment import transpose_tokens, valid_shifts
from tgan.data.datasets import prepare
from tgan.data.errors import DataError
from tgan.data.loader import TokenCrops, chunks

START_SHARE = 0.125  # rows of a batch that begin a piece (EOS + its first tokens)
_FALLBACK = {"validation": ("validation", "test", "train"), "test": ("test", "validation", "train"),
             "train": ("train",)}


class DataFeed:
    """Training crops and evaluation chunks of one prepared data set."""

    def __init__(self, data, vocab_name: str = "maestro", info=None, progress: bool = True, augment: bool = True):
        from tgan.gan import distributed as D

        info = info or D.DistInfo()
        if info.is_main:
            self.prepared = prepare(data, vocab_name=vocab_name, progress=progress)
        D.barrier(info)
        if not info.is_main:
            self.prepared = prepare(data, vocab_name=vocab_name, progress=False)
        self.vocab = self.prepared.vocab
        if not self.prepared.files["train"]:
            raise DataError(f"data set {self.prepared.index['source']} has no training files")
        self._crops: dict[int, TokenCrops] = {}
        self.info, self.augment = info, augment

    def _split(self, split: str) -> str:
        for s in _FALLBACK[split]:
            if self.prepared.files[s]:
                return s
        raise DataError(f"data set {self.prepared.index['source']} has no {split} files")

    def sample(self, batch_size: int, length: int) -> torch.Tensor:
        """Training crops [B, length] (augmented), drawn from torch's default generator."""
        if length not in self._crops:
            self._crops[length] = TokenCrops(self.prepared, "train", length, augment=self.augment,
                                             rank=self.info.rank, world_size=self.info.world_size)
        n_start = int((torch.rand(batch_size) < START_SHARE).sum())
        out = self._crops[length].sample_batch(batch_size, generator=torch.default_generator).long()
        for b in range(n_start):
            out[b] = self._piece_start(length)
        return out

    def _piece_start(self, length: int) -> torch.Tensor:
        files = self.prepared.files["train"]
        i = int(torch.randint(len(files), (1,)))
        toks = np.asarray(self.prepared.file_tokens("train", i), dtype=np.int64)[: length - 1]
        if self.augment:
            shifts = valid_shifts(files[i].min_pitch, files[i].max_pitch, self.vocab)
            toks = transpose_tokens(toks, self.vocab, int(shifts[int(torch.randint(len(shifts), (1,)))])).astype(np.int64)
        row = torch.full((length,), self.vocab.pad_id, dtype=torch.long)
        row[0] = self.vocab.eos_id
        row[1: 1 + len(toks)] = torch.from_numpy(toks)
        return row

    def chunks(self, split: str, length: int, limit: int = 0):
        """Up to ``limit`` (0 = all) non-overlapping chunks [length] of a split (falls back to
        test, then train, where the split is empty); a file shorter than ``length`` gives one
        padded chunk."""
        s = self._split(split)
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
        s = self._split(split)
        n = len(self.prepared.files[s])
        if not 0 <= i < n:
            raise ValueError(f"piece index must be in 0..{n - 1} for split {s!r}, got {i}")
        return np.asarray(self.prepared.file_tokens(s, i), dtype=np.int64)

    def num_pieces(self, split: str) -> int:
        return len(self.prepared.files[self._split(split)])
