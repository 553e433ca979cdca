"""Critics and selection when sampling: python -m tgan.critic, Generator.generate(candidates=N,
select=..., critic=...), export --with-critic, and the experiment's selection arms."""
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import tgan
from tgan.critic import Critic, CriticError, choose
from tgan.critic.model import load_critic, piece_windows
from tgan.data.vocab import Vocab
from tgan.export import export
from tgan.generate import main as generate_main
from tgan.sampling import generate_tokens
from tgan.model import BertConfig, BertDiscriminator

from .conftest import kill_when_written

VOCAB = Vocab.maestro()
ROOT = Path(__file__).resolve().parents[2]
# a toy critic run: seconds on a CPU
CRITIC = ["--steps", "6", "--pool", "4", "--sample-tokens", "48", "--primer-tokens", "8", "--refresh", "3",
          "--eval-windows", "6", "--eval-samples", "2", "--eval-every", "3", "--checkpoint-every", "3",
          "--batch-size", "4", "--window", "32", "--log-every", "1", "--device", "cpu", "--no-progress"]



class TokenCritic(Critic):
    """A critic whose window score is how often ``token`` occurs (``sign`` -1: how rarely)."""

    def __init__(self, generator, token: int, sign: float = 1.0):
        bert = BertDiscriminator(BertConfig(vocab_size=VOCAB.size, n_layer=1, d_model=8, n_head=2, d_inner=8,
                                            max_len=64))
        meta = {"window": 64, "eos_id": VOCAB.eos_id, "pad_id": VOCAB.pad_id,
                "generator": {"source": str(generator.source), "fingerprint": generator.fingerprint}}
        super().__init__(bert, meta)
        self.token, self.sign = token, sign

    def score_windows(self, ids):
        return self.sign * (ids == self.token).sum(1).float()


@pytest.fixture
def run(tmp_path, midi_folder, make_run):
    return make_run(tmp_path, str(midi_folder))


def _frequent_token(model, n=24, length=60):
    """A token that some candidates hold more often than others."""
    toks = generate_tokens(model.model, n, length, seed=0, eos_id=VOCAB.eos_id)
    counts = torch.stack([(toks == t).sum(1) for t in range(VOCAB.lm_size)])  # [V, n]
    spread = (counts.max(1).values - counts.min(1).values).float()
    spread[VOCAB.eos_id] = -1
    return int(spread.argmax())


def test_rerank_keeps_the_candidate_holding_the_token_the_critic_prefers(run):
    model = tgan.load(run, "cpu")
    token = _frequent_token(model)
    critic = TokenCritic(model, token)
    num, n, length = 3, 8, 60
    kept = model.generate(num, length, seed=0, temperature=1.0, top_k=0, candidates=n, select="rerank", critic=critic)
    # the candidates are num x N rows of one batch with the same seed
    cands = generate_tokens(model.model, num * n, length, seed=0, temperature=1.0, top_k=0, eos_id=VOCAB.eos_id)
    scores = critic.score(cands).reshape(num, n)
    assert (scores.max(1) > scores.min(1)).any(), "the candidates must differ in the preferred token"
    for i, s in enumerate(kept):
        assert np.array_equal(s.tokens, cands[i * n + int(scores[i].argmax())].numpy())
        assert s.settings["critic_score"] == pytest.approx(scores[i].max(), abs=1e-4)
        sel = s.settings["selection"]
        assert sel["candidates"] == n and sel["select"] == "rerank" and sel["tokens_per_kept"] == n
    # along the piece: a critic for the token against one against it, same candidates at the start
    every = dict(seed=0, temperature=1.0, top_k=0, candidates=6, select_every=15)
    more = model.generate(4, 75, critic=critic, **every)
    fewer = model.generate(4, 75, critic=TokenCritic(model, token, -1.0), **every)
    count = lambda samples: sum(int((s.tokens == token).sum()) for s in samples)  # noqa: E731
    assert count(more) > count(fewer)
    assert all(len(s.settings["block_scores"]) == 5 for s in more)
    assert more[0].settings["selection"]["tokens_per_kept"] == pytest.approx(6)
    again = model.generate(4, 75, critic=critic, **every)
    assert all(np.array_equal(a.tokens, b.tokens) for a, b in zip(more, again))


def test_sir_at_a_large_tau_is_a_uniform_choice_and_at_tau_1_follows_exp_score():
    scores = np.array([[4.0, 0.0, -2.0, 1.0]])
    draws = 4000
    rng = np.random.default_rng(0)
    uniform = np.bincount([choose(scores, "sir", 1e6, rng)[0] for _ in range(draws)], minlength=4)
    chi2 = (((uniform - draws / 4) ** 2) / (draws / 4)).sum()
    assert chi2 < 16.3  # chi-square, 3 degrees of freedom, p = 0.001
    tilted = np.bincount([choose(scores, "sir", 1.0, rng)[0] for _ in range(draws)], minlength=4) / draws
    p = np.exp(scores[0]) / np.exp(scores[0]).sum()
    assert tilted == pytest.approx(p, abs=0.03)
    assert choose(np.array([[1.0, 3.0, 2.0], [0.0, -1.0, 5.0]]), "rerank").tolist() == [1, 2]
    with pytest.raises(ValueError, match="select must be one of"):
        choose(scores, "best")


