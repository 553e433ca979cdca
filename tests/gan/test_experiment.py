"""python -m tgan.experiment end to end at toy size: report structure, equal compute, resuming."""
import json
import shutil

import pytest
import torch

from tgan.experiment import arm_flags, main, parse
from tgan.metrics.notes_stats import STATISTICS
from tgan.model.checkpoint import list_checkpoints, load_checkpoint

TRAIN = ["--preset", "tiny", "--batch-size", "2", "--mle-steps", "20", "--disc-steps", "10", "--gan-steps", "10",
         "--gan-start", "0", "--gan-every", "2", "--rollout-len", "16", "--segment-len", "8", "--prefix-len", "3",
         "--eval-len", "64", "--eval-chunks", "2", "--eval-every", "0", "--sample-len", "24",
         "--checkpoint-every", "5", "--log-every", "1", "--d-warmup-steps", "0", "--d-eval-batch", "4"]


def _argv(midi_folder, out, arms="mle,rsgan", seeds="2"):
    return ["--data", str(midi_folder), "--out", str(out), "--arms", arms, "--seeds", seeds, "--num-samples", "2",
            "--sample-tokens", "300", "--primer-tokens", "20", "--scorer-steps", "10", "--eval-pieces", "6",
            "--nll-chunks", "2", "--device", "cpu", *TRAIN]


def _gan_mle_steps(run):
    lines = (run / "logs" / "metrics.jsonl").read_text().splitlines()
    return sorted(m["step"] for m in map(json.loads, lines) if "gan/mle_loss" in m)


