"""python -m tgan.evaluate on tiny MIDI folders written here, with and without a tiny checkpoint."""
import json
import math

import numpy as np
import pytest
import torch

from tgan.data import CACHE_ENV, Note, Vocab, prepare, resolve_source, write_midi
from tgan.data.sources import hash_split
from tgan.evaluate import default_out, main
from tgan.scorer.train import ScorerConfig, load_scorer, train_scorer
from tgan.metrics.evaluation import piece_tokens, read_data_split, read_sample_folder, score_pll
from tgan.metrics.notes_stats import STATISTICS
from tgan.model import (BertConfig, BertDiscriminator, CNNConfig, CNNDiscriminator, GeneratorConfig,
                        TransformerXL)
from tgan.model.checkpoint import save_checkpoint


def random_notes(rng, n, lo=48, hi=84):
    t, notes = 0.0, []
    for _ in range(n):
        t += float(rng.choice([0.0, 0.1, 0.25, 0.5]))
        notes.append(Note(int(rng.integers(lo, hi)), int(rng.integers(30, 110)), round(t, 2),
                          round(t + float(rng.choice([0.1, 0.3, 0.6])), 2)))
    return notes


@pytest.fixture
def folders(tmp_path, monkeypatch):
    """A data folder (4 train pieces, 1 validation piece) and a folder of 3 samples."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    data = tmp_path / "data"
    data.mkdir()
    want, i = {"train": 4, "validation": 1}, 0
    while any(want.values()):
        name = f"piece_{i}.mid"
        split = hash_split(name)
        if want.get(split):
            write_midi(random_notes(rng, 60), data / name)
            want[split] -= 1
        i += 1
    samples = tmp_path / "run" / "samples"
    samples.mkdir(parents=True)
    for k in range(3):
        write_midi(random_notes(rng, 50, 60, 72), samples / f"sample_{k}.mid")
    return data, samples


def run(capsys, *argv):
    code = main([*map(str, argv), "--no-progress"])
    out, err = capsys.readouterr()
    return code, out, err


def test_table_and_json(folders, capsys, tmp_path):
    data, samples = folders
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--markdown", tmp_path / "t.md")
    assert code == 0, err
    lines = [line for line in out.splitlines() if line.startswith("|")]
    assert len(lines) == 4  # header, separator, data, samples
    assert "NLL | CA  | PLL" in lines[0] and lines[0].rstrip(" |").endswith("IOI")
    assert lines[2].startswith("| data: data (train, 4 pieces)")
    assert "samples: " in lines[3] and "(3 files)" in lines[3]
    assert "(+" in lines[3] or "(-" in lines[3]  # differences to the data row
    assert lines[3].split("|")[2].strip() == "n/a"  # no checkpoint: no NLL
    path = default_out(samples)
    assert path == samples.parent / "samples-evaluation.json" and f"wrote {path}" in out
    r = json.loads(path.read_text())
    assert r["data"]["pieces"] == 4 and r["samples"][0]["pieces"] == 3
    stats = r["samples"][0]["stats"]["correct"]
    assert set(stats["mean"]) == set(STATISTICS) and stats["n"]["PCU"] == 3
    # the row is the mean (and population std) of each file's own statistics
    from tgan.data import read_midi
    from tgan.metrics import note_statistics

    per_file = [note_statistics(read_midi(f), "correct") for f in sorted(samples.glob("*.mid"))]
    for name in STATISTICS:
        vals = [x[name] for x in per_file]
        assert stats["mean"][name] == pytest.approx(np.mean(vals), rel=1e-9, abs=1e-12), name
        assert stats["std"][name] == pytest.approx(np.std(vals), rel=1e-9, abs=1e-12), name
    assert len({x["IOI"] for x in per_file}) > 1 and stats["std"]["IOI"] > 0
    d = r["samples"][0]["diff"]["correct"]["NPU"]
    assert d == pytest.approx(stats["mean"]["NPU"] - r["data"]["stats"]["correct"]["mean"]["NPU"])
    assert r["options"]["split"] == "train" and r["model"] is None
    assert (tmp_path / "t.md").read_text() == r["markdown"]


def test_both_conventions_clip_and_two_sample_sets(folders, capsys, tmp_path):
    data, samples = folders
    other = tmp_path / "other"
    other.mkdir()
    write_midi(random_notes(np.random.default_rng(5), 20), other / "x.midi")
    out_json = tmp_path / "r.json"
    code, out, err = run(capsys, "--data", data, "--samples", samples, other, "--convention", "both",
                         "--clip-seconds", 2, "--max-pieces", 2, "--out", out_json)
    assert code == 0, err
    assert "| correct convention" in out and "| paper convention" in out
    assert out.count("| samples: ") == 4 and "first 2 s" in out
    r = json.loads(out_json.read_text())
    assert r["conventions"] == ["correct", "paper"] and r["data"]["pieces"] == 2
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--clip-tokens", 40,
                         "--out", out_json)
    assert code == 0 and "first 40 tokens" in out


def test_non_midi_file_is_skipped_and_counted(folders, capsys, caplog):
    data, samples = folders
    (samples / "readme.txt").write_text("not music")
    code, out, err = run(capsys, "--data", data, "--samples", samples)
    assert code == 0
    assert "(3 files, 1 skipped)" in out and "readme.txt" in caplog.text
    r = json.loads(default_out(samples).read_text())
    assert r["samples"][0]["skipped"][0]["path"].endswith("readme.txt")


@pytest.mark.parametrize("case", ["empty", "missing", "data"])
def test_bad_folders_exit_2_with_a_clear_message(folders, capsys, tmp_path, case):
    data, samples = folders
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = {"empty": ["--data", data, "--samples", samples, empty],
            "missing": ["--data", data, "--samples", tmp_path / "nope"],
            "data": ["--data", tmp_path / "nodata", "--samples", samples]}[case]
    code, out, err = run(capsys, *argv)
    assert code == 2 and err.startswith("error: ")
    assert {"empty": f"sample folder {empty} is empty", "missing": "does not exist",
            "data": f"data path {tmp_path / 'nodata'} does not exist"}[case] in err


def test_bad_flags_exit_2(folders, capsys):
    data, samples = folders
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data), "--samples", str(samples), "--clip-seconds", "1",
              "--clip-tokens", "5"])
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        main(["--data", str(data), "--samples", str(samples), "--max-pieces", "0"])
    assert e.value.code == 2 and "--max-pieces must be >= 1" in capsys.readouterr().err


def _tiny_run(run_dir, disc="bert", models=("gen", "disc"), loss="ppo_gp", stage=None, stage_step=0,
              step=7, seed=0, gen_bias=None, train=None):
    torch.manual_seed(seed)
    v = Vocab.maestro()
    gcfg = GeneratorConfig(vocab_size=v.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32,
                           tgt_len=16, mem_len=16, eval_mem_len=32, dropout=0.0, attn_dropout=0.0)
    gen = TransformerXL(gcfg)
    if gen_bias is not None:  # zero embeddings: every position's logits are the output bias
        with torch.no_grad():
            gen.embed.weight.zero_()
            gen.out_bias.copy_(gen_bias)
    bcfg = BertConfig(vocab_size=v.size, n_layer=1, d_model=16, n_head=2, d_inner=32, max_len=32,
                      dropout=0.0, attn_dropout=0.0)
    ccfg = CNNConfig(vocab_size=v.size, d_embed=8, n_filters=4)
    d = BertDiscriminator(bcfg) if disc == "bert" else CNNDiscriminator(ccfg)
    all_models = {"gen": gen, "disc": d}
    extra = {"stage": stage, "stage_step": stage_step} if stage else {}
    return save_checkpoint(run_dir, step, "run", {k: all_models[k] for k in models}, extra=extra,
                           configs={"generator": gcfg.to_dict(), "bert": bcfg.to_dict(), "cnn": ccfg.to_dict(),
                                    "train": {"disc": disc, "eval_len": 128, "loss": loss, "segment_len": 16,
                                              **(train or {})},
                                    "vocab": "maestro"})


@pytest.fixture
def scorer_dir(folders, tmp_path):
    """A scorer trained for 4 steps on the test data set (32 positions)."""
    data, _ = folders
    out = tmp_path / "scorer"
    train_scorer(ScorerConfig(data=str(data), max_len=32, steps=4, batch_size=2, val_chunks=2, warmup=1),
                 out, progress=False)
    return out


def test_untrained_bert_is_refused(folders, capsys, tmp_path):
    data, samples = folders
    for loss in ("mle", "ppo_gp"):  # an MLE-only run; a run stopped before D's pre-training ended
        ck = _tiny_run(tmp_path / loss, loss=loss, stage="disc" if loss != "mle" else None)
        code, out, err = run(capsys, "--data", data, "--samples", samples, "--checkpoint", ck)
        assert code == 2 and out == ""
        assert f"checkpoint {ck}: its BERT discriminator never finished masked-LM pre-training" in err
        assert "--scorer" in err and "--nll-only" in err
    warm = {"d_warmup_steps": 5, "gan_steps": 4}  # a D warm-up trains D against the generator too
    for name, stage, step in (("adv", "done", 0), ("warming", "dwarm", 3), ("warmed", "gan", 0)):
        adv = _tiny_run(tmp_path / name, stage=stage, stage_step=step, train=warm)
        code, out, err = run(capsys, "--data", data, "--samples", samples, "--checkpoint", adv)
        assert code == 2 and f"checkpoint {adv}: its BERT discriminator was adversarially trained" in err


def test_nll_only(folders, capsys, tmp_path):
    data, samples = folders
    v = Vocab.maestro()
    logp = torch.log_softmax(torch.randn(v.lm_size, generator=torch.Generator().manual_seed(0)) * 2, 0)
    ck = _tiny_run(tmp_path / "run", loss="mle", gen_bias=logp)
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--checkpoint", ck, "--nll-only",
                         "--device", "cpu")
    assert code == 0, err
    r = json.loads(default_out(samples).read_text())
    nll = r["samples"][0]["NLL"]
    assert nll["split"] == "validation" and nll["chunks"] >= 1 and r["model"]["NLL"] == nll
    # The generator predicts logp at every position: the NLL is the mean of -logp over every
    # validation token that a chunk of eval_len (128) tokens predicts (all but each chunk's first).
    toks = torch.from_numpy(prepare(data, progress=False).file_tokens("validation", 0).astype(np.int64))
    targets = torch.cat([toks[s + 1: s + 128] for s in range(0, len(toks), 128)])
    assert nll["chunks"] == math.ceil(len(toks) / 128) >= 2
    assert nll["value"] == pytest.approx(float(-logp[targets].mean()), rel=1e-5)
    assert r["samples"][0]["CA"] is None and r["scorer"] is None and "PLL and CA: off (--nll-only)" in out
    row = [line for line in out.splitlines() if line.startswith("| samples:")][0].split("|")
    assert float(row[2]) == pytest.approx(nll["value"], abs=1e-3) and row[3].strip() == "n/a"


def test_pre_trained_d_is_the_fallback_scorer(folders, capsys, tmp_path):
    data, samples = folders
    ck = _tiny_run(tmp_path / "run", stage="gan", stage_step=0)  # the checkpoint that ends D pre-training
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--checkpoint", ck, "--device", "cpu",
                         "--pll-pieces", 1)
    assert code == 0, err
    r = json.loads(default_out(samples).read_text())
    assert r["scorer"]["kind"] == "checkpoint" and r["scorer"]["path"] == str(ck)
    assert r["data"]["PLL"]["block_len"] == 16 and r["samples"][0]["CA"]["block_len"] == 16  # segment_len
    assert f"the BERT discriminator of checkpoint {ck}" in out and "16-token crops" in out


def test_the_same_scorer_produces_every_row(folders, capsys, tmp_path, scorer_dir):
    data, samples = folders
    other = tmp_path / "other"
    other.mkdir()
    rng = np.random.default_rng(7)
    for k in range(3):
        write_midi(random_notes(rng, 50, 40, 90), other / f"o_{k}.mid")
    runs = [_tiny_run(tmp_path / "a", loss="mle", seed=1), _tiny_run(tmp_path / "b", stage="done", seed=2)]
    code, out, err = run(capsys, "--data", data, "--samples", samples, other, "--checkpoint", *runs,
                         "--scorer", scorer_dir, "--device", "cpu", "--pll-pieces", 2, "--ca-folds", 3)
    assert code == 0, err
    r = json.loads(default_out(samples).read_text())
    assert r["scorer"]["path"] == str(scorer_dir) and set(r["scorer"]) >= {"path", "data", "mlm_accuracy"}
    assert r["scorer"]["data"].startswith(f"midi {data}") and 0 <= r["scorer"]["mlm_accuracy"] <= 1
    assert f"PLL and CA: scorer {scorer_dir}" in out and "the same scorer for every row" in out
    # Each row's PLL is the scorer's, recomputed here (not a checkpoint's D).
    bert, _ = load_scorer(scorer_dir)
    v = Vocab.maestro()
    limit = r["data"]["clip_tokens"]
    data_set = read_data_split(resolve_source(str(data)), "train")
    real = [t[:limit] for t in piece_tokens(data_set.pieces, v)]
    assert r["data"]["PLL"]["value"] == pytest.approx(
        score_pll(bert, real, v.mask_id, block_len=32, max_pieces=2)["value"], abs=1e-5)
    for row, folder in zip(r["samples"], (samples, other)):
        fake = piece_tokens(read_sample_folder(folder).pieces, v)
        assert row["PLL"]["value"] == pytest.approx(
            score_pll(bert, fake, v.mask_id, block_len=32, max_pieces=2)["value"], abs=1e-5)
        assert set(row["CA"]) >= {"mean", "low", "high", "folds", "blocks"} and len(row["CA"]["folds"]) == 3
        assert row["CA"]["low"] <= row["CA"]["mean"] <= row["CA"]["high"]
        assert row["CA_by_position"] and set(row["CA_by_position"][0]) == {"start", "end", "accuracy", "blocks"}
    assert [row["checkpoint"] for row in r["samples"]] == [str(c) for c in runs]
    assert r["samples"][0]["NLL"]["value"] != r["samples"][1]["NLL"]["value"]  # each row its own model
    assert "(too few)" in out  # a few dozen blocks: flagged, not a plain number
    assert out.count("CA along the piece, ") == 2


def test_scorer_of_another_vocab_or_data_set(folders, capsys, tmp_path, scorer_dir):
    data, samples = folders
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--scorer", scorer_dir, "--vocab", "full")
    assert code == 2 and f"scorer {scorer_dir} was trained on the 'maestro' vocabulary" in err
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    for k in range(4):
        write_midi(random_notes(np.random.default_rng(k), 40), elsewhere / f"e_{k}.mid")
    code, out, err = run(capsys, "--data", elsewhere, "--samples", samples, "--scorer", scorer_dir,
                         "--split", "train", "--device", "cpu")
    assert code == 0, err
    assert f"Warning: the scorer {scorer_dir} was trained on midi {data}" in out


def test_data_cut_to_the_samples_length(folders, capsys, tmp_path):
    data, samples = folders
    code, out, err = run(capsys, "--data", data, "--samples", samples)
    assert code == 0, err
    r = json.loads(default_out(samples).read_text())
    longest = max(len(t) for t in piece_tokens(read_sample_folder(samples).pieces, Vocab.maestro()))
    assert r["data"]["clip_tokens"] == longest and f"cut to their first {longest} tokens" in out
    whole = json.loads(default_out(samples).read_text())["data"]["stats"]["correct"]["mean"]
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--whole-pieces")
    r2 = json.loads(default_out(samples).read_text())
    assert code == 0 and r2["data"]["clip_tokens"] is None and "whole pieces (--whole-pieces)" in out
    assert r2["data"]["stats"]["correct"]["mean"]["NPU"] > whole["NPU"]  # longer pieces use more pitches


def test_cnn_checkpoint_gives_pll_ca_na(folders, capsys, tmp_path):
    data, samples = folders
    ck = _tiny_run(tmp_path / "run", disc="cnn")
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--checkpoint", ck)
    assert code == 0, err
    row = [line for line in out.splitlines() if line.startswith("| samples:")][0].split("|")
    assert row[2].strip() != "n/a" and row[3].strip() == "n/a" and row[4].strip() == "n/a"
    assert "PLL and CA: n/a" in out and "CNN discriminator" in out


@pytest.mark.parametrize("case", ["no_generator", "not_a_checkpoint"])
def test_wrong_checkpoint_exits_2(folders, capsys, tmp_path, case):
    data, samples = folders
    if case == "no_generator":
        ck = _tiny_run(tmp_path / "run", models=("disc",))
        expected = "holds no generator"
    else:
        ck = tmp_path / "plain"
        ck.mkdir()
        expected = f"{ck} holds no complete checkpoint"
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--checkpoint", ck)
    assert code == 2 and expected in err and out == ""


def test_plot_writes_figures(folders, capsys, tmp_path, scorer_dir):
    pytest.importorskip("matplotlib")
    data, samples = folders
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--plot", "--max-pieces", 2,
                         "--out", tmp_path / "res.json", "--scorer", scorer_dir, "--ca-folds", 2)
    assert code == 0, err
    plots = tmp_path / "res-plots"
    assert (plots / "histograms.png").stat().st_size > 1000
    assert (plots / "ca_by_position.png").stat().st_size > 1000
    assert sorted(p.name for p in (plots / "set1-samples").iterdir()) == \
        ["sample_0.png", "sample_1.png", "sample_2.png"]


def test_python_api_gives_the_command_s_table(folders, capsys, tmp_path, scorer_dir):
    import tgan

    data, samples = folders
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--scorer", scorer_dir,
                         "--device", "cpu", "--pll-pieces", 1, "--ca-folds", 3)
    assert code == 0, err
    cli = json.loads(default_out(samples).read_text())
    r = tgan.evaluate_samples(samples, data=str(data), scorer=scorer_dir, device="cpu", pll_pieces=1,
                      ca_folds=3, out=tmp_path / "api.json")
    assert r["markdown"] in out  # the same table the command printed
    assert r["samples"][0]["CA"] == cli["samples"][0]["CA"] and r["data"]["PLL"] == cli["data"]["PLL"]
    assert json.loads((tmp_path / "api.json").read_text())["samples"][0]["CA"] == r["samples"][0]["CA"]
    with pytest.raises(ValueError, match="unknown option 'folds'"):
        tgan.evaluate_samples(samples, data=str(data), folds=3)
    with pytest.raises(ValueError, match="--ca-folds must be >= 2, got 1"):
        tgan.evaluate_samples(samples, data=str(data), ca_folds=1, nll_only=True)


def test_piano_rolls_mark_where_the_primer_ends(folders, capsys, tmp_path, scorer_dir, monkeypatch):
    pytest.importorskip("matplotlib")
    from tgan.metrics import plots

    data, samples = folders
    (samples / "samples.json").write_text(json.dumps({
        "sample_0.mid": {"primer_tokens": 40, "primer_seconds": 2.5},
        "sample_1.mid": {"primer_tokens": 0, "primer_seconds": 0.0}}))
    seen = {}
    real = plots.piano_roll
    monkeypatch.setattr(plots, "piano_roll", lambda perf, path, title="", primer_end=None:
                        seen.setdefault(title, primer_end) or real(perf, path, title, primer_end))
    code, out, err = run(capsys, "--data", data, "--samples", samples, "--plot", "--max-pieces", 2,
                         "--out", tmp_path / "res.json", "--nll-only")
    assert code == 0, err
    assert seen == {"sample_0": 2.5, "sample_1": None, "sample_2": None}
    perf = read_sample_folder(samples).pieces[0]
    ax = plots.piano_roll_figure(perf, "x", primer_end=2.5).axes[0]
    assert [line.get_xdata()[0] for line in ax.lines] == [2.5]
    assert not plots.piano_roll_figure(perf, "x").axes[0].lines


def test_the_data_pll_is_computed_once_per_scorer_and_data(folders, tmp_path, scorer_dir, monkeypatch):
    # an experiment evaluates every run against the same data with the same scorer: the data's PLL
    # is kept in the process, keyed on the scorer's weights, the tokens and the options
    import tgan
    import tgan.table1 as ev

    monkeypatch.setattr(ev, "_DATA_PLL", {})
    calls = []
    real_score = ev.score_pll
    monkeypatch.setattr(ev, "score_pll", lambda *a, **kw: calls.append(kw["desc"]) or real_score(*a, **kw))
    data, samples = folders
    opts = dict(data=str(data), scorer=scorer_dir, device="cpu", pll_pieces=2, ca_folds=2)
    first = tgan.evaluate_samples(samples, out=tmp_path / "a.json", **opts)
    second = tgan.evaluate_samples(samples, out=tmp_path / "b.json", **opts)
    assert calls.count("PLL: data") == 1 and len(calls) == 3  # the samples' PLL each time
    assert first["data"]["PLL"] == second["data"]["PLL"] and not math.isnan(first["data"]["PLL"]["value"])
    tgan.evaluate_samples(samples, out=tmp_path / "c.json", **{**opts, "pll_pieces": 1})  # other options
    assert calls.count("PLL: data") == 2
    bert, _ = load_scorer(scorer_dir)
    o = dict(block_len=32, max_pieces=1, device="cpu", batch_size=8, progress=False)
    real = [np.arange(40) % 50 + 5]
    n = len(ev._DATA_PLL)
    ev._data_pll(bert, real, 3, o)
    ev._data_pll(bert, real, 3, o)
    assert len(ev._DATA_PLL) == n + 1
    with torch.no_grad():
        next(bert.parameters()).add_(0.5)  # other weights: another key
    ev._data_pll(bert, real, 3, o)
    assert len(ev._DATA_PLL) == n + 2
    # data cut at other lengths past the PLL's first 2048 tokens per piece: the same blocks, one entry
    ev._data_pll(bert, [np.arange(2100) % 50 + 5], 3, o)
    ev._data_pll(bert, [np.arange(2300) % 50 + 5], 3, o)
    assert len(ev._DATA_PLL) == n + 3
