import json
import math

import pytest
import torch

from tgan.gan.config import PRESET_TRAIN, TrainConfig, build_parser, config_from_args
from tgan.model.checkpoint import load_checkpoint
from tgan.train import main

from .conftest import FAST


def _run(tmp_path, midi_folder, *extra):
    run = tmp_path / "run"
    rc = main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), *extra])
    assert rc == 0
    return run


@pytest.mark.parametrize("loss", ["wgan_gp", "rsgan", "rsgan_gp", "ppo_gp"])
def test_each_loss_trains_all_stages_and_writes_what_it_promises(tmp_path, midi_folder, loss):
    run = _run(tmp_path, midi_folder, "--loss", loss)
    ck = load_checkpoint(run, kind="run")
    assert ck.extra["stage"] == "done" and ck.step == 4 + 2 + 4
    gan = [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]
    adv = [r for r in gan if "gan/g_adv" in r]
    assert len(adv) == 2 and all(math.isfinite(r["gan/g_adv"]) and math.isfinite(r["gan/d_loss"]) for r in adv)
    assert any(p.name.startswith("events.out.tfevents") for p in (run / "logs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    assert summary["val_nll_last"] > 0 and len(summary["samples"]) == 2
    assert set(summary["triton_compiles"]) == {"compiled", "cache_hits", "seconds"}  # none on the CPU
    assert set(summary["note_stats_samples"]) <= {"PCU", "NPU", "EBR", "ISR", "PRS", "TUP", "PR", "APS", "IOI"}
    if loss == "ppo_gp":
        assert "ppo_classifier" in ck.models and "ppo_snapshot" in ck.models


def test_mle_only_with_cnn_discriminator_flag_and_generation(tmp_path, midi_folder):
    run = _run(tmp_path, midi_folder, "--loss", "mle", "--disc", "cnn")
    ck = load_checkpoint(run)
    assert ck.extra["stage"] == "done" and ck.step == 4
    assert (run / "samples" / "unconditional_00.mid").is_file()


def test_a_run_with_no_samples_finishes(tmp_path, midi_folder, capsys):
    run = _run(tmp_path, midi_folder, "--loss", "mle", "--sample-count", "0")
    summary = json.loads((run / "summary.json").read_text())
    assert summary["samples"] == [] and summary["generation_tokens_per_s"] is None
    assert "generation tokens/s: n/a (--sample-count 0)" in capsys.readouterr().out


def test_cnn_discriminator_skips_masked_pretraining(tmp_path, midi_folder):
    run = _run(tmp_path, midi_folder, "--loss", "rsgan_gp", "--disc", "cnn")
    assert load_checkpoint(run).step == 4 + 4  # no D pre-training stage for the CNN
    log = (run / "logs" / "metrics.jsonl").read_text()
    assert "disc/mlm_loss" not in log and "gan/g_adv" in log


@pytest.mark.parametrize("flags,needle", [
    (["--rollout-len", "-8"], "--rollout-len"),
    (["--prefix-len", "16", "--rollout-len", "16"], "--prefix-len"),
    (["--loss", "lsgan"], "--loss"),
    (["--rollout-len", "20", "--segment-len", "8"], "--rollout-len"),
    (["--mask", "word"], "--mask"),
])
def test_bad_flags_stop_before_any_work(tmp_path, capsys, flags, needle):
    with pytest.raises(SystemExit) as e:
        main(["--run-dir", str(tmp_path / "r"), *flags])
    assert e.value.code == 2
    assert needle in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_existing_run_needs_resume(tmp_path, midi_folder, capsys):
    run = _run(tmp_path, midi_folder, "--loss", "mle")
    with pytest.raises(SystemExit):
        main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "mle"])
    assert "--resume" in capsys.readouterr().err
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "mle", "--resume"]) == 0


