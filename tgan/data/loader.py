"""Reading prepared data for training (random crops) and evaluation (fixed chunks).

Training crops (``TokenCrops``): a file is drawn with probability proportional to its token
count, then a start uniformly among the positions that leave ``length`` tokens; a file shorter
than ``length`` gives its whole sequence followed by PAD (the loss should ignore ``pad_id``).
Files are not joined, so a crop never spans two pieces. With augmentation (training split) each
crop gets a transposition drawn uniformly among the ones in -3..+3 that keep the whole file in
the vocab's range, and a stretch drawn from {0.95, 0.975, 1.0, 1.025, 1.05}, applied to the
tokens (augment.py): the crop is cut from a window a little longer than ``length``, stretched,
transposed and cut to ``length``.

Ranks of a distributed run pass ``rank`` and ``world_size``: each rank (and each DataLoader
worker) draws from its own random stream seeded by (seed, rank, worker).
"""
from __future__ import annotations

import numpy as np
import torch

from tgan.data.augment import (STRETCHES, stretch_tokens, stretched_length_bound,
                               transpose_tokens, valid_shifts)
from tgan.data.datasets import PreparedData
from tgan.data.sources import SPLITS


def _check_rank(rank: int, world_size: int) -> None:
    if world_size < 1:
        raise ValueError(f"world_size must be >= 1, got {world_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in 0..{world_size - 1}, got {rank}")


def as_numpy_rng(generator) -> np.random.Generator | None:
    """A numpy Generator from a torch Generator (one draw from it), an int seed or a numpy Generator."""
    if generator is None or isinstance(generator, np.random.Generator):
        return generator
    if isinstance(generator, torch.Generator):
        seed = int(torch.randint(0, 2 ** 62, (1,), generator=generator).item())
        return np.random.default_rng(seed)
    if isinstance(generator, (int, np.integer)):
        return np.random.default_rng(int(generator))
    raise TypeError(f"generator must be a numpy Generator, a torch Generator, an int seed or "
                    f"None, got {type(generator).__name__}")


class TokenCrops(torch.utils.data.IterableDataset):
    """Random fixed-length crops of one split (see the module docstring).

    Use ``sample_batch(B)`` directly, or iterate (endless) through a DataLoader:
    ``DataLoader(TokenCrops(...), batch_size=B)``.

    Args:
        prepared: from ``prepare``.
        split: "train", "validation" or "test".
        length: tokens per crop (L).
        augment: transpose and stretch; default True for "train", False otherwise.
        seed, rank, world_size: the random stream, distinct per rank.
    """

    def __init__(self, prepared: PreparedData, split: str = "train", length: int = 128,
                 augment: bool | None = None, seed: int = 0, rank: int = 0, world_size: int = 1):
        super().__init__()
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
        if length < 1:
            raise ValueError(f"length must be >= 1, got {length}")
        _check_rank(rank, world_size)
        self.files = prepared.files[split]
        if not self.files:
            raise ValueError(f"split {split!r} of {prepared.path} has no files to crop from")
        self.prepared, self.split, self.length = prepared, split, int(length)
        self.vocab = prepared.vocab
        self.augment = (split == "train") if augment is None else bool(augment)
        self.seed, self.rank, self.world_size = seed, rank, world_size
        sizes = np.array([f.n_tokens for f in self.files], dtype=np.float64)
        self._p = sizes / sizes.sum()
        self._shifts = [valid_shifts(f.min_pitch, f.max_pitch, self.vocab) for f in self.files]
        self._rng = np.random.default_rng([seed, rank])

    def crop(self, rng: np.random.Generator) -> np.ndarray:
        """One crop as int64 ids [L]."""
        L = self.length
        i = int(rng.choice(len(self.files), p=self._p))
        toks = self.prepared.file_tokens(self.split, i)
        n = len(toks)
        start = int(rng.integers(0, max(n - L, 0) + 1))
        if self.augment:
            shift = int(self._shifts[i][rng.integers(len(self._shifts[i]))])
            stretch = float(STRETCHES[rng.integers(len(STRETCHES))])
            window = stretched_length_bound(L) if stretch != 1.0 else L
            while True:
                out = stretch_tokens(toks[start:start + window], self.vocab, stretch)
                # A stretch can shorten the window (fewer TIME_SHIFT_100s); widen and retry.
                if len(out) >= L or start + window >= n:
                    break
                window *= 2
            out = transpose_tokens(out[:L], self.vocab, shift)
            assert out is not None, "shift chosen within the file's pitch range"
        else:
            out = toks[start:start + L]
        res = np.full(L, self.vocab.pad_id, dtype=np.int64)
        res[:len(out)] = out
        return res

    def sample_batch(self, batch_size: int, generator=None) -> torch.Tensor:
        """A batch of crops: LongTensor [B, L]. ``generator`` (numpy or torch Generator, or an
        int seed) overrides this object's own random stream."""
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        rng = as_numpy_rng(generator) or self._rng
        return torch.from_numpy(np.stack([self.crop(rng) for _ in range(batch_size)]))

    def __iter__(self):
        info = torch.utils.data.get_worker_info()
        worker = info.id if info is not None else 0
        # Each iter() restarts from the seed: pass another seed per epoch for fresh crops.
        rng = np.random.default_rng([self.seed, self.rank, worker, 1])
        while True:
            yield torch.from_numpy(self.crop(rng))


def chunks(prepared: PreparedData, split: str, length: int, rank: int = 0, world_size: int = 1,
           pad_last: bool = False):
    """Non-overlapping chunks of every file of a split, in file order: LongTensor [L] each.

    Each file is cut at 0, L, 2L, ...; its last partial chunk is dropped, or padded with PAD
    when ``pad_last``. With ``world_size`` > 1 chunk k goes to rank k % world_size.
    ``torch.stack(list(chunks(...)))`` gives [N, L].
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")
    if length < 1:
        raise ValueError(f"length must be >= 1, got {length}")
    _check_rank(rank, world_size)
    k = 0
    for i in range(len(prepared.files[split])):
        toks = prepared.file_tokens(split, i)
        for start in range(0, len(toks), length):
            piece = toks[start:start + length]
            if len(piece) < length and not pad_last:
                break
            if k % world_size == rank:
                out = torch.full((length,), prepared.vocab.pad_id, dtype=torch.long)
                out[:len(piece)] = torch.from_numpy(piece.astype(np.int64))
                yield out
            k += 1
