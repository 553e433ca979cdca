"""CA held out by piece: folds, balance, interval and position bins (tgan.metrics.ca)."""
import numpy as np
import pytest

from tgan.metrics import ca as ca_mod
from tgan.metrics.ca import ca_by_piece, cut_blocks, fold_splits, piece_folds
from tgan.model import BertConfig, BertDiscriminator


def _bert():
    return BertDiscriminator(BertConfig(vocab_size=50, n_layer=1, d_model=16, n_head=2, d_inner=32, max_len=16,
                                        dropout=0.0, attn_dropout=0.0))


def test_cut_blocks_remember_piece_and_start():
    b = cut_blocks([np.arange(10), np.arange(3), np.arange(100, 108)], 4)
    assert b.piece.tolist() == [0, 0, 2, 2] and b.start.tolist() == [0, 4, 0, 4]
    assert b.tokens[3].tolist() == [104, 105, 106, 107]
    few = cut_blocks([np.arange(40)], 4, max_blocks=3, rng=np.random.default_rng(0))
    assert len(few) == 3 and list(few.start) == sorted(few.start)


def test_no_piece_on_both_sides_of_any_fold():
    rng = np.random.default_rng(0)
    real = np.repeat(np.arange(13), rng.integers(1, 9, 13))  # 13 pieces of 1..8 blocks
    fake = np.repeat(np.arange(7), rng.integers(1, 9, 7))
    piece = np.concatenate([real, 1000 + fake])  # one id space over both sides
    splits = fold_splits(real, fake, 5, rng)
    assert len(splits) == 5
    tested = np.concatenate([test for _, test in splits])
    assert sorted(tested.tolist()) == list(range(len(piece)))  # every block held out exactly once
    for train, test in splits:
        assert not set(piece[train]) & set(piece[test])
        assert len(test) and (piece[test] < 1000).any() and (piece[test] >= 1000).any()
    load = np.bincount(piece_folds(real, 5, rng), minlength=5)
    assert load.max() - load.min() <= 8  # blocks dealt evenly (no more than one piece apart)


def test_pieces_that_identify_themselves_do_not_leak():
    """Each piece repeats one token; real and generated pieces draw it from the same 40 values. A
    classifier that saw other blocks of a test piece would recognise it (accuracy near 1); held out
    by piece it cannot do better than chance."""
    rng = np.random.default_rng(1)
    real = [np.full(96, rng.integers(2, 42)) for _ in range(30)]
    fake = [np.full(96, rng.integers(2, 42)) for _ in range(30)]
    ca = ca_by_piece(_bert(), real, fake, block_len=12, folds=5, seed=0)
    assert ca["low"] <= 0.5 <= ca["high"] and ca["mean"] < 0.65, ca
    assert ca["blocks"] == 480 and len(ca["folds"]) == 5 and "flag" not in ca


def test_classes_are_balanced_in_training(monkeypatch):
    seen = []
    fit = ca_mod.fit_linear

    def spy(x, y, *a, **k):
        seen.append(int(y.sum()) * 2 == len(y))
        return fit(x, y, *a, **k)

    monkeypatch.setattr(ca_mod, "fit_linear", spy)
    rng = np.random.default_rng(2)
    real = [rng.integers(2, 40, 200) for _ in range(6)]
    fake = [rng.integers(2, 40, 40) for _ in range(4)]  # 4x fewer generated blocks
    ca = ca_by_piece(_bert(), real, fake, block_len=10, folds=3, seed=0)
    assert seen == [True, True, True] and (ca["real_blocks"], ca["generated_blocks"]) == (120, 16)


def test_bad_arguments():
    with pytest.raises(ValueError, match="classifier"):
        ca_by_piece(_bert(), [], [], classifier="svm")
    with pytest.raises(ValueError, match="folds"):
        ca_by_piece(_bert(), [], [], folds=1)
