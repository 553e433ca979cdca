"""The bundled model: music straight after install, with no training."""
import json
import subprocess
import sys
import time
from pathlib import Path

import mido

import tgan
from tgan.api import BUNDLED, bundled_models

ROOT = Path(__file__).resolve().parents[1]


def test_bach_tiny_ships_small_with_its_critic_and_its_build_script():
    folder = BUNDLED / "bach-tiny"
    assert "bach-tiny" in bundled_models()
    size = sum(f.stat().st_size for f in folder.iterdir())
    assert size < 5_000_000, f"{size} bytes"
    cfg = json.loads((folder / "config.json").read_text())
    assert cfg["training"]["data_kind"] == "bach" and cfg["critic"]["generator"]["fingerprint"]
    assert (ROOT / "scripts" / "build_bach_tiny.py").is_file()
    assert "tgan.load('bach-tiny')" in (folder / "README.md").read_text()


def test_music_in_one_minute_from_the_bundled_model(tmp_path):
    t0 = time.perf_counter()
    # seed 3's piece runs past 10 s; some seeds' pieces end earlier with EOS (a shorter sample)
    code = ("import tgan; s = tgan.load('bach-tiny').generate(num=1, seconds=10, seed=3)[0]; s.save('x.mid'); "
            "print(s.seconds)")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True)
    assert time.perf_counter() - t0 < 60
    midi = mido.MidiFile(tmp_path / "x.mid")
    assert sum(m.type == "note_on" and m.velocity > 0 for t in midi.tracks for m in t) > 10
    assert 9.0 <= float(out.stdout) and midi.length <= float(out.stdout) + 0.01
    # the same through the command line, and with selection by the bundled critic
    from tgan.generate import main

    assert main(["--model", "bach-tiny", "--seconds", "5", "--out", str(tmp_path / "g"), "--num", "2",
                 "--candidates", "4", "--device", "cpu"]) == 0
    record = json.loads((tmp_path / "g" / "samples.json").read_text())
    assert all(r["selection"]["candidates"] == 4 for r in record.values())
    assert tgan.load("bach-tiny", "cpu").critic is not None