def test_experiment_end_to_end_then_resumes_where_it_stopped(tmp_path, midi_folder, capsys):
    out = tmp_path / "exp"
    assert main(_argv(midi_folder, out)) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["arms"]) == ["mle", "rsgan"]
    assert report["options"]["train_flags"] == TRAIN and report["options"]["seeds"] == 2
    assert set(report["data"]["stats"]) == {"correct", "paper"}
    for arm, e in report["arms"].items():
        assert len(e["resumed"]) == 2 and not any(e["resumed"])
        assert all(len(e["wall_seconds"][k]["values"]) == 2 for k in ("train", "sample", "evaluate"))
        for i, kind in enumerate(("unconditional", "primed")):
            k = e[kind]
            assert len(k["NLL"]["values"]) == 2 and 0 < k["NLL"]["mean"] < 10 and k["NLL"]["std"] >= 0
            assert set(k["CA"]) >= {"mean", "std", "values", "intervals"} and len(k["CA"]["intervals"]) == 2
            assert "mean" in k["PLL"] and isinstance(k["CA_by_position"], list)
            for conv in ("correct", "paper"):
                assert list(k["stats"][conv]) == list(STATISTICS) == list(k["distance"][conv])
                assert k["distance"][conv]["NPU"]["mean"] is not None
            # the per-seed values are each run's own evaluation (same scorer, same data)
            rows = [json.loads((out / "arms" / arm / f"seed{s}" / "evaluation.json").read_text())["samples"][i]
                    for s in range(2)]
            assert k["NLL"]["values"] == [r["NLL"]["value"] for r in rows]
            assert k["CA"]["values"] == [r["CA"]["mean"] for r in rows]
            for st in ("NPU", "PR", "ISR"):
                assert k["distance"]["paper"][st]["values"] == pytest.approx([r["diff"]["paper"][st] for r in rows])
                assert k["stats"]["correct"][st]["values"] == pytest.approx(
                    [r["stats"]["correct"]["mean"][st] for r in rows])
        # equal compute: every arm runs the adversarial stage's 10 iterations, each with its MLE step,
        # from the one shared pre-training (MLE 20 steps; D pre-training 10 for the BERT arms)
        for s in range(2):
            run = out / "arms" / arm / f"seed{s}"
            end = load_checkpoint(run)
            first = 20 if arm == "mle" else 30
            assert end.extra["stage"] == "done" and end.step == first + 10
            # the shared pre-training's D too: no arm pre-trains a D of its own
            assert list(json.loads((run / "summary.json").read_text())["stage_seconds"]) == ["gan"]
            start = load_checkpoint(list_checkpoints(run)[0])
            assert start.step == first and (arm == "mle" or torch.equal(
                start.models["disc"]["head.weight"], load_checkpoint(out / "pretrain").models["disc"]["head.weight"]))
            assert _gan_mle_steps(run) == list(range(first + 1, first + 11))
            assert len(list((run / "eval_samples" / "unconditional").glob("*.mid"))) == 2
            assert len(list((run / "eval_samples" / "primed").glob("*.mid"))) == 2
    # the same primers and sampling seeds in every run
    primers = {json.dumps(sorted((n, i["primer"], i["seed"]) for n, i in json.loads(
        (out / "arms" / arm / f"seed{s}" / "eval_samples" / "primed" / "samples.json").read_text()).items()))
        for arm in ("mle", "rsgan") for s in range(2)}
    assert len(primers) == 1 and f"{midi_folder}:train:1" in primers.pop()
    assert report["primers"]["split"] == "train" and report["primers"]["pieces"] == [0, 1]  # no test pieces here
    assert "pieces of the train split" in (out / "report.md").read_text()
    md = (out / "report.md").read_text()
    assert "| arm | NLL | CA | PLL | " + " | ".join(STATISTICS) + " |" in md
    assert "## Table 1, primed samples (paper statistics)" in md and "| rsgan | " in md and "| mle | " in md
    assert "## Wall time per arm" in md
    assert (out / "plots" / "distance_correct.png").is_file() and (out / "plots" / "distance_paper.png").is_file()

    # killed in the middle of rsgan/seed1's training: its newest checkpoint is mid-stage, its steps unrecorded
    state = json.loads((out / "experiment.json").read_text())
    for step in ("train", "sample", "evaluate"):
        del state["done"][f"rsgan/seed1/{step}"]
    run = out / "arms" / "rsgan" / "seed1"
    shutil.rmtree(list_checkpoints(run)[-1])
    assert load_checkpoint(run).step == 35
    # that attempt began 100 s before its newest checkpoint was written
    state["started"] = {"rsgan/seed1/train": (list_checkpoints(run)[-1] / "meta.json").stat().st_mtime - 100}
    (out / "experiment.json").write_text(json.dumps(state))
    (run / "evaluation.json").unlink()
    finished = {p: p.stat().st_mtime_ns for p in out.glob("arms/*/seed*/evaluation.json")}
    pre = [p.name for p in list_checkpoints(out / "pretrain")]
    capsys.readouterr()
    assert main(_argv(midi_folder, out)) == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == finished  # finished arms are not redone
    assert [p.name for p in list_checkpoints(out / "pretrain")] == pre
    again = json.loads((out / "report.json").read_text())
    assert again["arms"]["rsgan"]["resumed"] == [False, True] and not any(again["arms"]["mle"]["resumed"])
    assert load_checkpoint(run).step == 40 and (run / "evaluation.json").is_file()
    done = json.loads((out / "experiment.json").read_text())
    assert done["started"] == {}
    train = done["done"]["rsgan/seed1/train"]
    assert train["carried_seconds"] == pytest.approx(100, abs=0.01) and 100 < train["seconds"] < 160
    assert done["done"]["mle/seed0/train"]["carried_seconds"] == 0
    assert again["arms"]["rsgan"]["wall_seconds"]["train"]["values"][1] == train["seconds"]
    wall = [line for line in (out / "report.md").read_text().splitlines() if line.endswith(("| yes |", "| no |"))]
    assert wall[0].startswith("| mle |") and wall[0].endswith("| no |")
    assert wall[1].startswith("| rsgan |") and wall[1].endswith("| yes |")

    # a variant arm added to the finished experiment: its own runs with its flags, from the same
    # pre-training and scorer; the finished arms are not redone
    variant = "rsgan@gen-weight=0.25@no-disc-prefix"
    capsys.readouterr()
    assert main(_argv(midi_folder, out, arms=f"mle,rsgan,{variant}")) == 0
    assert {p: p.stat().st_mtime_ns for p in finished} == finished
    assert [p.name for p in list_checkpoints(out / "pretrain")] == pre
    for s in range(2):
        cfg = json.loads((out / "arms" / variant / f"seed{s}" / "config.json").read_text())
        assert cfg["gen_weight"] == 0.25 and cfg["disc_prefix"] is False and cfg["loss"] == "rsgan"
        assert load_checkpoint(out / "arms" / variant / f"seed{s}").step == 40
    assert json.loads((out / "arms" / "rsgan" / "seed0" / "config.json").read_text())["gen_weight"] == 1.0
    with_variant = json.loads((out / "report.json").read_text())
    assert list(with_variant["arms"]) == ["mle", "rsgan", variant]
    assert f"| {variant} | " in (out / "report.md").read_text()

    # other options in the same folder are refused, naming what differs
    capsys.readouterr()
    assert main(_argv(midi_folder, out)[:-1] + ["2"]) == 1  # --log-every 2
    assert "train_flags" in capsys.readouterr().err


