"""The bundled corpus (music21's Bach scores): listing, rendering, preparing a few."""
import sys

import pytest

from tgan.data import DataError, prepare, resolve_source
from tgan.data.__main__ import main


def test_missing_music21_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "music21", None)  # makes `import music21` fail
    for data in (None, "bach", "default"):
        with pytest.raises(DataError, match=r'pip install -e "\.\[corpus\]"'):
            resolve_source(data)
    assert main(["prepare", "--cache-dir", str(tmp_path)]) == 2
    assert "pip install music21" in capsys.readouterr().err


def test_corpus_listing():
    pytest.importorskip("music21")
    from tgan.data.corpus import corpus_files

    files = corpus_files()
    assert len(files) > 400
    assert len({f.stem for f in files}) == len(files)
    assert not [f for f in files if f.suffix == ".rntxt"]
    src = resolve_source(None)
    assert src.kind == "corpus" and len(src.items) == len(files)
    assert src.items[0].key.startswith("bach/") and src.items[0].kind == "score"
    assert "music21" in src.fingerprint
    splits = [it.split for it in src.items]
    assert splits.count("train") > 0.85 * len(splits) and splits.count("test") > 5


def test_render_three_scores():
    pytest.importorskip("music21")
    from tgan.data.corpus import CORPUS_VELOCITY, corpus_files, render_score

    by_stem = {f.stem: f for f in corpus_files()}
    perf, meta = render_score(by_stem["bwv1.6"])           # has a metronome mark: quarter = 76
    assert perf.tempos == [(0.0, 789474)]
    assert {n.track for n in perf.notes} == set(range(5))    # horn + SATB
    assert {n.velocity for n in perf.notes} == {CORPUS_VELOCITY}
    assert meta["composer"] and meta["title"]
    starts = [(n.start, n.track) for n in perf.notes]
    assert starts == sorted(starts)
    # The first beat: every part starts together; a quarter at 76 bpm lasts 60/76 s.
    first = [n for n in perf.notes if n.start == 0.0]
    assert len(first) == 5 and first[1].end == pytest.approx(60 / 76)
    perf, _ = render_score(by_stem["bwv10.7"])             # no mark: quarter = 100 bpm
    assert perf.tempos == [(0.0, 600000)]
    durations = {round(n.end - n.start, 6) for n in perf.notes}
    assert 0.6 in durations                                  # quarter notes
    perf, _ = render_score(by_stem["bwv846"])              # several tempo marks
    assert len(perf.tempos) > 1 and perf.duration > 60


def test_prepare_a_few_scores(tmp_path):
    pytest.importorskip("music21")
    data = prepare("bach", cache_dir=tmp_path, workers=1, progress=False, limit=3)
    files = [f for s in data.files.values() for f in s]
    assert len(files) == 3 and not data.skipped
    assert all(f.key.startswith("bach/") and f.n_tokens > 100 for f in files)
    assert "limit 3" in data.summary()
    # sustain means nothing for scores: both settings share one cache.
    again = prepare(None, cache_dir=tmp_path, workers=1, progress=False, limit=3, sustain=False)
    assert again.from_cache and again.path == data.path