def test_a_critic_of_another_generator_is_refused_with_the_reason(run, tmp_path, midi_folder, make_run):
    model = tgan.load(run, "cpu")
    other = tgan.load(make_run(tmp_path, str(midi_folder), seed=1, name="other"), "cpu")
    assert other.fingerprint != model.fingerprint
    critic = TokenCritic(other, 5)
    with pytest.raises(CriticError, match="was trained against the generator .*other.* not against"):
        model.generate(1, 20, candidates=2, critic=critic)
    with pytest.raises(ValueError, match="needs a critic"):
        model.generate(1, 20, candidates=2)
    critic.save(tmp_path / "critic_other")
    with pytest.raises(ValueError, match="trained against"):
        export(run, tmp_path / "model", with_critic=str(tmp_path / "critic_other"))
    assert generate_main(["--checkpoint", str(run), "--out", str(tmp_path / "g"), "--length", "20",
                          "--candidates", "2", "--critic", str(tmp_path / "critic_other")]) == 2


def test_critic_cli_trains_resumes_exactly_and_serves_selection_from_an_exported_folder(run, tmp_path, midi_folder,
                                                                                        capsys):
    import os

    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    cmd = [sys.executable, "-m", "tgan.critic", "--generator", str(run), *CRITIC]
    subprocess.run(cmd + ["--out", str(whole)], check=True, env=env, capture_output=True)
    meta = json.loads((whole / "critic.json").read_text())
    assert meta["generator"]["fingerprint"] == tgan.load(run, "cpu").fingerprint
    assert meta["init"]["kind"] == "run" and meta["window"] == 32 and meta["steps"] == 6
    assert meta["data"]["source"] and 0 <= meta["auc"]["held_out"] <= 1 and len(meta["auc"]["history"]) == 2
    # killed after its step-3 checkpoint, resumed: the same critic as the uninterrupted run
    proc = subprocess.Popen(cmd + ["--out", str(cut)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when_written(proc, cut / "checkpoints" / "step_00000003" / "meta.json")
    assert not (cut / "critic.json").exists()
    subprocess.run(cmd + ["--out", str(cut), "--resume"], check=True, env=env, capture_output=True)
    a, b = load_critic(whole), load_critic(cut)
    for k, v in a.bert.state_dict().items():
        assert torch.equal(v, b.bert.state_dict()[k]), k
    # export with the critic: tgan.load picks it up, and a fresh process draws the same samples
    folder = export(run, tmp_path / "model", with_critic=str(whole))
    model = tgan.load(folder, "cpu")
    assert model.critic is not None and model.critic.generator_fingerprint == model.fingerprint
    assert "critic" in json.loads((folder / "config.json").read_text())
    mine = model.generate(2, 40, seed=3, candidates=4, select="sir")
    code = ("import tgan, sys; s = tgan.load(sys.argv[1], 'cpu').generate(2, 40, seed=3, candidates=4, "
            "select='sir'); print([x.tokens.tolist() for x in s])")
    fresh = subprocess.run([sys.executable, "-c", code, str(folder)], check=True, env=env, capture_output=True,
                           text=True).stdout
    assert json.loads(fresh) == [s.tokens.tolist() for s in mine]
    assert generate_main(["--checkpoint", str(folder), "--out", str(tmp_path / "g"), "--num", "2", "--length",
                          "40", "--candidates", "3"]) == 0
    record = json.loads((tmp_path / "g" / "samples.json").read_text())
    assert all(r["selection"]["candidates"] == 3 and "critic_score" in r for r in record.values())
    assert "generated tokens per kept token" in capsys.readouterr().out


def test_piece_windows_cut_at_eos_and_cover_the_end():
    t = np.arange(2, 12)
    assert [w.tolist() for w in piece_windows(t, 4, eos_id=1)] == [[2, 3, 4, 5], [6, 7, 8, 9], [8, 9, 10, 11]]
    assert [w.tolist() for w in piece_windows([5, 6, 1, 1, 1], 4, eos_id=1)] == [[5, 6, 1]]


def test_the_experiment_refuses_the_scorer_as_critic(tmp_path, capsys):
    from tgan.experiment import parse, selection_spec

    out = tmp_path / "exp"
    with pytest.raises(SystemExit):
        parse(["--out", str(out), "--arms", "mle,mle+rerank@4", "--critic-bert", str(out / "scorer")])
    assert "is the experiment's scorer" in capsys.readouterr().err
    assert selection_spec("mle+rerank@8/every256") == ("mle", {"select": "rerank", "candidates": 8,
                                                               "select_every": 256, "tau": 1.0})
    assert selection_spec("ppo_gp@gen-weight=0.1+sir@16/tau2")[1]["tau"] == 2.0
    for bad in ("mle+best@4", "mle+rerank@1", "mle+rerank", "mle+sir@4/fast"):
        with pytest.raises(SystemExit):
            parse(["--out", str(out), "--arms", bad])


def test_the_experiment_refuses_a_critic_started_from_the_scorer_s_weights(tmp_path, midi_folder):
    import shutil

    from tgan.critic.model import state_fingerprint
    from tgan.experiment import refuse_scorer_as_critic
    from tgan.scorer.train import ScorerConfig, load_scorer, train_scorer

    train_scorer(ScorerConfig(data=str(midi_folder), steps=1, max_len=32, val_chunks=2, device="cpu"),
                 tmp_path / "scorer", progress=False)
    shutil.copytree(tmp_path / "scorer", tmp_path / "copy")  # another path, the same weights
    weights = state_fingerprint(load_scorer(tmp_path / "copy")[0].state_dict())
    with pytest.raises(ValueError, match="must not be the scorer"):
        refuse_scorer_as_critic({"init": {"fingerprint": weights, "path": str(tmp_path / "copy")}}, tmp_path / "scorer")
    refuse_scorer_as_critic({"init": {"fingerprint": "0" * 32, "path": "pretrain"}}, tmp_path / "scorer")
