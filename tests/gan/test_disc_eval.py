"""The discriminator's held-out AUC, the D warm-up that uses it, and --d-steps."""
import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tgan.gan.data_feed import DataFeed
from tgan.gan.disc_eval import HeldOutProbe, balanced_accuracy, roc_auc
from tgan.model import TransformerXL, preset
from tgan.model.checkpoint import latest_checkpoint, load_checkpoint
from tgan.train import main

from .conftest import FAST, kill_when_written


def test_roc_auc_is_the_share_of_correctly_ordered_pairs():
    rng = np.random.default_rng(0)
    pos, neg = rng.normal(0.5, 1, 37).round(1), rng.normal(0, 1, 23).round(1)  # rounding makes ties
    pairs = (pos[:, None] > neg[None, :]).mean() + 0.5 * (pos[:, None] == neg[None, :]).mean()
    assert roc_auc(pos, neg) == pytest.approx(pairs, abs=1e-12)
    assert roc_auc([2, 3], [0, 1]) == 1.0 and roc_auc([0, 1], [2, 3]) == 0.0 and roc_auc([1, 1], [1]) == 0.5
    assert balanced_accuracy([2, 3], [0, 1]) == 1.0 and balanced_accuracy([1.0], [-1.0], threshold=0.0) == 1.0
    with pytest.raises(ValueError, match="both classes"):
        roc_auc([], [1.0])


class NoiseCritic(torch.nn.Module):
    """A D that has learned nothing: a random logit whatever it is shown."""

    def forward(self, x):
        return torch.randn(x.shape[0])


class DistinctTokens(torch.nn.Module):
    """A D that counts distinct tokens: a sequence of one repeated token scores lowest."""

    def forward(self, x):
        ids = x.argmax(-1) if x.is_floating_point() else x
        return torch.tensor([float(len(torch.unique(row))) for row in ids])


def fixed_token(gen, token: int):
    """Make ``gen`` emit ``token`` at every step (its logit raised far above the rest)."""
    step = gen.step

    def fixed(x, state, **kw):
        logits = step(x, state, **kw)
        return logits + 1e4 * torch.nn.functional.one_hot(torch.tensor(token), logits.shape[-1]).to(logits)

    gen.step = fixed
    return gen


@pytest.fixture(scope="module")
def feed(midi_folder, tmp_path_factory):
    os.environ.setdefault("TGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tgan_cache"))
    return DataFeed(str(midi_folder), progress=False)


def _gen(feed):
    torch.manual_seed(0)
    v = feed.vocab
    return TransformerXL(preset("tiny", vocab_size=v.lm_size, pad_id=v.pad_id).generator)


@pytest.mark.parametrize("disc_prefix", [False, True])
def test_the_measure_is_chance_for_a_noise_d_and_one_for_a_fixed_token_generator(feed, disc_prefix):
    probe = HeldOutProbe(feed, batch_size=32, prefix_len=4, rollout_len=32, segment_len=8,
                         disc_prefix=disc_prefix, seed=0, device="cpu")
    gen = fixed_token(_gen(feed), feed.vocab.time_shift(10))
    torch.manual_seed(1)
    m = probe.measure(gen, {"noise": NoiseCritic(), "distinct": DistinctTokens()}, beta=1.0, step=0)
    assert abs(m["noise"]["auc"] - 0.5) < 0.1  # 128 items a class: AUC's standard error ~0.036
    assert m["distinct"]["auc"] > 0.95 and m["distinct"]["acc"] > 0.9
    # the probe draws its own crops and noise: the same step measures the same items, and the
    # training run's random streams are left as they were
    state = torch.get_rng_state()
    real_a, fake_a = probe.draw(gen, 1.0, step=3)
    assert torch.equal(torch.get_rng_state(), state)
    real_b, fake_b = probe.draw(gen, 1.0, step=3)
    assert torch.equal(real_a, real_b) and torch.equal(fake_a, fake_b)
    assert (fake_a.argmax(-1) == feed.vocab.time_shift(10)).all()


def _auc_points(run):
    rows = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if any(k.endswith("_auc") for k in r)]


def test_warmup_stops_at_its_target_on_separable_classes(tmp_path, midi_folder, monkeypatch):
    # a generator that emits one token: D learns to tell its samples from music in a few steps
    init = TransformerXL.__init__

    def patched(self, cfg):
        init(self, cfg)
        fixed_token(self, 4)

    monkeypatch.setattr(TransformerXL, "__init__", patched)
    run = tmp_path / "run"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "wgan_gp",
                        "--d-warmup-steps", "80", "--d-warmup-eval-every", "2", "--d-warmup-auc", "0.9",
                        "--d-lr", "1e-3", "--d-eval-batch", "8", "--freeze-layers", "0"]) == 0
    warm = [p for p in _auc_points(run) if "dwarm/d_auc" in p]
    assert warm[0]["dwarm/d_auc"] < 0.9 <= warm[-1]["dwarm/d_auc"]
    assert all(p["dwarm/d_auc"] < 0.9 for p in warm[:-1])  # it stopped at the first point that reached it
    steps = 2 * (len(warm) - 1)
    assert steps < 80
    summary = json.loads((run / "summary.json").read_text())
    assert summary["disc_auc"]["warmup_end"] == warm[-1]["dwarm/d_auc"]
    assert summary["disc_auc"]["points"] == len([p for p in _auc_points(run) if "gan/d_auc" in p])
    # checkpoint numbering counts the planned warm-up steps whatever it used: MLE 4 + D 2 + 80 + GAN 4
    assert load_checkpoint(run).step == 4 + 2 + 80 + 4


