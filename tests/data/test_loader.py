"""Training crops and evaluation chunks over a prepared data set."""
import math

import numpy as np
import pytest
import torch

from tgan.data import Note, TokenCrops, chunks, prepare, write_midi
from tgan.data.augment import TRANSPOSITIONS, transpose_tokens
from tgan.data.vocab import TIME_SHIFT

L = 64


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Three pieces, all in "train": 300, 40 and 5 notes; the longest spans pitches 22..40."""
    root = tmp_path_factory.mktemp("loader")
    (root / "music").mkdir()
    rng = np.random.default_rng(0)
    for name, n, lo, hi in (("long", 300, 22, 40), ("mid", 40, 50, 70), ("short", 5, 60, 62)):
        notes = []
        for k in range(n):
            start = 0.13 * k + float(rng.uniform(0, 0.05))
            notes.append(Note(int(rng.integers(lo, hi + 1)), int(rng.integers(20, 120)), start,
                              start + float(rng.uniform(0.05, 1.2))))
        write_midi(notes, root / "music" / f"{name}.mid")
    return prepare(root / "music", cache_dir=root / "cache", workers=1, progress=False)


def _train_files(data):
    return {f.key: data.file_tokens("train", i) for i, f in enumerate(data.files["train"])}


def _non_shift(vocab, toks):
    toks = np.asarray(toks, dtype=np.int64)
    return toks[(vocab.kinds[toks] != TIME_SHIFT) & (toks != vocab.pad_id)]


def test_crops_without_augmentation_are_pieces_of_a_file(prepared):
    # hash_split sends all three names to train (checked here, relied on below).
    assert len(prepared.files["train"]) == 3
    files = _train_files(prepared)
    crops = TokenCrops(prepared, "train", L, augment=False, seed=3)
    batch = crops.sample_batch(32)
    assert batch.shape == (32, L) and batch.dtype == torch.long
    for row in batch.numpy():
        hits = []
        for toks in files.values():
            t = np.asarray(toks, dtype=np.int64)
            if len(t) >= L:
                hits += [s for s in range(len(t) - L + 1) if np.array_equal(t[s:s + L], row)]
            elif np.array_equal(row[:len(t)], t):  # a short file, padded
                assert (row[len(t):] == prepared.vocab.pad_id).all()
                hits.append(0)
        assert hits


def test_short_file_padded(prepared):
    short = [i for i, f in enumerate(prepared.files["train"]) if f.key == "short.mid"][0]
    n = prepared.files["train"][short].n_tokens
    assert n < L
    crops = TokenCrops(prepared, "train", L, augment=False)
    padded = [r for r in crops.sample_batch(64, generator=0).numpy() if (r == 0).any()]
    assert padded and all((r[n:] == 0).all() and (r[:n] != 0).all() for r in padded)


def test_seeds_ranks_and_generators(prepared):
    a = TokenCrops(prepared, length=L, seed=5).sample_batch(8)
    b = TokenCrops(prepared, length=L, seed=5).sample_batch(8)
    c = TokenCrops(prepared, length=L, seed=5, rank=1, world_size=2).sample_batch(8)
    assert torch.equal(a, b) and not torch.equal(a, c)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    crops = TokenCrops(prepared, length=L)
    assert torch.equal(crops.sample_batch(4, g1), crops.sample_batch(4, g2))
    assert torch.equal(crops.sample_batch(4, np.random.default_rng(1)),
                       crops.sample_batch(4, np.random.default_rng(1)))
    with pytest.raises(TypeError, match="generator must be"):
        crops.sample_batch(2, generator="x")
    with pytest.raises(ValueError, match="rank must be in 0..1, got 2"):
        TokenCrops(prepared, length=L, rank=2, world_size=2)
    with pytest.raises(ValueError, match="split 'test'.*no files"):
        TokenCrops(prepared, "test", L)
    with pytest.raises(ValueError, match="length must be >= 1"):
        TokenCrops(prepared, length=0)


def test_augmented_crops_are_transposed_stretched_pieces(prepared):
    vocab = prepared.vocab
    files = {k: _non_shift(vocab, t).tobytes() for k, t in _train_files(prepared).items()}
    crops = TokenCrops(prepared, "train", L, seed=11)
    assert crops.augment  # default for train
    shifts_seen = set()
    for row in crops.sample_batch(48).numpy():
        assert row.min() >= 0 and row.max() < vocab.mask_id
        events = _non_shift(vocab, row)
        # Some transposition maps the crop's events back to a run of one file's events (the
        # first and last events may be cut from their run, so drop them).
        found = False
        for shift in TRANSPOSITIONS:
            back = transpose_tokens(events, vocab, -shift)
            run = None if back is None else back[1:-1].astype(np.int64).tobytes()
            if run is not None and any(run in f for f in files.values()):
                shifts_seen.add(shift)
                found = True
                break
        assert found, vocab.names(row)
    assert len(shifts_seen) > 1


def test_long_file_never_transposed_out_of_range(prepared):
    # The long file spans 22..40: only shifts -1..3 keep it inside 21..108.
    i = [i for i, f in enumerate(prepared.files["train"]) if f.key == "long.mid"][0]
    crops = TokenCrops(prepared, "train", L, seed=2)
    assert crops._shifts[i] == [-1, 0, 1, 2, 3]


def test_dataloader_iteration(prepared):
    loader = torch.utils.data.DataLoader(TokenCrops(prepared, length=L), batch_size=4)
    batch = next(iter(loader))
    assert batch.shape == (4, L) and batch.dtype == torch.long


def test_chunks(prepared):
    files = [np.asarray(prepared.file_tokens("train", i), dtype=np.int64)
             for i in range(len(prepared.files["train"]))]
    got = list(chunks(prepared, "train", L))
    assert all(c.shape == (L,) and c.dtype == torch.long for c in got)
    want = np.concatenate([t[:len(t) // L * L] for t in files])
    assert np.array_equal(torch.cat(got).numpy(), want)
    padded = list(chunks(prepared, "train", L, pad_last=True))
    assert len(padded) == sum(math.ceil(len(t) / L) for t in files)
    assert padded[-1][-1] == prepared.vocab.pad_id
    shards = [list(chunks(prepared, "train", L, rank=r, world_size=3)) for r in range(3)]
    assert sum(len(s) for s in shards) == len(got)
    assert torch.equal(torch.stack(shards[0]), torch.stack(got[0::3]))
    assert list(chunks(prepared, "test", L)) == []
    with pytest.raises(ValueError, match="split must be one of"):
        list(chunks(prepared, "dev", L))


def test_pickled_crops_reopen_the_arrays(prepared):
    import pickle

    crops = TokenCrops(prepared, length=L, augment=False)
    crops.sample_batch(1)  # maps the split's array
    clone = pickle.loads(pickle.dumps(crops))
    assert clone.prepared._arrays == {}
    assert torch.equal(clone.sample_batch(2, generator=3), crops.sample_batch(2, generator=3))
