import math

import torch
import torch.nn.functional as F

from tgan.gan.losses import PPOGP, RSGAN, RSGANGP, WGANGP, gradient_penalty, make_loss
from tgan.gan.schedule import gumbel_beta, inverse_sqrt
from tgan.model import BertConfig, BertDiscriminator

d_r = torch.tensor([0.5, -1.0, 2.0])
d_f = torch.tensor([1.0, 0.0, -0.5])


def test_wgan_and_rsgan_formulas():
    gp = torch.tensor(0.25)
    assert math.isclose(float(WGANGP().disc_loss(d_r, d_f, gp)), (0.5 / 3) - (1.5 / 3) + 0.25, rel_tol=1e-6)
    assert math.isclose(float(WGANGP().gen_loss(d_r, d_f)), -0.5 / 3, rel_tol=1e-6)
    sp = lambda x: math.log1p(math.exp(x))  # noqa: E731
    want_d = (sp(0.5) + sp(1.0) + sp(-2.5)) / 3
    want_g = (sp(-0.5) + sp(-1.0) + sp(2.5)) / 3
    assert math.isclose(float(RSGAN().disc_loss(d_r, d_f, torch.tensor(0.0))), want_d, rel_tol=1e-6)
    assert math.isclose(float(RSGAN().gen_loss(d_r, d_f)), want_g, rel_tol=1e-6)
    assert not RSGAN.uses_gp and RSGANGP.uses_gp and WGANGP.uses_gp


class _Const(torch.nn.Module):
    """A classifier whose logit per sample is a fixed value plus a scaled input sum."""

    def __init__(self, logits, scale=0.0):
        super().__init__()
        self.logits, self.scale = torch.nn.Parameter(logits.clone()), scale

    def forward(self, x):
        return self.logits + self.scale * x.float().sum(dim=(1, 2)) if x.dim() == 3 else self.logits


def test_ppo_gp_generator_and_discriminator_formulas():
    # snapshot D0 = sigma(0) = 0.5 -> P0 = 1; now D1 = sigma(l): r = (1-D1)/D1 = exp(-l)
    cls = _Const(torch.zeros(3))
    ppo = PPOGP(cls, clip=0.4)
    with torch.no_grad():
        cls.logits.copy_(torch.tensor([-1.0, 0.2, 1.0]))
    fake = torch.zeros(3, 2, 5)
    r = torch.exp(-torch.tensor([-1.0, 0.2, 1.0]))  # 2.718, 0.819, 0.368
    rc = r.clamp(0.6, 1.4)
    target = [min(r[0] * 1.0, rc[0] * 1.0), min(r[1] * 0.0, rc[1] * 0.0), max(r[2] * -0.5, rc[2] * -0.5)]
    want = -sum(float(t) for t in target) / 3
    assert math.isclose(ppo.gen_loss(d_r, d_f, fake=fake).item(), want, rel_tol=1e-5)
    w = 3 * torch.softmax(d_f, 0)
    want_d = float((w * d_f - d_r).mean()) + 0.1
    assert math.isclose(float(ppo.disc_loss(d_r, d_f, torch.tensor(0.1))), want_d, rel_tol=1e-6)


def test_ppo_snapshot_every_n_classifier_steps():
    cls = _Const(torch.zeros(2), scale=1.0)
    ppo = PPOGP(cls, lr=0.1, snapshot_every=3)
    real, fake = torch.randint(0, 5, (2, 4)), torch.rand(2, 4, 5)
    snap0 = ppo.snapshot
    for i in range(3):
        ppo.classifier_step([(real, fake)])
        assert (ppo.snapshot is snap0) == (i < 2)
    assert not any(p.requires_grad for p in ppo.snapshot.parameters())


def test_gradient_penalty_matches_its_definition():
    torch.manual_seed(0)
    d = BertDiscriminator(BertConfig(vocab_size=11, n_layer=1, d_model=8, n_head=2, d_inner=16, max_len=16,
                                     dropout=0.0, attn_dropout=0.0))
    real = torch.randint(0, 10, (4, 6))
    fake = torch.softmax(torch.randn(4, 6, 10), -1)
    torch.manual_seed(1)
    gp = gradient_penalty(d, real, fake, weight=10.0)
    torch.manual_seed(1)
    a = torch.rand(4, 1, 1)
    x_hat = a * F.one_hot(real, 10).float() + (1 - a) * fake
    e = (x_hat @ d.word.weight[:10]).detach().requires_grad_(True)
    (g,) = torch.autograd.grad(d.score_embedded(e).sum(), e)
    want = 10 * ((torch.sqrt(g.pow(2).sum((1, 2)) + 1e-12) - 1) ** 2).mean()
    torch.testing.assert_close(gp, want)
    gp.backward()  # the penalty trains D
    assert d.head.weight.grad is not None


