"""Data-set resolution, preparation, the cache and bad input, on small folders built here."""
import logging
import os
import shutil

import numpy as np
import pytest

from tgan.data import DataError, PreparedData, Vocab, encode, prepare, read_midi, resolve_source
from tgan.data.cache import CACHE_ENV, default_cache_dir
from tgan.data.sources import hash_split

CSV_HEADER = "canonical_composer,canonical_title,split,year,midi_filename,audio_filename,duration"


def make_maestro(root, song_folder, splits=("train", "train", "validation", "test")):
    """A MAESTRO-style folder: 2018/<files> plus maestro-v2.0.0.csv."""
    (root / "2018").mkdir(parents=True)
    lines = [CSV_HEADER]
    for i, split in enumerate(splits):
        shutil.copy(song_folder / f"song{i}.mid", root / "2018" / f"s{i}.midi")
        lines.append(f"Comp{i},Title {i},{split},2018,2018/s{i}.midi,2018/s{i}.wav,")
    (root / "maestro-v2.0.0.csv").write_text("\n".join(lines) + "\n")
    return root


def test_hash_split_is_stable_and_near_90_5_5():
    assert hash_split("a/b.mid") == hash_split("a/b.mid")
    counts = {"train": 0, "validation": 0, "test": 0}
    for i in range(4000):
        counts[hash_split(f"dir/piece{i}.mid")] += 1
    assert 0.88 < counts["train"] / 4000 < 0.92
    assert 0.035 < counts["validation"] / 4000 < 0.065 and 0.035 < counts["test"] / 4000 < 0.065


def test_resolve_midi_folder(song_folder):
    src = resolve_source(song_folder)
    assert src.kind == "midi"
    assert [it.key for it in src.items] == ["song0.mid", "song1.mid", "song2.mid", "song3.mid",
                                            "sub/piece0.MIDI", "sub/piece1.MIDI"]
    assert all(it.split == hash_split(it.key) for it in src.items)


def test_resolve_maestro_and_its_csv(tmp_path, song_folder):
    root = make_maestro(tmp_path / "m", song_folder)
    for data in (root, root / "maestro-v2.0.0.csv"):
        src = resolve_source(data)
        assert src.kind == "maestro"
        assert [(it.key, it.split, it.composer, it.title) for it in src.items][:3] == [
            ("2018/s0.midi", "train", "Comp0", "Title 0"),
            ("2018/s1.midi", "train", "Comp1", "Title 1"),
            ("2018/s2.midi", "validation", "Comp2", "Title 2")]


def test_resolve_errors(tmp_path, song_folder):
    with pytest.raises(DataError, match="nowhere.*does not exist"):
        resolve_source(tmp_path / "nowhere")
    (tmp_path / "f.txt").write_text("x")
    with pytest.raises(DataError, match="f.txt is a file"):
        resolve_source(tmp_path / "f.txt")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no MIDI files"):
        resolve_source(tmp_path / "empty")
    root = make_maestro(tmp_path / "m", song_folder)
    (root / "maestro-v2.0.0.csv").write_text("canonical_title,year,midi_filename\nx,1,a.midi\n")
    with pytest.raises(DataError, match=r"lacks the column\(s\) split"):
        resolve_source(root)
    (root / "maestro-v2.0.0.csv").write_text("title,year\nx,1\n")
    with pytest.raises(DataError, match=r"midi_filename, split"):
        resolve_source(root)
    (root / "maestro-v2.0.0.csv").write_text("split,midi_filename\ndev,2018/s0.midi\n")
    with pytest.raises(DataError, match="line 2: split must be one of.*'dev'"):
        resolve_source(root)
    assert issubclass(DataError, ValueError)


def test_unrelated_csv_keeps_a_midi_folder(song_folder):
    (song_folder / "notes.csv").write_text("a,b\n1,2\n")
    assert resolve_source(song_folder).kind == "midi"


