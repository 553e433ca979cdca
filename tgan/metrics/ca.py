"""CA (classifier accuracy) without leakage: real and generated blocks held out by piece, k-fold.

Every piece is cut into ``block_len``-token blocks that remember their piece and their start. The
pieces of each side (real, generated) are dealt into k folds, balancing the blocks per fold, so no
piece ever has blocks on both sides of a split. For each fold a classifier is fitted on the other
folds' blocks, the larger class subsampled to the smaller (balanced), and predicts every block of
the fold. Each block is thus predicted exactly once, by a classifier that never saw its piece.

- "mean": balanced accuracy over all held-out blocks, 0.5 * (accuracy on real + accuracy on
  generated), so 0.5 is chance whatever the block counts; "folds" the same per fold.
- "low", "high": a 95% percentile bootstrap over pieces (each side's pieces resampled with
  replacement, their blocks' predictions kept): blocks of one piece are not independent.
- "by_position": the accuracy on generated blocks by their start in the sample (0-127, 128-255,
  ...), the exposure-bias curve: how recognisable samples become as they grow.

Classifiers: ``linear`` (default, the released code's probe: logistic regression on the per-block
max over positions of the scorer's MLM logits, comparable with Table 1) or ``finetune`` (a copy of
the scorer fine-tuned end to end through its pooler and head, a stronger test).
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from tgan.metrics.scorers import block_features, fit_linear

CLASSIFIERS = ("linear", "finetune")
MIN_HELD_OUT = 20  # fewer held-out blocks on a side than this: the CA is flagged as too few
BOOTSTRAP = 1000  # bootstrap resamples of the interval


@dataclass
class Blocks:
    """Blocks of one side: tokens [N, L], piece index [N], start token [N]."""

    tokens: np.ndarray
    piece: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)


def cut_blocks(pieces: Sequence[np.ndarray], block_len: int, max_blocks: int | None = None,
               rng: np.random.Generator | None = None) -> Blocks:
    """Every whole ``block_len``-token block of every piece, with its piece and start; at most
    ``max_blocks`` of them, drawn at random (``rng``) and kept in order."""
    toks, piece, start = [], [], []
    for i, t in enumerate(pieces):
        for j in range(len(t) // block_len):
            toks.append(np.asarray(t[j * block_len: (j + 1) * block_len], dtype=np.int64))
            piece.append(i)
            start.append(j * block_len)
    keep = np.arange(len(toks))
    if max_blocks is not None and len(toks) > max_blocks:
        keep = np.sort((rng or np.random.default_rng(0)).choice(len(toks), max_blocks, replace=False))
    tokens = np.stack([toks[i] for i in keep]) if len(keep) else np.zeros((0, block_len), np.int64)
    return Blocks(tokens, np.asarray(piece, np.int64)[keep], np.asarray(start, np.int64)[keep])


def piece_folds(piece: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """A fold (0..k-1) per block such that all blocks of a piece share one fold: pieces in random
    order, each to the fold with the fewest blocks so far."""
    ids, counts = np.unique(piece, return_counts=True)
    fold_of, load = {}, np.zeros(k, np.int64)
    for i in rng.permutation(len(ids)):
        f = int(np.argmin(load))
        fold_of[int(ids[i])] = f
        load[f] += counts[i]
    return np.asarray([fold_of[int(p)] for p in piece], np.int64)


def fold_splits(real_piece: np.ndarray, fake_piece: np.ndarray, k: int,
                rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
    """k (train, test) index pairs over the real blocks followed by the generated ones; each
    side's pieces are dealt into folds by ``piece_folds``, so no piece is on both sides."""
    fold = np.concatenate([piece_folds(real_piece, k, rng), piece_folds(fake_piece, k, rng)])
    return [(np.flatnonzero(fold != f), np.flatnonzero(fold == f)) for f in range(k)]