def test_schedules():
    assert gumbel_beta(0, 100, 100.0) == 1.0 and math.isclose(gumbel_beta(50, 100, 100.0), 10.0)
    assert gumbel_beta(100, 100, 100.0) == 100.0 and gumbel_beta(500, 100, 100.0) == 100.0
    f = inverse_sqrt(4)
    expected = [0.25, 0.5, 0.75, 1.0, round(math.sqrt(4 / 5), 4), round(math.sqrt(4 / 6), 4)]
    assert [round(f(s), 4) for s in range(6)] == expected


def test_make_loss_rejects_unknown():
    import pytest

    with pytest.raises(ValueError, match="unknown adversarial loss"):
        make_loss("lsgan")
    with pytest.raises(ValueError, match="classifier"):
        make_loss("ppo_gp")


def _bert(dropout=0.0, V=11):
    return BertDiscriminator(BertConfig(vocab_size=V, n_layer=1, d_model=8, n_head=2, d_inner=16, max_len=16,
                                        dropout=dropout, attn_dropout=dropout))


def test_gradient_penalty_weight_scales_it_and_reaches_the_discriminator_loss():
    from tgan.gan.rollout import discriminator_step

    torch.manual_seed(0)
    d = _bert()
    real = torch.randint(0, 10, (4, 3 + 12))
    fake = torch.softmax(torch.randn(4, 12, 10), -1)
    gps = []
    for w in (3.0, 7.0):
        torch.manual_seed(1)
        gps.append(float(gradient_penalty(d, real[:, :6], fake[:, :6], weight=w).detach()))
    assert gps[0] > 0 and math.isclose(gps[1], gps[0] * 7 / 3, rel_tol=1e-5)
    losses = []
    for w in (0.0, 2.0, 5.0):
        torch.manual_seed(2)
        losses.append(discriminator_step(d, WGANGP(), real, fake, 6, w, 3)[0])
    gp2, gp5 = losses[1] - losses[0], losses[2] - losses[0]
    assert gp2 > 0 and math.isclose(gp5, gp2 * 5 / 2, rel_tol=1e-4)


def test_ppo_ratio_is_one_right_after_a_snapshot_even_with_dropout():
    torch.manual_seed(0)
    cls = _bert(dropout=0.3)
    ppo = PPOGP(cls, lr=1e-2, snapshot_every=2)
    cls.train()
    fake = torch.softmax(torch.randn(5, 6, 10) * 3, -1)
    real = torch.randint(0, 10, (5, 6))
    ppo.classifier_step([(real, fake)])
    assert not torch.equal(ppo.ratio(fake), torch.ones(5))  # one step on: D' moved away from D0
    ppo.classifier_step([(real, fake)])  # snapshot now
    r = ppo.ratio(fake)
    assert torch.equal(r, torch.ones(5)), r
    assert cls.training  # the classifier goes back to training mode
    # then L_G is exactly -mean(D_f)
    d_f = torch.tensor([0.3, -0.2, 1.0, 0.0, -2.0])
    assert math.isclose(float(ppo.gen_loss(None, d_f, fake=fake).detach()), -float(d_f.mean()), rel_tol=1e-6)


def test_ppo_generator_gradient_flows_through_the_classifier():
    torch.manual_seed(0)
    ppo = PPOGP(_bert(), snapshot_every=1000)
    fake = torch.softmax(torch.randn(3, 6, 10), -1).requires_grad_(True)
    d_f = torch.tensor([0.5, -0.4, 0.9])  # a constant: any gradient to the fakes comes through D1
    (g,) = torch.autograd.grad(ppo.gen_loss(None, d_f, fake=fake), fake)
    assert g.abs().sum() > 0


def test_ppo_classifier_learns_from_every_segment():
    calls = []

    class Rec(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.b = torch.nn.Parameter(torch.zeros(1))

        def forward(self, x):
            calls.append(x.detach().clone())
            return self.b.expand(x.shape[0])

    ppo = PPOGP(Rec(), snapshot_every=1000)
    real = torch.arange(2 * 12).reshape(2, 12)
    fake = torch.rand(2, 12, 5)
    pairs = [(real[:, 4 * s: 4 * s + 4], fake[:, 4 * s: 4 * s + 4]) for s in range(3)]
    ppo.classifier_step(pairs)
    assert len(calls) == 6
    for s in range(3):
        assert torch.equal(calls[2 * s], pairs[s][0]) and torch.equal(calls[2 * s + 1], pairs[s][1])
