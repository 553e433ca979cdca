"""Adversarial losses of the paper. D_r = D(real), D_f = D(fake): per-sample logits [B].

Every loss object has ``disc_loss(D_r, D_f, gp)`` and ``gen_loss(D_r, D_f, **extra)``; PPO-GP also
holds the separate classifier D' and its snapshot.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F

LOSSES = ("mle", "wgan_gp", "rsgan", "rsgan_gp", "ppo_gp")


def gradient_penalty(disc, real_ids: torch.Tensor, fake: torch.Tensor, weight: float = 10.0) -> torch.Tensor:
    """WGAN-GP penalty on embedded interpolates.

    x_hat = a·onehot(real) + (1-a)·fake with a ~ U(0, 1) per sample; the gradient of D is taken
    with respect to the embedded interpolate x_hat @ W; GP = weight · mean_b (||g||_2 - 1)^2 with
    ||g|| = sqrt(sum g^2 + 1e-12). The graph is kept so the penalty trains D.
    """
    B = real_ids.shape[0]
    real = F.one_hot(real_ids.long(), fake.shape[-1]).to(fake.dtype)
    a = torch.rand(B, 1, 1, device=fake.device, dtype=fake.dtype)
    x_hat = a * real + (1 - a) * fake.detach()
    e = disc.embed_words(x_hat)
    if not e.requires_grad:  # frozen embeddings: differentiate w.r.t. the embedded input itself
        e.requires_grad_(True)
    out = disc.score_embedded(e)
    (g,) = torch.autograd.grad(out.sum(), e, create_graph=True)
    norm = torch.sqrt(g.float().pow(2).sum(dim=(1, 2)) + 1e-12)
    return weight * ((norm - 1) ** 2).mean()


class WGANGP:
    """L_D = D_f - D_r + GP, L_G = -D_f."""

    uses_gp = True

    def disc_loss(self, d_r, d_f, gp):
        return d_f.mean() - d_r.mean() + gp

    def gen_loss(self, d_r, d_f, fake=None):
        return -d_f.mean()


class RSGAN:
    """Relativistic standard GAN: L_D = softplus(D_f - D_r), L_G = softplus(D_r - D_f)."""

    uses_gp = False

    def disc_loss(self, d_r, d_f, gp):
        return F.softplus(d_f - d_r).mean() + gp

    def gen_loss(self, d_r, d_f, fake=None):
        return F.softplus(d_r - d_f).mean()


class RSGANGP(RSGAN):
    """RSGAN plus the WGAN gradient penalty."""

    uses_gp = True


class PPOGP:
    """PPO-GP (the paper's policy-gradient loss with a gradient penalty).

    A separate real/fake classifier D' (BCE, its own optimizer, trained on every segment of the
    rollout) is snapshotted every ``snapshot_every`` D steps. For the generator:
    D0 = sigma(D'_snapshot(fake)), P0 = (1-D0)/D0,
    D1 = sigma(D'(fake)), r = (1-D1)/(D1·P0) clipped to [1-clip, 1+clip]; per sample
    target = min(r·D_f, clip(r)·D_f) if D_f > 0 else max(r·D_f, clip(r)·D_f); L_G = -mean(target).
    Gradients reach G through both D_f and D1; D1 and D0 are computed in eval mode, so r = 1
    exactly right after a snapshot. For D: L_D = mean(W·D_f - D_r) + GP with
    W = B·softmax_batch(D_f), detached.
    """

    uses_gp = True

    def __init__(self, classifier: torch.nn.Module, lr: float = 6.25e-5, clip: float = 0.4, snapshot_every: int = 20):
        if not 0 < clip < 1:
            raise ValueError(f"PPOGP: clip must be in (0, 1), got {clip}")
        self.classifier = classifier
        self.opt = torch.optim.Adam([p for p in classifier.parameters() if p.requires_grad], lr=lr)
        self.clip, self.snapshot_every = clip, snapshot_every
        self.snapshot = self._copy()
        self.steps = 0

    def _copy(self):
        snap = copy.deepcopy(getattr(self.classifier, "module", self.classifier))
        snap.requires_grad_(False)
        return snap

    def classifier_step(self, pairs, sync=None) -> float:
        """One BCE step of D' on real (label 1) and fake (label 0); snapshots every N steps.

        ``pairs``: the rollout's segments as D scores them, a list of (real ids [B, T], fake
        [B, T, V]); every segment (every one the generator's loss weights) is scored and the loss
        averaged over them. Returns the mean loss.
        """
        if not pairs:
            raise ValueError("PPOGP.classifier_step: pairs is empty")
        self.opt.zero_grad(set_to_none=True)
        total = torch.zeros((), device=pairs[0][1].device)
        for real_ids, fake in pairs:
            lr_ = self.classifier(real_ids)
            lf = self.classifier(fake.detach())
            loss = F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_)) + \
                F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
            (loss / len(pairs)).backward()
            total += loss.detach()
        if sync is not None:
            sync(self.classifier)
        self.opt.step()
        self.steps += 1
        if self.steps % self.snapshot_every == 0:
            self.snapshot = self._copy()
        return total.item() / len(pairs)

    def disc_loss(self, d_r, d_f, gp):
        w = (d_f.shape[0] * torch.softmax(d_f, dim=0)).detach()
        return (w * d_f - d_r).mean() + gp

    def ratio(self, fake) -> torch.Tensor:
        """r = (1-D1)/(D1·P0) per sample [B], with gradient through D1 = sigma(D'(fake)).

        D' and its snapshot both run in eval mode (no dropout): independent dropout masks would
        make r differ from 1 right after a snapshot, when D' and D0 are the same network.
        """
        was = self.classifier.training
        self.classifier.eval()
        self.snapshot.eval()
        try:
            with torch.no_grad():
                d0 = torch.sigmoid(self.snapshot(fake)).clamp(1e-6, 1 - 1e-6)
            d1 = torch.sigmoid(self.classifier(fake)).clamp(1e-6, 1 - 1e-6)
        finally:
            self.classifier.train(was)
        p0 = (1 - d0) / d0
        return (1 - d1) / (d1 * p0)

    def gen_loss(self, d_r, d_f, fake=None):
        if fake is None:
            raise ValueError("PPOGP.gen_loss needs the fake sequences (fake=...)")
        r = self.ratio(fake)
        rc = r.clamp(1 - self.clip, 1 + self.clip)
        a, b = r * d_f, rc * d_f
        target = torch.where(d_f > 0, torch.minimum(a, b), torch.maximum(a, b))
        return -target.mean()

    def state_dicts(self) -> dict:
        return {"ppo_classifier": self.classifier, "ppo_snapshot": self.snapshot}


def make_loss(name: str, classifier=None, **ppo_kwargs):
    """The loss object for ``name`` (one of LOSSES except ``mle``)."""
    if name == "wgan_gp":
        return WGANGP()
    if name == "rsgan":
        return RSGAN()
    if name == "rsgan_gp":
        return RSGANGP()
    if name == "ppo_gp":
        if classifier is None:
            raise ValueError("make_loss('ppo_gp') needs the classifier D'")
        return PPOGP(classifier, **ppo_kwargs)
    raise ValueError(f"unknown adversarial loss {name!r}; expected one of {LOSSES[1:]}")
