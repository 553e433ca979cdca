"""Does the discriminator discriminate? Held-out AUC of D's logit, measured during training.

A discriminator only teaches the generator what it has learned itself. ``HeldOutProbe`` scores
real crops of the validation split against fresh samples of the generator that continue those
crops' own priming prefixes, with the rollout settings of training (prefix, length, segments,
Gumbel beta), and reports the area under the ROC curve of D's logit (0.5 = chance, 1 = every real
segment scored above every generated one) and a balanced accuracy. D never trains on either set.

Each (sequence, segment) pair is one item, scored as D scores it in training (``disc_inputs``:
the first segment behind the shared prefix when D sees it). The probe draws its crops and its
noise from generators of its own, seeded by (seed, step): measuring leaves the training run's
random streams, and so its result, unchanged, and the same step is measured on the same data.
"""
from __future__ import annotations

import contextlib

import numpy as np
import torch

from tgan.gan.rollout import disc_inputs, sample_fakes

AUC_INFORMATIVE = 0.6  # held-out AUC below this: the discriminator tells the generator next to nothing


def roc_auc(pos, neg) -> float:
    """Area under the ROC curve of scores ``pos`` (positives, real) against ``neg``: the
    probability that a random positive scores above a random negative, ties counting half
    (the Mann-Whitney U statistic over its maximum)."""
    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    if not len(pos) or not len(neg):
        raise ValueError(f"roc_auc: needs scores of both classes, got {len(pos)} positive and {len(neg)} negative")
    if not (np.isfinite(pos).all() and np.isfinite(neg).all()):
        raise ValueError("roc_auc: scores must be finite")
    allv = np.concatenate([pos, neg])
    order = allv.argsort(kind="mergesort")
    ranks = np.empty(len(allv), dtype=np.float64)
    sv = allv[order]
    # average ranks over ties (1-based)
    i = 0
    while i < len(sv):
        j = i
        while j + 1 < len(sv) and sv[j + 1] == sv[i]:
            j += 1
        ranks[order[i: j + 1]] = (i + j) / 2 + 1
        i = j + 1
    u = ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2
    return float(u / (len(pos) * len(neg)))


def balanced_accuracy(pos, neg, threshold: float | None = None) -> float:
    """Mean of the two classes' accuracies when scores above ``threshold`` are called real.
    ``None``: the median of all scores, the cut a critic's unnormalised logit gives no better
    choice for (a WGAN critic's scale and offset are arbitrary); 0 for a BCE classifier."""
    pos, neg = np.asarray(pos, dtype=np.float64).ravel(), np.asarray(neg, dtype=np.float64).ravel()
    t = float(np.median(np.concatenate([pos, neg]))) if threshold is None else threshold
    return float(((pos > t).mean() + (neg <= t).mean()) / 2)


@contextlib.contextmanager
def _eval_mode(*modules):
    was = [m.training for m in modules]
    for m in modules:
        m.eval()
    try:
        yield
    finally:
        for m, w in zip(modules, was):
            m.train(w)


@torch.no_grad()
def segment_scores(critic, real: torch.Tensor, fake: torch.Tensor, prefix_len: int, segment_len: int,
                   disc_prefix: bool) -> tuple[np.ndarray, np.ndarray]:
    """A critic's logits for every (sequence, segment) pair: real crops ``real`` [B, P + L] and
    fake one-hots ``fake`` [B, L, V], segments as in training. Returns (real [B·n], fake [B·n])."""
    n = fake.shape[1] // segment_len
    rs, fs = [], []
    with _eval_mode(critic):
        for s in range(n):
            r, f = disc_inputs(real, fake[:, s * segment_len: (s + 1) * segment_len], s, prefix_len,
                               segment_len, disc_prefix)
            rs.append(critic(r).float().cpu())
            fs.append(critic(f).float().cpu())
    return torch.cat(rs).numpy(), torch.cat(fs).numpy()


class HeldOutProbe:
    """Held-out AUC of one or more critics against the generator's fresh samples.

    ``data``: a ``DataFeed``; ``batch_size`` sequences per measurement (each gives
    ``rollout_len // segment_len`` items per class); the rest as the training rollouts.
    """

    def __init__(self, data, batch_size: int, prefix_len: int, rollout_len: int, segment_len: int,
                 disc_prefix: bool, seed: int, device, split: str = "validation"):
        if batch_size < 1:
            raise ValueError(f"HeldOutProbe: batch_size must be >= 1, got {batch_size}")
        self.data, self.batch_size, self.split = data, batch_size, split
        self.prefix_len, self.rollout_len, self.segment_len = prefix_len, rollout_len, segment_len
        self.disc_prefix, self.seed, self.device = disc_prefix, seed, torch.device(device)

    def draw(self, gen, beta: float, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Real held-out crops [B, P + L] and the generator's continuations of their prefixes
        [B, L, V] for measurement ``step``; the same step always draws the same crops and noise."""
        rng = np.random.default_rng([self.seed, step, 0x5EED])
        real = self.data.held_out_crops(self.batch_size, self.prefix_len + self.rollout_len, rng,
                                        self.split).to(self.device)
        devices = [self.device] if self.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(int(rng.integers(2**62)))
            fake = sample_fakes(gen, real, self.prefix_len, self.rollout_len, self.segment_len, beta)
        return real, fake

    def measure(self, gen, critics: dict, beta: float, step: int) -> dict:
        """{name: {"auc", "acc", "real", "fake"}} for each critic in ``critics`` (name -> module):
        AUC and balanced accuracy of real against generated items, and the mean logits."""
        real, fake = self.draw(gen, beta, step)
        out = {}
        for name, critic in critics.items():
            r, f = segment_scores(critic, real, fake, self.prefix_len, self.segment_len, self.disc_prefix)
            out[name] = {"auc": roc_auc(r, f), "acc": balanced_accuracy(r, f),
                         "real": float(r.mean()), "fake": float(f.mean())}
        return out
