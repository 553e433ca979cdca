"""python -m tgan.data prepare / cache: on a tiny folder, on maestro-mini, and its error exits."""
import csv
import subprocess
import sys

import pytest

from tgan.data.__main__ import main


def test_prepare_tiny_folder(tmp_path, song_folder, capsys):
    argv = ["prepare", "--data", str(song_folder), "--cache-dir", str(tmp_path / "c"),
            "--workers", "1", "--quiet"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "data: midi" in out and "built in" in out and "throughput:" in out
    assert "vocab: maestro (311 ids), sustain on" in out
    assert main(argv + ["--vocab", "full", "--no-sustain"]) == 0
    assert "vocab: full (391 ids), sustain off" in capsys.readouterr().out
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "read from cache" in out and "throughput" not in out


def test_cache_lists_and_prunes_unused_folders(tmp_path, song_folder, capsys):
    import os
    import time

    cache = tmp_path / "c"
    base = ["prepare", "--data", str(song_folder), "--cache-dir", str(cache), "--workers", "1", "--quiet"]
    assert main(base) == 0 and main(base + ["--vocab", "full"]) == 0
    maestro, full = sorted(cache.iterdir(), key=lambda p: "full" in (p / "index.json").read_text())
    broken = cache / ".tmp-midi-x-123"  # an interrupted build
    broken.mkdir()
    (broken / "train.npy").write_bytes(b"\0" * 10)
    day = 86400
    os.utime(maestro / "index.json", (time.time() - 10 * day,) * 2)
    os.utime(full / "index.json", (time.time() - 10 * day,) * 2)
    os.utime(broken, (time.time() - 2 * 3600,) * 2)
    assert main(base) == 0  # a cache hit marks the maestro folder as used now
    capsys.readouterr()

    assert main(["cache", "--cache-dir", str(cache)]) == 0
    out = capsys.readouterr().out
    assert "3 folder(s)" in out and "[incomplete]" in out and out.count("midi") >= 2
    assert main(["cache", "--cache-dir", str(cache), "--prune-days", "7", "--dry-run"]) == 0
    assert "would remove 2 folder(s)" in capsys.readouterr().out and full.exists()
    assert main(["cache", "--cache-dir", str(cache), "--prune-days", "7"]) == 0
    assert "removed 2 folder(s)" in capsys.readouterr().out
    assert sorted(p.name for p in cache.iterdir()) == [maestro.name]
    assert main(["cache", "--cache-dir", str(cache), "--prune-days", "-1"]) == 2


def test_errors_exit_2_without_traceback(tmp_path, capsys):
    assert main(["prepare", "--data", str(tmp_path / "nope"), "--cache-dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: data path") and "does not exist" in err
    with pytest.raises(SystemExit) as e:
        main(["prepare", "--vocab", "tiny"])
    assert e.value.code == 2
    assert "invalid choice: 'tiny'" in capsys.readouterr().err
    proc = subprocess.run([sys.executable, "-m", "tgan.data", "prepare", "--data",
                           str(tmp_path / "nope"), "--cache-dir", str(tmp_path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert "error: data path" in proc.stderr and "Traceback" not in proc.stderr


def test_prepare_maestro_mini(maestro_mini, tmp_path, capsys):
    with open(next(maestro_mini.glob("*.csv")), newline="") as f:
        rows = list(csv.DictReader(f))
    want = {s: sum(r["split"] == s for r in rows) for s in ("train", "validation", "test")}
    assert main(["prepare", "--data", str(maestro_mini), "--cache-dir", str(tmp_path),
                 "--workers", "2", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert f"data: maestro {maestro_mini} ({len(rows)} files)" in out
    for split, n in want.items():
        line = [ln for ln in out.splitlines() if ln.startswith(split)][0]
        assert int(line.split()[1]) == n and int(line.split()[2].replace(",", "")) > 0
    assert "skipped: 0 file(s)" in out

    from tgan.data.datasets import PreparedData

    data = PreparedData.load(next(tmp_path.iterdir()))
    titles = {f.key: (f.composer, f.title) for s in data.files.values() for f in s}
    assert titles == {r["midi_filename"]: (r["canonical_composer"], r["canonical_title"])
                      for r in rows}
    assert 4.0 < sum(data.hours(s) for s in want) < 6.0
