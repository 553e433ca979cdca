"""Evaluation building blocks: reading sets, clipping, per-piece averaging, table and JSON."""
import json
import math
import re

import numpy as np
import pytest
import torch

from tgan.data import DataError, Note, Performance, Vocab, decode, encode, write_midi
from tgan.data.sources import midi_folder_source
from tgan.metrics import note_statistics
from tgan.metrics.evaluation import (clip_piece, difference, pll_blocks, read_data_split,
                                     read_sample_folder, score_ca, score_pll, set_statistics)
from tgan.metrics.report import (COLUMNS, format_ca, format_value, jsonable, markdown_report,
                                 markdown_table, table_rows, write_json)
from tgan.model import BertConfig, BertDiscriminator


def perf(pitches, step=0.5, dur=0.4):
    return Performance([Note(p, 80, i * step, i * step + dur) for i, p in enumerate(pitches)])


# -- per-piece averaging and clipping -------------------------------------------------------------
def test_statistics_are_averaged_per_piece_and_empty_pieces_left_out():
    pieces = [perf([60, 62, 64]), perf([60, 72]), Performance([])]
    out = set_statistics(pieces, ["correct", "paper"])
    c = out["correct"]
    # PCU: 3 and 1 pitch classes (60 and 72 share C); the empty piece is NaN and not counted.
    assert c["mean"]["PCU"] == 2.0 and c["std"]["PCU"] == 1.0 and c["n"]["PCU"] == 2
    assert c["mean"]["NPU"] == 2.5
    assert out["empty"] == 1
    # The average of per-piece values, not the statistic of all notes pooled (that would be 3).
    per = [note_statistics(p)["PCU"] for p in pieces[:2]]
    assert c["mean"]["PCU"] == np.mean(per)
    assert set(out["paper"]["mean"]) == set(c["mean"])


def test_clip_seconds_keeps_the_first_seconds():
    p = perf([60, 62, 64, 65], step=1.0, dur=0.8)
    cut = clip_piece(p, seconds=1.5)
    assert [n.pitch for n in cut.notes] == [60, 62]
    assert cut.notes[-1].end == 1.5
    out = set_statistics([p], clip_seconds=1.5)
    assert out["correct"]["mean"]["NPU"] == 2 and out["correct"]["mean"]["IOI"] == 1.0


def test_clip_tokens_encodes_cuts_and_decodes():
    vocab = Vocab.maestro()
    p = perf([60, 62, 64, 65], step=1.0, dur=0.8)
    ids = encode(p, vocab)
    for k in (1, 5, 7, len(ids)):
        expected, _ = decode(ids[:k], vocab, max_note_duration=None)
        assert clip_piece(p, tokens=k, vocab=vocab).notes == expected
    # [VEL, ON 60, SHIFT 80, OFF 60, SHIFT 20, ON 62, ...]: 6 tokens hold two onsets.
    assert [n.pitch for n in clip_piece(p, tokens=6, vocab=vocab).notes] == [60]  # 62 has 0 length
    assert set_statistics([p], clip_tokens=9, vocab=vocab)["correct"]["mean"]["NPU"] == 2
    with pytest.raises(ValueError, match="at most one"):
        clip_piece(p, seconds=1.0, tokens=3)
    with pytest.raises(ValueError, match="tokens"):
        clip_piece(p, tokens=0)


def test_difference_and_bad_convention():
    assert difference({"PCU": 5.0, "IOI": math.nan}, {"PCU": 7.0, "IOI": 0.1}) == \
        pytest.approx({"PCU": -2.0, "IOI": math.nan}, nan_ok=True)
    with pytest.raises(ValueError, match="convention"):
        set_statistics([perf([60])], ["pypianoroll"])


# -- reading sample folders and data splits -------------------------------------------------------
def test_sample_folder_skips_and_counts_non_midi(tmp_path, caplog):
    write_midi(perf([60, 64]).notes, tmp_path / "a.mid")
    (tmp_path / "sub").mkdir()
    write_midi(perf([62]).notes, tmp_path / "sub" / "b.MIDI")
    (tmp_path / "notes.txt").write_text("hello")
    (tmp_path / "broken.mid").write_bytes(b"not midi at all")
    s = read_sample_folder(tmp_path)
    assert len(s.pieces) == 2 and s.files[1].endswith("b.MIDI")
    assert sorted(d["path"].rsplit("/", 1)[1] for d in s.skipped) == ["broken.mid", "notes.txt"]
    assert "broken.mid" in caplog.text and "notes.txt" in caplog.text


def test_sample_folder_errors_name_the_folder(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'nope'} does not exist"):
        read_sample_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty"):
        read_sample_folder(tmp_path / "empty")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "x.txt").write_text("x")
    with pytest.raises(DataError, match="no readable MIDI"):
        read_sample_folder(tmp_path / "junk")


def test_data_split_and_max_pieces(tmp_path):
    for i in range(6):
        write_midi(perf([60 + i, 62]).notes, tmp_path / f"p{i}.mid")
    source = midi_folder_source(tmp_path)
    train = [it for it in source.items if it.split == "train"]
    s = read_data_split(source, "train", max_pieces=2)
    assert len(s.pieces) == 2 and s.files == [it.path for it in train[:2]]
    with pytest.raises(ValueError, match="split"):
        read_data_split(source, "dev")