def _balanced_train(y: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Indices of a class-balanced subset (the larger class subsampled)."""
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    n = min(len(pos), len(neg))
    return np.sort(np.concatenate([rng.choice(pos, n, replace=False), rng.choice(neg, n, replace=False)]))


def _finetune_predict(bert, x_train, y_train, x_test, steps, lr, batch_size, seed, device) -> np.ndarray:
    """Logits of ``x_test`` from a copy of ``bert`` fine-tuned (all weights, pooler and head) as a
    real/fake classifier on ``x_train``."""
    model = copy.deepcopy(bert).to(device).train()
    for p in model.parameters():
        p.requires_grad_(True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr)
    g = torch.Generator().manual_seed(seed)
    xt, yt = torch.from_numpy(x_train), torch.from_numpy(y_train).float()
    with torch.enable_grad():
        for _ in range(steps):
            idx = torch.randint(len(xt), (min(batch_size, len(xt)),), generator=g)
            loss = F.binary_cross_entropy_with_logits(model(xt[idx].to(device)), yt[idx].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        out = [model(torch.from_numpy(x_test[i: i + batch_size]).to(device)).float().cpu()
               for i in range(0, len(x_test), batch_size)]
    return torch.cat(out).numpy() if out else np.zeros(0, np.float32)


def _bootstrap(correct_r, piece_r, correct_f, piece_f, rng, reps: int = BOOTSTRAP) -> tuple[float, float]:
    """95% percentile interval of the balanced accuracy, resampling pieces within each side."""
    def side(correct, piece):
        ids, inv = np.unique(piece, return_inverse=True)
        hits = np.bincount(inv, weights=correct.astype(np.float64), minlength=len(ids))
        n = np.bincount(inv, minlength=len(ids)).astype(np.float64)
        draw = rng.integers(0, len(ids), size=(reps, len(ids)))
        return hits[draw].sum(1) / n[draw].sum(1)

    acc = 0.5 * (side(correct_r, piece_r) + side(correct_f, piece_f))
    return float(np.percentile(acc, 2.5)), float(np.percentile(acc, 97.5))


def ca_by_piece(bert, real_pieces: Sequence[np.ndarray], fake_pieces: Sequence[np.ndarray],
                block_len: int = 128, folds: int = 5, max_blocks: int | None = None,
                classifier: str = "linear", seed: int = 0, batch_size: int = 32, device="cpu",
                finetune_steps: int = 200, finetune_lr: float = 1e-4, progress: bool = False,
                desc: str = "CA") -> dict:
    """Classifier accuracy between real and generated blocks, held out by piece (module docstring).

    Args:
        bert: the scorer (a BertDiscriminator; taken as an argument, nothing imported).
        real_pieces, fake_pieces: token ids per piece.
        block_len: tokens per block; folds: k (reduced to the pieces available, at least 2).
        max_blocks: at most this many blocks per side (drawn at random), None = all.
        classifier: "linear" (the paper's probe) or "finetune".
        progress: a tqdm bar over the folds (labelled ``desc``).
    Returns:
        {"mean", "low", "high", "folds", "blocks" (held out, both sides), "real_blocks",
        "generated_blocks", "block_len", "classifier", "k",
        "by_position": [{"start", "end", "accuracy", "blocks"}]}, plus
        "flag" when a side has fewer than MIN_HELD_OUT blocks, or "mean" NaN and "note" when fewer
        than 2 pieces of a side hold a block.
    """
    if classifier not in CLASSIFIERS:
        raise ValueError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}")
    if folds < 2:
        raise ValueError(f"folds must be >= 2, got {folds}")
    rng = np.random.default_rng(seed)
    real = cut_blocks(real_pieces, block_len, max_blocks, rng)
    fake = cut_blocks(fake_pieces, block_len, max_blocks, rng)
    n_pr, n_pf = len(np.unique(real.piece)), len(np.unique(fake.piece))
    out = {"mean": float("nan"), "low": float("nan"), "high": float("nan"), "folds": [],
           "blocks": len(real) + len(fake), "real_blocks": len(real), "generated_blocks": len(fake),
           "block_len": block_len,
           "classifier": classifier, "k": 0, "by_position": []}
    k = min(folds, n_pr, n_pf)
    if k < 2:
        out["note"] = (f"needs >= 2 pieces with a {block_len}-token block on each side, got {n_pr} real "
                       f"and {n_pf} generated")
        return out
    out["k"] = k
    x = np.concatenate([real.tokens, fake.tokens])
    y = np.concatenate([np.ones(len(real), np.int64), np.zeros(len(fake), np.int64)])
    feats = block_features(bert, torch.from_numpy(x), batch_size, device) if classifier == "linear" else None
    correct = np.zeros(len(x), bool)
    fold_acc = []
    from tgan.progress import progress as progress_bar

    splits = fold_splits(real.piece, fake.piece, k, rng)
    for f, (train, test) in enumerate(progress_bar(splits, desc=desc, unit="fold", leave=False,
                                                   disable=not progress)):
        train = train[_balanced_train(y[train], rng)]
        if classifier == "linear":
            predict = fit_linear(feats[train], torch.from_numpy(y[train]).float())
            with torch.no_grad():
                logits = predict(feats[test]).numpy()
        else:
            logits = _finetune_predict(bert, x[train], y[train], x[test], finetune_steps, finetune_lr,
                                       batch_size, seed + f, device)
        correct[test] = (logits > 0) == (y[test] == 1)
        r, g = test[y[test] == 1], test[y[test] == 0]
        fold_acc.append(0.5 * (correct[r].mean() + correct[g].mean()))
    cr, cf = correct[: len(real)], correct[len(real):]
    out["mean"] = float(0.5 * (cr.mean() + cf.mean()))
    out["low"], out["high"] = _bootstrap(cr, real.piece, cf, fake.piece, rng)
    out["folds"] = [float(a) for a in fold_acc]
    if min(len(real), len(fake)) < MIN_HELD_OUT:
        out["flag"] = (f"too few blocks: {len(real)} real and {len(fake)} generated held-out blocks "
                       f"(fewer than {MIN_HELD_OUT} on a side)")
    for s in np.unique(fake.start):
        m = fake.start == s
        out["by_position"].append({"start": int(s), "end": int(s + block_len - 1),
                                   "accuracy": float(cf[m].mean()), "blocks": int(m.sum())})
    return out
