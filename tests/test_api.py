"""tgan.load / Generator.generate / Sample, python -m tgan.export model folders, and the generate
command line over them."""
import json
import re
from pathlib import Path

import mido
import numpy as np
import pytest

import tgan
from tgan.data.midi import read_midi, write_midi
from tgan.data.vocab import Vocab
from tgan.export import export, main as export_main
from tgan.generate import main as generate_main

README = Path(__file__).resolve().parents[1] / "README.md"
VOCAB = Vocab.maestro()





def test_readme_example_runs_as_shown(run, tmp_path, monkeypatch, primer_file):
    text = README.read_text()
    block = re.search(r"## Python API.*?```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "ppo_gp").symlink_to(run)
    primer_file(tmp_path / "primer.mid")
    exec(compile(block, "README.md", "exec"), {})
    written = sorted(tmp_path.glob("continuation_*.mid"))
    assert len(written) == 2
    notes = read_midi(written[0]).notes
    assert [n.pitch for n in notes[:8]] == [60 + i for i in range(8)]  # the primer's first 2 s


def test_export_load_generate_round_trip_gives_the_run_s_tokens(run, tmp_path):
    folder = export(run, tmp_path / "model", with_discriminator=True)
    names = sorted(p.name for p in folder.iterdir())
    assert names == ["README.md", "config.json", "discriminator.safetensors", "model.safetensors"]
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["format"] == 1 and cfg["vocab"] == "maestro" and cfg["training"]["step"] == 7
    assert cfg["training"]["validation_nll"] == 3.25
    a = tgan.load(run, "cpu").generate(num=2, length=60, seed=3, top_k=0)
    b = tgan.load(folder, "cpu").generate(num=2, length=60, seed=3, top_k=0)
    c = tgan.load(folder, "cpu").generate(num=2, length=60, seed=4, top_k=0)
    assert all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, b))
    assert not all(np.array_equal(x.tokens, y.tokens) for x, y in zip(a, c))


def test_samples_carry_tokens_notes_midi_and_how_they_were_made(run, tmp_path, primer_file):
    model = tgan.load(run, "cpu")
    midi = mido.MidiFile(primer_file(tmp_path / "p.mid"))
    s, = model.generate(length=100, primer=midi, primer_seconds=2.0, seed=1)
    assert len(s.tokens) == 100 and 0 < s.primer_length < 100
    assert abs(s.primer_seconds - 2.0) < 0.3
    assert isinstance(s.to_midi(), mido.MidiFile) and s.notes[0].pitch == 60
    info = s.info()
    assert info["seed"] == 1 and info["primer_tokens"] == s.primer_length
    assert info["repaired_events"] == s.repaired >= 0
    ids, = model.generate(length=30, primer=s.tokens[:10].tolist(), seed=1)
    assert np.array_equal(ids.tokens[:10], s.tokens[:10])


@pytest.mark.parametrize("call,needle", [
    (lambda m, t: m.generate(num=0), "num must be a positive int"),
    (lambda m, t: m.generate(length=5, primer=list(range(10, 20))), "length (5) must exceed"),
    (lambda m, t: m.generate(context=-3), "context must be a positive int"),
    (lambda m, t: m.generate(seconds=-5), "seconds must be > 0"),
    (lambda m, t: m.generate(top_p=0), "top_p"),
    (lambda m, t: m.generate(primer=t / "none.mid"), "no such MIDI file"),
    (lambda m, t: m.generate(primer=[1, 2, 999]), "token ids must be in"),
    (lambda m, t: m.generate(primer=t / "empty.mid"), "yields no tokens"),
])
def test_bad_arguments_are_value_errors_naming_them(run, tmp_path, call, needle):
    write_midi([], tmp_path / "empty.mid")
    with pytest.raises(ValueError, match=re.escape(needle)):
        call(tgan.load(run, "cpu"), tmp_path)


def test_load_refuses_what_it_cannot_read(run, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        tgan.load(tmp_path / "nowhere")
    folder = export(run, tmp_path / "model")
    cfg = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps(dict(cfg, format=2, tgan_version="9.0")))
    with pytest.raises(ValueError, match="format 2, written by tgan 9.0.*upgrade tgan"):
        tgan.load(folder)
    (folder / "config.json").write_text(json.dumps(dict(cfg, vocab="full")))
    with pytest.raises(ValueError, match="predicts 310 ids but the full vocabulary has 390"):
        tgan.load(folder)
    (folder / "config.json").write_text(json.dumps(cfg))
    (folder / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="has no model.safetensors"):
        tgan.load(folder)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no complete checkpoint"):
        tgan.load(empty)


