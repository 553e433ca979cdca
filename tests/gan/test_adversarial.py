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


def test_the_stage_passes_its_flags_and_the_whole_rollout(tmp_path, midi_folder, pretrained, monkeypatch):
    import tgan.gan.losses as L
    import tgan.gan.trainer as T

    seen = {"gp": [], "cls": []}
    real_d, real_cls = T.discriminator_step, L.PPOGP.classifier_step

    def d_step(disc, loss, real, fake, segment_len, gp_weight, prefix_len):
        seen["gp"].append(gp_weight)
        return real_d(disc, loss, real, fake, segment_len, gp_weight, prefix_len)

    def cls_step(self, real_ids, fake, sync=None, segment_len=None):
        seen["cls"].append((real_ids.shape[1], fake.shape[1], segment_len))
        return real_cls(self, real_ids, fake, sync=sync, segment_len=segment_len)

    monkeypatch.setattr(T, "discriminator_step", d_step)
    monkeypatch.setattr(L.PPOGP, "classifier_step", cls_step)
    args = build_parser().parse_args(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "ppo"),
                                             "--init-from", str(pretrained), "--loss", "ppo_gp", "--gp-weight", "3.5",
                                             "--gan-steps", "2", "--gan-every", "1"])
    Trainer(config_from_args(args, on_gpu=False)).run()
    assert seen["gp"] == [3.5, 3.5]
    assert seen["cls"] == [(16, 16, 8)] * 2  # D' sees both segments of the 16-token rollout