def test_non_finite_losses_are_skipped_then_stop_the_run(tmp_path, midi_folder, monkeypatch, capsys):
    import tgan.gan.trainer as T

    real_step = T.mle_step
    calls = {"n": 0}

    def flaky(model, stream, pad_id):
        loss, n = real_step(model, stream, pad_id)
        calls["n"] += 1
        return (loss * float("nan") if calls["n"] > 2 else loss), n

    monkeypatch.setattr(T, "mle_step", flaky)
    run = tmp_path / "run"
    rc = main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "mle", "--mle-steps", "20",
                      "--max-bad-steps", "3"])
    assert rc == 1
    assert "consecutive non-finite" in capsys.readouterr().err
    # Steps 3 and 4 had NaN losses: their updates were skipped, so the step-4 checkpoint holds the
    # step-2 weights, finite; the run stopped at the third bad step (5) without saving anything broken.
    from tgan.model.checkpoint import list_checkpoints

    assert [p.name for p in list_checkpoints(run)] == ["step_00000002", "step_00000004"]
    w2, w4 = (load_checkpoint(p).models["gen"] for p in list_checkpoints(run))
    assert all(torch.equal(w2[k], w4[k]) and torch.isfinite(w4[k]).all() for k in w2)


def test_flags_are_generated_from_every_config_field_and_presets_apply():
    p = build_parser()
    cfg = config_from_args(p.parse_args(["--preset", "tiny", "--mle-steps", "7"]), on_gpu=False)
    assert cfg.mle_steps == 7 and cfg.rollout_len == PRESET_TRAIN["tiny"]["rollout_len"]
    assert config_from_args(p.parse_args([]), on_gpu=True).preset == "small"
    assert config_from_args(p.parse_args([]), on_gpu=True).rollout_len == 2048
    help_ = p.format_help()
    for f in TrainConfig.__dataclass_fields__:
        assert "--" + f.replace("_", "-") in help_


def _metrics(run):
    return [json.loads(line) for line in (run / "logs" / "metrics.jsonl").read_text().splitlines()]


def test_init_from_a_pretraining_only_run_takes_its_pretrained_d(tmp_path, midi_folder, capsys):
    # a --gan-steps 0 run (the experiment's shared pre-training) ends with a "done" checkpoint that
    # is its end of D pre-training: runs started from it take that D instead of pre-training their own
    from tgan.model.checkpoint import list_checkpoints

    source = _run(tmp_path, midi_folder, "--loss", "wgan_gp", "--gan-steps", "0")  # MLE 4, D 2
    done = load_checkpoint(source)
    assert done.extra["stage"] == "done" and done.step == 6
    # the dry run's estimate counts only what this run will train
    for loss, skipped in (("ppo_gp", "mle, disc"), ("mle", "mle")):
        assert main(FAST + ["--loss", loss, "--init-from", str(source), "--mle-steps", "20000",
                            "--disc-steps", "2000", "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert f"{skipped} finished there, not repeated" in out
        assert "mle 0.0 min, disc 0.0 min" in out
    run = tmp_path / "ppo"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "ppo_gp",
                        "--init-from", str(source)]) == 0
    first = load_checkpoint(list_checkpoints(run)[0])
    assert first.step == 6 and first.extra["stage"] == "gan"
    for name in ("gen", "disc"):
        assert all(torch.equal(first.models[name][k], done.models[name][k]) for k in done.models[name])
    assert not any(k.startswith(("mle/", "disc/")) for k in set().union(*_metrics(run)))
    assert load_checkpoint(run).step == 10