def test_prepare_midi_folder_and_cache_hit(tmp_path, song_folder):
    data = prepare(song_folder, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert not data.from_cache and data.vocab == Vocab.maestro()
    files = [f for s in ("train", "validation", "test") for f in data.files[s]]
    assert sorted(f.key for f in files) == [it.key for it in resolve_source(song_folder).items]
    for split, infos in data.files.items():
        for i, f in enumerate(infos):
            assert f.split == split == hash_split(f.key)
            want = encode(read_midi(f.path), Vocab.maestro())
            assert np.array_equal(data.file_tokens(split, i), want)
            assert f.n_tokens == len(want) and f.n_notes in (3, 4) and f.duration > 0
    assert data.skipped == []
    again = prepare(song_folder, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert again.from_cache and again.path == data.path
    loaded = PreparedData.load(data.path)
    assert loaded.num_tokens("train") == data.num_tokens("train")
    assert "train" in data.summary() and "skipped: 0" in data.summary()
    with pytest.raises(ValueError, match="split must be one of.*'dev'"):
        data.tokens("dev")
    with pytest.raises(IndexError, match="file index"):
        data.file_tokens("train", 99)


def test_cache_rebuilds_on_option_or_content_change(tmp_path, song_folder):
    kw = dict(cache_dir=tmp_path / "c", workers=1, progress=False)
    base = prepare(song_folder, **kw)
    assert prepare(song_folder, **kw).from_cache
    full = prepare(song_folder, vocab_name="full", **kw)
    assert not full.from_cache and full.path != base.path and full.vocab == Vocab.full()
    nosus = prepare(song_folder, sustain=False, **kw)
    assert not nosus.from_cache and nosus.path != base.path
    # Change one file's bytes (same name): rebuild, and the new tokens are there.
    target = song_folder / "song0.mid"
    shutil.copy(song_folder / "song3.mid", target)
    changed = prepare(song_folder, **kw)
    assert not changed.from_cache and changed.path != base.path
    info = [f for s in changed.files.values() for f in s if f.key == "song0.mid"][0]
    assert info.min_pitch == 63
    assert prepare(song_folder, **kw).from_cache
    assert not prepare(song_folder, rebuild=True, **kw).from_cache


def test_cache_dir_env(tmp_path, monkeypatch, song_folder):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "envcache"))
    assert default_cache_dir() == tmp_path / "envcache"
    data = prepare(song_folder, workers=1, progress=False, limit=2)
    assert data.path.parent == tmp_path / "envcache"
    assert not [p for p in os.listdir(tmp_path / "envcache") if p.startswith(".tmp")]
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "tgan"


def test_bad_files_are_skipped_with_a_reason(tmp_path, song_folder, midi_tools, caplog):
    (song_folder / "empty.mid").write_bytes(b"")
    (song_folder / "text.mid").write_text("not midi\n" * 10)
    good = (song_folder / "song1.mid").read_bytes()
    (song_folder / "trunc.mid").write_bytes(good[:-7])
    t = midi_tools
    t.make_midi(song_folder / "drums.mid", [[t.on(36, ch=9), t.off(36, 480, ch=9)]], 0)
    t.make_midi(song_folder / "meta.mid", [[t.tempo(90)]], 0)
    t.make_midi(song_folder / "low.mid", [[t.on(10), t.off(10, 480)]], 0)
    with caplog.at_level(logging.WARNING, logger="tgan.data"):
        data = prepare(song_folder, cache_dir=tmp_path / "c", workers=1, progress=False)
    reasons = {os.path.basename(d["path"]): d["reason"] for d in data.skipped}
    assert set(reasons) == {"empty.mid", "text.mid", "trunc.mid", "drums.mid", "meta.mid",
                            "low.mid"}
    assert reasons["empty.mid"] == "empty file"
    assert "not a MIDI file" in reasons["text.mid"] and "truncated" in reasons["trunc.mid"]
    assert "no notes" in reasons["drums.mid"] and "no notes" in reasons["meta.mid"]
    assert "21..108" in reasons["low.mid"]
    assert sum(len(v) for v in data.files.values()) == 6
    for name in reasons:
        assert any(name in r.getMessage() and r.levelno == logging.WARNING
                   for r in caplog.records)
    assert "skipped: 6 file(s)" in data.summary()
    # The skip list survives a cache hit.
    assert len(prepare(song_folder, cache_dir=tmp_path / "c", workers=1,
                       progress=False).skipped) == 6


def test_missing_maestro_file_is_skipped(tmp_path, song_folder):
    root = make_maestro(tmp_path / "m", song_folder)
    os.remove(root / "2018" / "s1.midi")
    data = prepare(root, cache_dir=tmp_path / "c", workers=1, progress=False)
    assert [d["reason"] for d in data.skipped] == ["listed in maestro-v2.0.0.csv but missing"]
    assert [f.key for f in data.files["train"]] == ["2018/s0.midi"]
    assert data.files["train"][0].composer == "Comp0"
    assert data.files["train"][0].title == "Title 0"


def test_no_tokens_is_an_error(tmp_path):
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "a.mid").write_bytes(b"")
    (tmp_path / "bad" / "b.mid").write_text("nope")
    with pytest.raises(DataError, match="yields no tokens.*2 file"):
        prepare(tmp_path / "bad", cache_dir=tmp_path / "c", workers=1, progress=False)


def test_prepare_argument_errors(tmp_path, song_folder):
    with pytest.raises(ValueError, match="'maestro' or 'full'"):
        prepare(song_folder, vocab_name="tiny", cache_dir=tmp_path)
    with pytest.raises(ValueError, match="limit must be"):
        prepare(song_folder, limit=0, cache_dir=tmp_path)
    with pytest.raises(ValueError, match="workers must be"):
        prepare(song_folder, workers=0, cache_dir=tmp_path)


def test_prepare_in_a_process_pool_matches_in_process(tmp_path, song_folder):
    one = prepare(song_folder, cache_dir=tmp_path / "a", workers=1, progress=False)
    two = prepare(song_folder, cache_dir=tmp_path / "b", workers=2, progress=False)
    assert one.path.name == two.path.name
    for s in ("train", "validation", "test"):
        assert np.array_equal(one.tokens(s), two.tokens(s))
