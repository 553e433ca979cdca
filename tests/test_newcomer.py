"""What a newcomer meets first: errors that name the problem, honest sample lengths, progress bars
that end at their totals, the primer apart from the continuation, and the distribution's name."""
import json
import logging
import re
import tomllib
from pathlib import Path

import mido
import numpy as np
import pytest
import torch

import tgan
from tgan.api import Sample
from tgan.data.midi import read_midi, write_midi
from tgan.data.notes import Note
from tgan.data.vocab import Vocab
from tgan.export import export, main as export_main
from tgan.generate import main as generate_main
from tgan.metrics.report import merge_positions
from tgan.train import main as train_main


ROOT = Path(__file__).resolve().parents[1]
VOCAB = Vocab.maestro()
NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")


@pytest.mark.parametrize("extra,needle", [
    (["--device", "tpu"], "--device 'tpu'"),
    (["--temperature", "0"], "--temperature must be > 0, got 0.0"),
    (["--top-p", "1.5"], "--top-p must be in (0, 1] (1 = off), got 1.5"),
    (["--top-k", "-1"], "--top-k must be >= 0 (0 = all tokens), got -1"),
])
def test_generate_cli_names_the_flag_and_its_value(run, tmp_path, capsys, extra, needle):
    try:
        rc = generate_main(["--checkpoint", str(run), "--out", str(tmp_path / "o")] + extra)
    except SystemExit as e:
        rc = e.code
    assert rc == 2 and needle in capsys.readouterr().err


@NO_CUDA
def test_cuda_without_cuda_is_one_line_naming_the_device(run, tmp_path, capsys):
    assert generate_main(["--checkpoint", str(run), "--out", str(tmp_path / "o"), "--device", "cuda"]) == 2
    err = capsys.readouterr().err
    assert "--device 'cuda': CUDA is not available" in err and "Traceback" not in err
    with pytest.raises(ValueError, match="device 'cuda': CUDA is not available"):
        tgan.load(run, device="cuda")


def test_an_existing_file_as_out_folder_is_refused(run, tmp_path, capsys):
    f = tmp_path / "file"
    f.write_text("x")
    assert generate_main(["--checkpoint", str(run), "--out", str(f)]) == 2
    assert f"--out {f} is a file" in capsys.readouterr().err
    assert export_main([str(run), "--out", str(f)]) == 2
    assert f"--out {f} is a file" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs,needle", [
    ({"primer": {"a": 1}}, "primer must be a MIDI path, a mido.MidiFile or token ids"),
    ({"primer": [1.5, 2.7]}, "token ids must be integers"),
    ({"primer": [VOCAB.note_on(60), VOCAB.eos_id]}, "id 1 is EOS"),
    ({"primer": [VOCAB.pad_id, VOCAB.note_on(60)]}, "id 0 is PAD"),
    ({"seed": "abc"}, "seed must be None or an int in [0, 2**63), got 'abc'"),
    ({"seed": 2 ** 70}, "seed must be None or an int"),
])
def test_api_arguments_are_value_errors_naming_them(run, kwargs, needle):
    with pytest.raises(ValueError, match=re.escape(needle)):
        tgan.load(run, "cpu").generate(length=20, **kwargs)


def test_model_folder_errors_name_the_folder_in_one_line(run, tmp_path):
    folder = export(run, tmp_path / "model")
    cfg = json.loads((folder / "config.json").read_text())
    cases = [
        (dict(cfg, generator=dict(cfg["generator"], d_model=32)), "differ in shape"),
        ({k: v for k, v in cfg.items() if k != "format"}, "config.json has no 'format'"),
        (dict(cfg, vocab="nope"), "does not describe a generator (vocab 'nope'"),
        (dict(cfg, generator=dict(cfg["generator"], n_layer=0)), "generator"),
    ]
    for bad, needle in cases:
        (folder / "config.json").write_text(json.dumps(bad))
        with pytest.raises(ValueError) as e:
            tgan.load(folder, "cpu")
        assert needle in str(e.value) and str(folder) in str(e.value) and "\n" not in str(e.value), str(e.value)


def _tokens(*events):
    return np.asarray(events, dtype=np.int64)


def test_sample_length_seconds_and_eos_are_what_the_tokens_say(tmp_path):
    v = VOCAB
    one_second = [v.time_shift(100)] if v.time_shift(100) < v.lm_size else []
    ended = Sample(_tokens(v.note_on(60), *one_second, v.note_off(60), v.eos_id, v.eos_id, v.eos_id), 0, v)
    assert ended.length == 3 and ended.ended_by_eos and ended.seconds == pytest.approx(1.0)
    info = ended.info()
    assert info["tokens"] == 3 and info["ended_by_eos"] and info["seconds_of_music"] == pytest.approx(1.0)
    # a note never released ends where the tokens do, not 3 s later
    hanging = Sample(_tokens(v.note_on(60), *one_second, v.note_on(64), *one_second), 0, v)
    assert not hanging.ended_by_eos and hanging.seconds == pytest.approx(2.0)
    assert max(n.end for n in hanging.notes) <= 2.0 + 1e-9
    hanging.save(tmp_path / "h.mid")
    assert mido.MidiFile(tmp_path / "h.mid").length == pytest.approx(2.0, abs=0.02)