def test_d_steps_counts_d_updates_per_generator_update(tmp_path, midi_folder, monkeypatch):
    from tgan.gan import losses, trainer

    calls = {"d": 0, "ppo": 0}
    d_step, ppo_step = trainer.discriminator_step, losses.PPOGP.classifier_step

    def counted_d(*a, **k):
        calls["d"] += 1
        return d_step(*a, **k)

    def counted_ppo(self, *a, **k):
        calls["ppo"] += 1
        return ppo_step(self, *a, **k)

    monkeypatch.setattr(trainer, "discriminator_step", counted_d)
    monkeypatch.setattr(losses.PPOGP, "classifier_step", counted_ppo)
    run = tmp_path / "run"
    # 4 iterations, adversarial at 0 and 2: 2 generator updates, 3 D (and D') updates before each
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "ppo_gp", "--d-steps", "3"]) == 0
    assert calls == {"d": 6, "ppo": 6}
    points = [p for p in _auc_points(run) if "gan/d_auc" in p]
    assert len(points) == 5 and all(0 <= p["gan/d_auc"] <= 1 and "gan/ppo_auc" in p for p in points)


def test_resume_inside_the_warmup_ends_as_an_uninterrupted_run(tmp_path, tmp_path_factory, midi_folder):
    flags = FAST + ["--data", str(midi_folder), "--loss", "ppo_gp", "--deterministic", "--seed", "5",
                    "--d-warmup-steps", "8", "--d-warmup-eval-every", "2", "--d-warmup-auc", "1.0",
                    "--checkpoint-every", "2"]
    cmd = [sys.executable, "-m", "tgan.train", *flags]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TGAN_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "tgan_cache")}
    a, b = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(cmd + ["--run-dir", str(a)], check=True, env=env, capture_output=True, timeout=600)
    proc = subprocess.Popen(cmd + ["--run-dir", str(b)], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    kill_when_written(proc, b / "checkpoints" / "step_00000010" / "meta.json")  # MLE 4 + D 2 + 4 warm-up steps
    ck = load_checkpoint(latest_checkpoint(b))
    assert ck.extra["stage"] == "dwarm" and 0 < ck.extra["stage_step"] < 8, "not killed inside the warm-up"
    subprocess.run(cmd + ["--run-dir", str(b), "--resume"], check=True, env=env, capture_output=True, timeout=600)
    wa, wb = load_checkpoint(a), load_checkpoint(b)
    assert wa.step == wb.step == 4 + 2 + 8 + 4
    for name in ("gen", "disc", "ppo_classifier"):
        for k, t in wa.models[name].items():
            assert torch.equal(t, wb.models[name][k]), f"{name}.{k} differs after a resume inside the warm-up"
    assert wa.extra["history"]["disc_auc"] == wb.extra["history"]["disc_auc"]


def test_init_from_reuses_a_finished_warmup_of_the_same_loss_only(tmp_path, midi_folder, capsys):
    source = tmp_path / "src"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(source), "--loss", "wgan_gp",
                        "--d-warmup-steps", "2", "--d-warmup-eval-every", "1", "--d-warmup-auc", "1.0"]) == 0
    warmed = load_checkpoint(source / "checkpoints" / "step_00000008")  # MLE 4 + D 2 + warm-up 2
    assert warmed.extra["stage"] == "gan" and warmed.meta["pinned"]
    same, other = tmp_path / "same", tmp_path / "other"
    common = FAST + ["--data", str(midi_folder), "--init-from", str(source), "--d-warmup-steps", "2",
                     "--d-warmup-eval-every", "1", "--d-warmup-auc", "1.0"]
    assert main(common + ["--run-dir", str(same), "--loss", "wgan_gp"]) == 0
    first = load_checkpoint(sorted((same / "checkpoints").iterdir())[0])
    assert first.step == 8 and first.extra["stage"] == "gan"
    assert all(torch.equal(first.models["disc"][k], warmed.models["disc"][k]) for k in warmed.models["disc"])
    logged = map(json.loads, (same / "logs" / "metrics.jsonl").read_text().splitlines())
    assert not any("dwarm/d_loss" in p for p in logged)
    # another loss warms its own D up, from the end of D pre-training
    assert main(common + ["--run-dir", str(other), "--loss", "rsgan_gp"]) == 0
    first = load_checkpoint(sorted((other / "checkpoints").iterdir())[0])
    pre = load_checkpoint(source / "checkpoints" / "step_00000006")
    assert first.step == 6 and first.extra["stage"] == "dwarm"
    assert all(torch.equal(first.models["disc"][k], pre.models["disc"][k]) for k in pre.models["disc"])
