"""The adversarial stage as Equation 1 states it: lambda trades L_mle against L_gen in one update."""
import pytest
import torch

from tgan.gan.config import build_parser, config_from_args
from tgan.gan.trainer import Trainer
from tgan.train import main

from .conftest import FAST


@pytest.fixture(scope="module")
def pretrained(tmp_path_factory, midi_folder):
    """A run that finished MLE and D pre-training (tiny sizes): every case below starts from it."""
    run = tmp_path_factory.mktemp("pre") / "run"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "wgan_gp",
                        "--gan-steps", "0"]) == 0
    return run


def _gan(tmp_path, midi_folder, pretrained, name, *flags, steps=4):
    """The generator's weights before and after ``steps`` adversarial-stage iterations, dropout off so
    the only randomness is the data and the rollouts."""
    args = build_parser().parse_args(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / name),
                                             "--init-from", str(pretrained), "--loss", "wgan_gp",
                                             "--gan-steps", str(steps), "--gan-every", "1", *flags])
    t = Trainer(config_from_args(args, on_gpu=False))
    for m in t.gen.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
        if hasattr(m, "attn_dropout"):
            m.attn_dropout = 0.0
    before = torch.cat([p.detach().flatten().clone() for p in t.gen.parameters()])
    t.run()
    return before, torch.cat([p.detach().flatten() for p in t.gen.parameters()])


@pytest.fixture(scope="module")
def mle_only(tmp_path_factory, midi_folder, pretrained):
    """The same iterations with no adversarial step: MLE-only training."""
    return _gan(tmp_path_factory.mktemp("mle"), midi_folder, pretrained, "mle", "--gan-start", "1000")


def test_lambda_zero_is_mle_only_training(tmp_path, midi_folder, pretrained, mle_only):
    start, mle = mle_only
    _, zero = _gan(tmp_path, midi_folder, pretrained, "zero", "--gen-weight", "0")
    assert not torch.equal(start, mle)
    torch.testing.assert_close(zero, mle, rtol=0, atol=0)


def _distances(tmp_path, midi_folder, pretrained, mle_only, mode):
    _, mle = mle_only
    _, low = _gan(tmp_path, midi_folder, pretrained, "low", "--gen-weight", "0.1", "--gen-update", mode)
    _, high = _gan(tmp_path, midi_folder, pretrained, "high", "--gen-weight", "10", "--gen-update", mode)
    return float((low - mle).norm()), float((high - mle).norm())


def test_lambda_trades_the_two_terms_in_one_update(tmp_path, midi_folder, pretrained, mle_only):
    # Measured: lambda 0.1 ends 0.0012 from the MLE-only weights, lambda 10 0.0133 (11x).
    low, high = _distances(tmp_path, midi_folder, pretrained, mle_only, "joint")
    assert high > 5 * low, (low, high)


def test_separate_optimizers_keep_the_released_schedule(tmp_path, midi_folder, pretrained, mle_only):
    # The released code steps L_gen with its own Adam, which cancels lambda's scale: lambda 0.1 and
    # 10 end about as far from the MLE-only weights (measured 0.023 and 0.027).
    low, high = _distances(tmp_path, midi_folder, pretrained, mle_only, "separate")
    assert low < high < 2 * low, (low, high)


@pytest.mark.parametrize("prefix", [True, False])
def test_the_stage_passes_its_flags_and_the_whole_rollout(tmp_path, midi_folder, pretrained, monkeypatch, prefix):
    import tgan.gan.losses as L
    import tgan.gan.trainer as T

    seen = {"gp": [], "cls": [], "d": [], "g": []}
    real_d, real_cls, real_g = T.discriminator_step, L.PPOGP.classifier_step, T.generator_adversarial_step

    def d_step(disc, loss, real, fake, segment_len, gp_weight, prefix_len, disc_prefix):
        seen["gp"].append(gp_weight)
        return real_d(disc, loss, real, fake, segment_len, gp_weight, prefix_len, disc_prefix)

    def cls_step(self, pairs, sync=None):
        seen["cls"].append([(r.shape[1], f.shape[1]) for r, f in pairs])
        return real_cls(self, pairs, sync=sync)

    def g_step(*a, **k):
        seen["g"].append(k["grad_segments"])
        return real_g(*a, **k)

    def disc_spy(x):
        seen["d"].append(x.shape[1])
        return disc_forward(x)

    monkeypatch.setattr(T, "discriminator_step", d_step)
    monkeypatch.setattr(L.PPOGP, "classifier_step", cls_step)
    monkeypatch.setattr(T, "generator_adversarial_step", g_step)
    args = build_parser().parse_args(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "ppo"),
                                             "--mem-grad-segments", "2" if prefix else "1",
                                             "--init-from", str(pretrained), "--loss", "ppo_gp", "--gp-weight", "3.5",
                                             "--gan-steps", "2", "--gan-every", "1",
                                             "--disc-prefix" if prefix else "--no-disc-prefix"])
    t = Trainer(config_from_args(args, on_gpu=False))
    disc_forward = t.disc.forward
    t.disc.forward = disc_spy
    t.run()
    assert seen["gp"] == [3.5, 3.5] and seen["g"] == [2 if prefix else 1] * 2
    first = 8 + 3 if prefix else 8  # FAST: segments of 8, a prefix of 3
    assert seen["cls"] == [[(first, first), (8, 8)]] * 2  # D' sees both segments of the 16-token rollout
    # D's forward calls, per adversarial iteration: D step (real, fake per segment), then the
    # generator's segments (fake, real)
    assert seen["d"][:8] == [first, first, 8, 8, first, first, 8, 8]


@pytest.mark.parametrize("flags,length", [([], 256), (["--disc-len", "40"], 40)])
def test_d_pretraining_covers_every_position(tmp_path, midi_folder, monkeypatch, flags, length):
    import tgan.gan.trainer as T

    shapes, real_step = [], T.mlm_step

    def spy(disc, batch, *a, **k):
        shapes.append(tuple(batch.shape))
        return real_step(disc, batch, *a, **k)

    monkeypatch.setattr(T, "mlm_step", spy)
    args = build_parser().parse_args(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "d"),
                                             "--loss", "wgan_gp", "--mle-steps", "1", "--gan-steps", "0", *flags])
    t = Trainer(config_from_args(args, on_gpu=False))
    t.run()
    assert t.bcfg.max_len == 256 and shapes == [(2, length)] * 2  # tiny: D has 256 positions
    # the position embeddings that received gradient (AdamW's decay moves the others too)
    trained = t.opt["d_pre"].state[t.disc.position.weight]["exp_avg_sq"].sum(1) > 0
    assert bool(trained[:length].all()) and not bool(trained[length:].any())


def test_freeze_layers_beyond_d_is_a_clear_error(tmp_path, midi_folder):
    args = build_parser().parse_args(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "f"),
                                             "--freeze-layers", "3"])
    with pytest.raises(ValueError, match="--freeze-layers: must be <= D's 2 layers"):
        Trainer(config_from_args(args, on_gpu=False))