def test_init_from_reuses_another_runs_pretraining(tmp_path, midi_folder, capsys):
    from tgan.model.checkpoint import list_checkpoints

    source = _run(tmp_path, midi_folder, "--loss", "rsgan")  # MLE 4, D pre-training 2, GAN 4 steps
    kept = [p.name for p in list_checkpoints(source)]
    # the ends of MLE (4) and of D pre-training (6) are pinned: the newest-3 pruning keeps them
    assert kept == ["step_00000004", "step_00000006", "step_00000008", "step_00000010"]
    pretrained = load_checkpoint(source / "checkpoints" / "step_00000006")

    # a BERT run with another loss starts at the adversarial stage from the pre-trained G and D
    run = tmp_path / "wgan"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(run), "--loss", "wgan_gp",
                        "--init-from", str(source)]) == 0
    first = load_checkpoint(list_checkpoints(run)[0])
    assert first.step == 6 and first.extra["stage"] == "gan" and first.meta["pinned"]
    for name in ("gen", "disc"):
        assert all(torch.equal(first.models[name][k], pretrained.models[name][k])
                   for k in pretrained.models[name])
    keys = set().union(*_metrics(run))
    assert not any(k.startswith(("mle/", "disc/")) for k in keys) and "gan/g_adv" in keys
    end = load_checkpoint(run)
    assert end.extra["stage"] == "done" and end.step == 10
    assert end.extra["history"]["val_nll"][0] == pretrained.extra["history"]["val_nll"][0]

    # a CNN run takes G only (its D was never pre-trained); an MLE run is the equal-compute baseline:
    # from the end of MLE pre-training it runs the adversarial stage's iterations as MLE steps only
    cnn = tmp_path / "cnn"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(cnn), "--loss", "rsgan_gp",
                        "--disc", "cnn", "--init-from", str(source)]) == 0
    first = load_checkpoint(list_checkpoints(cnn)[0])
    assert first.step == 4 and first.extra["stage"] == "gan"
    assert all(torch.equal(first.models["gen"][k], pretrained.models["gen"][k]) for k in first.models["gen"])
    mle = tmp_path / "mle"
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(mle), "--loss", "mle",
                        "--init-from", str(source)]) == 0
    end = load_checkpoint(mle)
    assert end.extra["stage"] == "done" and end.step == 4 + 4  # MLE pre-training, then --gan-steps 4
    logged = _metrics(mle)
    keys = set().union(*logged)
    assert "gan/mle_loss" in keys and not any(k.startswith(("mle/", "disc/")) for k in keys)
    assert not any(k in keys for k in ("gan/g_adv", "gan/d_loss", "gan/beta"))
    assert sorted(m["step"] for m in logged if "gan/mle_loss" in m) == [5, 6, 7, 8]
    assert not all(torch.equal(end.models["gen"][k], pretrained.models["gen"][k]) for k in end.models["gen"])

    # errors name the flag: another vocabulary, a mid-stage checkpoint, a missing directory
    capsys.readouterr()
    for flags, needle in ((["--vocab", "full"], "--vocab"),):
        assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "bad"), "--loss", "rsgan",
                            "--init-from", str(source), *flags]) == 1
        err = capsys.readouterr().err
        assert "--init-from" in err and needle in err
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "bad2"), "--loss", "rsgan",
                        "--init-from", str(source / "checkpoints" / "step_00000008")]) == 1
    assert "middle of stage 'gan'" in capsys.readouterr().err
    corrupt = tmp_path / "corrupt"
    corrupt.mkdir()
    (corrupt / "meta.json").write_text("{not json")
    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "bad4"), "--loss", "rsgan",
                        "--init-from", str(corrupt)]) == 1
    assert "meta.json is unreadable" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--run-dir", str(tmp_path / "bad3"), "--init-from", str(tmp_path / "nope")])
    assert e.value.code == 2 and "--init-from" in capsys.readouterr().err


def test_the_log_gives_the_count_and_time_of_triton_compiles(monkeypatch, caplog):
    import logging

    from tgan.gan import trainer as tr

    counts = iter([{"compiled": 7, "cache_hits": 2, "seconds": 12.5}])
    monkeypatch.setattr(tr, "triton_compiles", lambda: next(counts))
    with caplog.at_level(logging.INFO, logger="tgan.gan.trainer"):
        tr.Trainer._log_compiles(None, "first adversarial iteration", {"compiled": 1, "cache_hits": 0, "seconds": 0.5},
                                 15.0)
    assert "first adversarial iteration: 15.0 s, of which 12.0 s in 6 Triton compiles (2 kernels loaded" in caplog.text
    caplog.clear()
    monkeypatch.setattr(tr, "triton_compiles", lambda: {"compiled": 1, "cache_hits": 0, "seconds": 0.5})
    tr.Trainer._log_compiles(None, "stage mle", {"compiled": 1, "cache_hits": 0, "seconds": 0.5}, 3.0)
    assert "Triton" not in caplog.text  # nothing compiled: no line