def test_arm_variants_parse_into_training_flags():
    assert arm_flags("ppo_gp") == ("ppo_gp", [])
    assert arm_flags("ppo_gp@gen-weight=0.1@no-disc-prefix") == ("ppo_gp", ["--gen-weight", "0.1", "--no-disc-prefix"])
    args, _ = parse(["--out", "x", "--arms", "mle,ppo_gp@beta-max=10,ppo_gp@beta-max=10,ppo_gp"])
    assert args.arms == ["mle", "ppo_gp@beta-max=10", "ppo_gp"]


@pytest.mark.parametrize("flags, needle", [(["--arms", "mle,gan"], "--arms"), (["--loss", "rsgan"], "--loss"),
                                           (["--seed", "3"], "--seed is set by the experiment"),
                                           (["--seeds", "0"], "--seeds"), (["--gan-stepz", "3"], "--gan-stepz"),
                                           (["--rollout-len", "10"], "--rollout-len"),
                                           (["--arms", "mle,gan@gen-weight=1"], "unknown arm(s) gan@gen-weight=1"),
                                           (["--arms", "ppo_gp@gen-weigth=1"], "'ppo_gp@gen-weigth=1'"),
                                           (["--arms", "ppo_gp@gen-weight=-1"], "--gen-weight: must be >= 0"),
                                           (["--arms", "ppo_gp@gen-weight=x"], "'ppo_gp@gen-weight=x'"),
                                           (["--arms", "ppo_gp@gan-steps=3"], "sets --gan-steps"),
                                           (["--arms", "ppo_gp@seed=3"], "sets --seed"),
                                           (["--arms", "ppo_gp@rollout-len=96"], "--rollout-len: must be a multiple")])