def test_model_card_states_the_data_license(tmp_path, capsys, make_run):
    maestro = tmp_path / "maestro-v3.0.0"
    maestro.mkdir()
    (maestro / "maestro-v3.0.0.csv").write_text("canonical_composer,split,midi_filename\n")
    run = make_run(tmp_path, data=str(maestro))
    assert export_main([str(run), "--out", str(tmp_path / "m")]) == 0
    card = (tmp_path / "m" / "README.md").read_text()
    assert "license: cc-by-nc-sa-4.0" in card and "non-commercially" in card
    assert "3.2500 nats/token" in card
    assert export_main([str(run), "--out", str(tmp_path / "m")]) == 2
    assert "not empty" in capsys.readouterr().err
    bach = export(make_run(tmp_path / "b"), tmp_path / "mb")
    assert "music21" in (bach / "README.md").read_text()


def test_generate_cli_reads_model_folders_records_and_never_overwrites(run, tmp_path, capsys, primer_file):
    folder = export(run, tmp_path / "model")
    out = tmp_path / "out"
    args = ["--checkpoint", str(folder), "--out", str(out), "--num", "2", "--length", "60",
            "--device", "cpu", "--primer", str(primer_file(tmp_path / "p.mid"))]
    assert generate_main(args) == 0
    record = json.loads((out / "samples.json").read_text())
    assert sorted(record) == ["sample_0_000.mid", "sample_0_001.mid"]
    entry = record["sample_0_000.mid"]
    assert entry["source"] == str(folder) and entry["seed"] == 0 and entry["primer_tokens"] == 50
    assert entry["primer"].endswith("p.mid") and "repaired_events" in entry
    before = (out / "sample_0_000.mid").read_bytes()
    assert generate_main(args) == 2
    assert "from an earlier run" in capsys.readouterr().err
    assert (out / "sample_0_000.mid").read_bytes() == before
    assert generate_main(args + ["--seed", "1"]) == 0
    assert len(json.loads((out / "samples.json").read_text())) == 4


@pytest.mark.parametrize("extra,needle", [
    (["--primer-split", "dev"], "invalid choice: 'dev'"),
    (["--context", "-3"], "--context must be > 0"),
    (["--context", "0"], "--context must be > 0"),
    (["--seconds", "-5"], "--seconds must be > 0"),
])
def test_generate_cli_rejects_bad_flags(run, tmp_path, capsys, extra, needle):
    with pytest.raises(SystemExit) as e:
        generate_main(["--checkpoint", str(run), "--out", str(tmp_path / "o")] + extra)
    assert e.value.code == 2 and needle in capsys.readouterr().err


def test_generate_cli_names_a_bad_backend(run, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("TGAN_BACKEND", "foo")
    assert generate_main(["--checkpoint", str(run), "--out", str(tmp_path / "o")]) == 2
    assert "TGAN_BACKEND must be one of" in capsys.readouterr().err


def test_export_takes_the_table1_row_of_its_checkpoint(run, tmp_path, capsys):
    ck = next((run / "checkpoints").iterdir())
    ev = tmp_path / "eval.json"
    ev.write_text(json.dumps({
        "data": {"name": "bach"}, "scorer": {"path": "scorers/bach", "data": "bach", "mlm_accuracy": 0.19},
        "samples": [{"name": "other", "checkpoint": str(tmp_path / "x"), "CA": {"mean": 0.9}},
                    {"name": "mine", "checkpoint": str(ck), "CA": {"mean": 0.8}, "NLL": {"value": 1.2}}]}))
    assert export_main([str(run), "--out", str(tmp_path / "m"), "--table1", str(ev)]) == 0
    row = json.loads((tmp_path / "m" / "config.json").read_text())["table1_row"]
    assert row["name"] == "mine" and row["CA"] == {"mean": 0.8} and row["scorer"]["mlm_accuracy"] == 0.19
    assert "| 1.200 | 0.800 | n/a |" in (tmp_path / "m" / "README.md").read_text()
    ev.write_text(json.dumps({"samples": [{"name": "a", "checkpoint": "p"}, {"name": "b", "checkpoint": "q"}]}))
    assert export_main([str(run), "--out", str(tmp_path / "n"), "--table1", str(ev)]) == 2
    assert "no single row" in capsys.readouterr().err


def test_evaluation_reads_a_generated_folder_without_counting_its_record(run, tmp_path, primer_file):
    from tgan.metrics.evaluation import read_sample_folder

    out = tmp_path / "out"
    assert generate_main(["--checkpoint", str(run), "--out", str(out), "--num", "2", "--length", "60",
                          "--device", "cpu", "--primer", str(primer_file(tmp_path / "p.mid"))]) == 0
    assert (out / "samples.json").is_file()
    folder = read_sample_folder(out)
    assert len(folder.files) == 2 and folder.skipped == []