def test_primer_end_is_marked_and_the_continuation_saved_apart(tmp_path):
    v = VOCAB
    step = [v.time_shift(50)]
    toks = _tokens(v.note_on(60), *step, v.note_off(60), v.note_on(62), *step, v.note_off(62), v.note_on(64), *step,
                   v.note_off(64))
    s = Sample(toks, 3, v)  # the primer: the first note and its half second
    s.save(tmp_path / "all.mid")
    marks = [m for t in mido.MidiFile(tmp_path / "all.mid").tracks for m in t if m.type == "marker"]
    assert [m.text for m in marks] == ["primer end"]
    assert [n.pitch for n in read_midi(tmp_path / "all.mid").notes] == [60, 62, 64]
    s.save(tmp_path / "cont.mid", part="continuation")
    cont = read_midi(tmp_path / "cont.mid").notes
    assert [n.pitch for n in cont] == [62, 64] and cont[0].start == pytest.approx(0.0)
    with pytest.raises(ValueError, match="part must be"):
        s.save(tmp_path / "x.mid", part="primer")


def test_a_midi_primer_cut_to_the_default_length_says_so(run, tmp_path, caplog, primer_file):
    with caplog.at_level(logging.WARNING, logger="tgan.api"):
        toks = tgan.load(run, "cpu").primer(primer_file(tmp_path / "p.mid"))
    assert len(toks) == 50 and "its first 50 of" in caplog.text


def test_generate_cli_prints_real_lengths_and_its_bar_ends_at_its_total(run, tmp_path, capsys, primer_file):
    assert generate_main(["--checkpoint", str(run), "--out", str(tmp_path / "g"), "--num", "2", "--length", "60",
                          "--primer", str(primer_file(tmp_path / "p.mid")), "--primer-tokens", "10"]) == 0
    out, err = capsys.readouterr()
    lengths = [int(m) for m in re.findall(r"\((\d+) tokens, [\d.]+ s", out)]
    record = json.loads((tmp_path / "g" / "samples.json").read_text())
    assert sorted(lengths) == sorted(r["tokens"] for r in record.values())
    assert "60/60" in err and "59/60" not in err  # the primer's tokens are counted, all of them


def test_the_progress_of_sampling_and_of_nll_ends_at_its_total(run):
    from tgan.gan.mle import evaluate_nll
    from tgan.sampling import generate_tokens

    class Count:
        n = 0

        def update(self, k):
            self.n += k

    model = tgan.load(run, "cpu").model
    bar = Count()
    generate_tokens(model, 2, 30, primer=torch.tensor([5, 6, 7, 8]), progress=bar)
    assert bar.n == 30
    bar = Count()
    evaluate_nll(model, [torch.arange(2, 40)] * 5, 8, 8, batch_size=2, progress=bar)
    assert bar.n == 5


def test_dry_run_checks_what_a_run_would(tmp_path, capsys):
    for flags, needle in ((["--data", str(tmp_path / "nowhere")], "does not exist"),
                          (["--freeze-layers", "5"], "--freeze-layers: must be <= D's 2 layers")):
        with pytest.raises(SystemExit) as e:
            train_main(["--dry-run", "--preset", "tiny", *flags])
        assert e.value.code == 2 and needle in capsys.readouterr().err
    folder = tmp_path / "midi"
    folder.mkdir()
    write_midi([Note(60, 80, 0.0, 0.5)], folder / "a.mid")
    assert train_main(["--dry-run", "--preset", "tiny", "--data", str(folder)]) == 0
    printed = capsys.readouterr().out
    cfg = json.loads(printed[printed.index("{"):])
    assert cfg["device"] in ("cpu", "cuda") and cfg["run_dir"].startswith("runs/") and str(folder) in cfg["data"]


def test_ca_along_the_piece_is_merged_until_each_point_has_enough_blocks():
    points = [{"start": i * 128, "end": i * 128 + 127, "accuracy": a, "blocks": b}
              for i, (a, b) in enumerate([(1.0, 1), (0.5, 10), (0.6, 15), (0.9, 30), (0.0, 2)])]
    merged = merge_positions(points, 20)
    assert [(p["start"], p["end"], p["blocks"]) for p in merged] == [(0, 383, 26), (384, 639, 32)]
    assert merged[0]["accuracy"] == pytest.approx((1 + 5 + 9) / 26)
    assert all(p["low"] <= p["accuracy"] <= p["high"] for p in merged)


def test_dir_lists_the_public_api_and_the_distribution_name_is_not_taken():
    assert {"load", "Generator", "Sample", "evaluate_samples", "read_midi"} <= set(dir(tgan))
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert project["name"] != "tgan"  # "tgan" on the package index is an unrelated project
    assert project["license"]["text"] == "Apache-2.0"
    assert "Apache License" in (ROOT / "LICENSE").read_text() and "Version 2.0" in (ROOT / "LICENSE").read_text()