# -- model scores on a tiny BERT ------------------------------------------------------------------
def test_pll_and_ca_on_a_tiny_bert():
    bert = BertDiscriminator(BertConfig(vocab_size=11, n_layer=1, d_model=8, n_head=2, d_inner=16,
                                        max_len=16, dropout=0.0, attn_dropout=0.0))
    rng = np.random.default_rng(0)
    real = [rng.integers(2, 10, 70) for _ in range(3)]
    fake = [rng.integers(2, 10, 40) for _ in range(2)]
    assert pll_blocks(real, piece_len=40, block_len=16).shape == (6, 16)
    pll = score_pll(bert, real, mask_id=10, block_len=16, piece_len=40)
    assert pll["value"] <= 0 and pll["blocks"] == 6
    ca = score_ca(bert, real, fake, block_len=8, seed=0)
    assert 0 <= ca["mean"] <= 1 and (ca["real_blocks"], ca["generated_blocks"]) == (24, 10)
    assert ca["k"] == 2 and "too few blocks" in ca["flag"]  # 2 generated pieces: 2 folds
    none = score_ca(bert, real, [np.arange(2, 9), np.arange(2, 30)], block_len=8)
    assert math.isnan(none["mean"]) and "got 3 real and 1 generated" in none["note"]
    assert "no piece" in score_pll(bert, fake, 10, block_len=64)["note"]


# -- table and JSON -------------------------------------------------------------------------------
def _result():
    mean_d = {"PCU": 12.0, "NPU": 60.0, "EBR": 0.01, "ISR": 0.6, "PRS": 0.5, "TUP": 60.0,
              "PR": 70.0, "APS": 11.5, "IOI": 0.1}
    mean_s = dict(mean_d, PCU=10.5, IOI=math.nan)

    def stats(m):
        return {"correct": {"mean": m, "std": {k: 0.0 for k in m}, "n": {k: 2 for k in m}}}

    return {
        "conventions": ["correct"],
        "data": {"name": "mini", "split": "train", "pieces": 3, "skipped": [], "stats": stats(mean_d),
                 "PLL": {"value": -2.5}},
        "samples": [{"name": "runs/a|b", "pieces": 2, "skipped": [{"path": "x", "reason": "y"}],
                     "stats": stats(mean_s), "diff": {"correct": difference(mean_s, mean_d)},
                     "PLL": {"value": -3.0},
                     "CA": {"mean": 0.75, "low": 0.7, "high": 0.8, "folds": [0.7, 0.8], "blocks": 400},
                     "CA_by_position": [{"start": 0, "end": 127, "accuracy": 0.6, "blocks": 25},
                                        {"start": 128, "end": 255, "accuracy": 0.875, "blocks": 24}]}],
        "model": {"NLL": {"value": 2.3456}},
        "notes": ["a note"],
    }


def test_table_has_the_shape_of_table_1():
    rows = table_rows(_result(), "correct")
    assert rows[0][1:] == list(COLUMNS)
    assert rows[1][:4] == ["data: mini (train, 3 pieces)", "n/a", "n/a", "-2.500"]
    assert rows[1][4] == "12.00"
    assert rows[2][0] == "samples: runs/a\\|b (2 files, 1 skipped)"  # a pipe cannot break the table
    assert rows[2][1:5] == ["2.346", "0.750 [0.70, 0.80]", "-3.000 (-0.500)", "10.50 (-1.50)"]
    assert rows[2][-1] == "n/a"  # IOI is NaN
    table = markdown_table(_result(), "correct")
    lines = table.splitlines()
    assert len(lines) == 4 and all(line.count("|") - line.count("\\|") == 14 for line in lines)
    assert lines[1].startswith("|---") and lines[1].endswith(":|")
    report = markdown_report(_result())
    assert report.startswith(lines[0]) and "- a note" in report
    line = next(x for x in report.splitlines() if x.startswith("CA along the piece, runs/a|b"))
    assert re.search(r": 0-127 0\.60 \[0\.41, 0\.77\] n=25 · 128-255 0\.88 \[0\.69, 0\.96\] n=24$", line), line
    assert "PCU: distinct pitch classes used" in report  # the columns are explained
    with pytest.raises(ValueError, match="convention"):
        table_rows(_result(), "paper")


def test_format_ca_flags_too_few_blocks():
    assert format_ca({"mean": 0.5, "low": 0.0, "high": 1.0, "flag": "too few blocks: 2 real"}) == "0.500 (too few)"
    assert format_ca({"mean": float("nan"), "note": "x"}) == "n/a" and format_ca(None) == "n/a"
    r = _result()
    r["samples"][0]["NLL"] = {"value": 1.5}  # a row's own checkpoint wins over the first one's
    assert table_rows(r, "correct")[2][1] == "1.500"


def test_format_value():
    assert format_value(None, "NLL") == "n/a" and format_value(math.nan, "CA") == "n/a"
    assert format_value(0.1234, "IOI", 0.01) == "0.123 (+0.010)"
    assert format_value(5, "PCU", math.nan) == "5.00"


def test_json_has_no_nan(tmp_path):
    r = _result()
    r["extra"] = (np.float64(math.inf), torch.tensor(1.5))
    path = write_json(r, tmp_path / "sub" / "r.json")
    back = json.loads(path.read_text())
    assert back["samples"][0]["stats"]["correct"]["mean"]["IOI"] is None
    assert back["extra"] == [None, 1.5]
    assert jsonable({1: [math.nan]}) == {"1": [None]}
