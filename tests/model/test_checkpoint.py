import json
import random

import numpy as np
import pytest
import torch

from tgan.model import GeneratorConfig, TransformerXL
from tgan.model.checkpoint import CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint, save_checkpoint


def _setup():
    g = TransformerXL(GeneratorConfig(vocab_size=20, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32))
    opt = torch.optim.Adam(g.parameters(), lr=1e-3)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 / (s + 1))
    g(torch.randint(0, 20, (2, 5)))[0].sum().backward()
    opt.step()
    sched.step()
    return g, opt, sched


def test_round_trip_restores_weights_optimizer_scheduler_and_rng(tmp_path):
    g, opt, sched = _setup()
    save_checkpoint(tmp_path, 7, "run", {"gen": g}, {"g": opt}, {"g": sched}, {"generator": g.cfg.to_dict()},
                    {"stage": "mle"})
    expect_torch, expect_np, expect_py = torch.rand(3), np.random.rand(3), random.random()
    ck = load_checkpoint(tmp_path, kind="run")
    assert ck.step == 7 and ck.extra == {"stage": "mle"}
    g2 = TransformerXL(GeneratorConfig.from_dict(ck.configs["generator"]))
    g2.load_state_dict(ck.models["gen"])
    for a, b in zip(g.state_dict().values(), g2.state_dict().values()):
        torch.testing.assert_close(a, b)
    opt2 = torch.optim.Adam(g2.parameters(), lr=1e-3)
    opt2.load_state_dict(ck.optimizers["g"])
    s1, s2 = opt.state_dict(), opt2.state_dict()
    assert s1["state"].keys() == s2["state"].keys() and len(s1["state"]) > 0
    for k in s1["state"]:  # every entry: exp_avg, exp_avg_sq, step
        assert s1["state"][k].keys() == s2["state"][k].keys()
        for name, v in s1["state"][k].items():
            assert torch.equal(v, s2["state"][k][name]) and (name == "step" or v.abs().sum() > 0), (k, name)
    sched2 = torch.optim.lr_scheduler.LambdaLR(opt2, lambda s: 1.0 / (s + 1))
    sched2.load_state_dict(ck.meta["schedulers"]["g"])
    assert sched2.last_epoch == sched.last_epoch
    ck.restore_rng()
    torch.testing.assert_close(torch.rand(3), expect_torch)
    assert np.allclose(np.random.rand(3), expect_np) and random.random() == expect_py


def test_corrupt_incomplete_and_wrong_kind_checkpoints_raise(tmp_path):
    g, opt, _ = _setup()
    path = save_checkpoint(tmp_path, 1, "run", {"gen": g})
    with pytest.raises(CheckpointError, match="expected one of"):
        load_checkpoint(path, kind="generator")
    blob = (path / "gen.safetensors").read_bytes()
    (path / "gen.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="corrupt"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "nope")
    # a directory written half-way (no meta.json) is not a checkpoint and is never "latest"
    (tmp_path / "checkpoints" / "step_00000009").mkdir()
    assert latest_checkpoint(tmp_path) == path
    (path / "meta.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="unreadable"):
        load_checkpoint(path)


def test_keeps_the_newest_checkpoints(tmp_path):
    g, _, _ = _setup()
    for s in range(5):
        save_checkpoint(tmp_path, s, "run", {"gen": g}, keep=2)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000003", "step_00000004"]
    assert json.loads((list_checkpoints(tmp_path)[-1] / "meta.json").read_text())["step"] == 4


def test_pinned_checkpoints_are_never_pruned(tmp_path):
    g, _, _ = _setup()
    for s in range(6):
        save_checkpoint(tmp_path, s, "run", {"gen": g}, keep=2, pin=s == 1)
    assert [p.name for p in list_checkpoints(tmp_path)] == ["step_00000001", "step_00000004",
                                                            "step_00000005"]