def test_bad_options_are_refused_naming_the_flag(tmp_path, flags, needle, capsys):
    with pytest.raises(SystemExit) as e:
        parse(["--out", str(tmp_path / "x"), *flags])
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_the_report_carries_d_auc_per_arm_and_mle_gets_the_adversarial_wall_clock(tmp_path, midi_folder):
    out = tmp_path / "exp"
    argv = _argv(midi_folder, out, arms="mle_wall,rsgan_gp,mle", seeds="1")
    argv += ["--d-warmup-steps", "2", "--d-warmup-eval-every", "1", "--d-warmup-auc", "1.0", "--d-eval-every", "5"]
    assert main(argv) == 0
    state = json.loads((out / "experiment.json").read_text())["done"]
    adv = state["rsgan_gp/seed0/train"]["stage_seconds"]
    assert set(adv) == {"dwarm", "gan"}
    wall = load_checkpoint(out / "arms" / "mle_wall" / "seed0")
    budget = wall.configs["train"]["mle_seconds"]
    assert budget == pytest.approx(adv["dwarm"] + adv["gan"], abs=0.06)  # its own wall-clock, not iterations
    assert state["mle_wall/seed0/train"]["stage_seconds"]["gan"] >= budget
    report = json.loads((out / "report.json").read_text())
    auc = report["arms"]["rsgan_gp"]["disc_auc"]["disc_auc"]
    assert auc["warmup_end"]["values"][0] is not None and 0 <= auc["last"]["mean"] <= 1
    assert [p["it"] for p in report["arms"]["rsgan_gp"]["disc_auc"]["curve"]] == [0, 5, 10]
    assert report["arms"]["mle"]["disc_auc"] is None and report["arms"]["mle_wall"]["disc_auc"] is None
    md = (out / "report.md").read_text()
    assert "## The discriminator's held-out AUC, beside CA" in md
    section = md[md.index("## The discriminator's held-out AUC, beside CA"):]
    row = next(line for line in section.splitlines() if line.startswith("| rsgan_gp | ")).split(" | ")
    assert row[3] == f"{auc['last']['mean']:.3f} ± 0.000"  # arm, warm-up end, first, last
    assert next(line for line in section.splitlines() if line.startswith("| mle | ")).split(" | ")[1:7] == ["n/a"] * 6
    if "disc_auc" in report.get("plots", {}):
        assert (out / "plots" / "disc_auc.png").stat().st_size > 0


def test_mle_wall_needs_an_adversarial_arm(tmp_path, midi_folder, capsys):
    with pytest.raises(SystemExit):
        parse(_argv(midi_folder, tmp_path / "x", arms="mle,mle_wall"))
    assert "mle_wall gets the wall-clock of the adversarial arms" in capsys.readouterr().err


def test_selection_arms_reuse_the_trained_run_train_one_critic_and_report_diversity_and_cost(tmp_path, midi_folder):
    out = tmp_path / "exp"
    argv = _argv(midi_folder, out, arms="mle,mle+rerank@3,mle+sir@2/every100", seeds="1") + ["--critic-steps", "2"]
    assert main(argv) == 0
    done = json.loads((out / "experiment.json").read_text())["done"]
    assert "mle/seed0/critic" in done and "mle+rerank@3/seed0/train" not in done  # one critic, one training
    critic = json.loads((out / "arms" / "mle" / "seed0" / "critic" / "critic.json").read_text())
    assert critic["init"]["path"].startswith(str(out / "pretrain"))  # the shared pre-training's BERT, not the scorer
    record = json.loads((out / "arms" / "mle+sir@2_every100" / "seed0" / "eval_samples" / "primed" /
                         "samples.json").read_text())
    assert all(r["selection"]["select_every"] == 100 and r["selection"]["select"] == "sir" for r in record.values())
    report = json.loads((out / "report.json").read_text())
    sel = report["arms"]["mle+rerank@3"]["selection"]
    assert sel["candidates"] == 3 and sel["tokens_per_kept"]["mean"] == pytest.approx(3)
    assert 0 <= sel["critic_auc"]["mean"] <= 1 and report["arms"]["mle"]["selection"] is None
    for arm in ("mle", "mle+rerank@3"):
        div = report["arms"][arm]["unconditional"]["diversity"]
        assert 0 < div["distinct_4grams"]["mean"] <= 1 and 0 <= div["pitch_histogram_distance"]["mean"] <= 1
    # NLL is the trained run's: the same for the arm and its selections
    assert (report["arms"]["mle+rerank@3"]["unconditional"]["NLL"]["mean"]
            == report["arms"]["mle"]["unconditional"]["NLL"]["mean"])
    md = (out / "report.md").read_text()
    assert "## Selection by a critic: CA, diversity and cost" in md and "| mle+sir@2/every100 | " in md
