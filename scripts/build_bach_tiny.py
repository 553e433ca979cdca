"""Build the bundled model ``tgan/models/bach-tiny`` (what ``tgan.load("bach-tiny")`` loads), or
check that a rebuild gives the shipped one.

    python scripts/build_bach_tiny.py            # train, train its critic, export into the package
    python scripts/build_bach_tiny.py --check    # rebuild in a temporary folder and compare

Deterministic: fixed seeds, ``--deterministic`` kernels, one thread. The same machine, torch
version and thread count give the same weights; ``--check`` compares the generator's and the
critic's fingerprints (hashes of their weights) with the shipped folder's.

Recipe (tiny preset, bundled public-domain Bach corpus, about 10 min on 2 CPU cores):
  1. ``python -m tgan.train --loss mle`` for 3000 MLE steps (seed 0);
  2. ``python -m tgan.critic`` against it (600 steps, its BERT pre-trained on the spot);
  3. ``python -m tgan.export --with-critic`` into ``tgan/models/bach-tiny``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "tgan" / "models" / "bach-tiny"
TRAIN = ["--loss", "mle", "--preset", "tiny", "--seed", "0", "--mle-steps", "3000", "--deterministic",
         "--sample-count", "0", "--device", "cpu"]
CRITIC = ["--seed", "0", "--device", "cpu", "--no-progress"]


def run(*argv: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    print("+ python -m", " ".join(argv), flush=True)
    subprocess.run([sys.executable, "-m", *argv], check=True, env=env, cwd=ROOT)


def build(out: Path, work: Path) -> Path:
    run("tgan.train", *TRAIN, "--run-dir", str(work / "run"))
    run("tgan.critic", "--generator", str(work / "run"), "--out", str(work / "critic"), *CRITIC)
    run("tgan.export", str(work / "run"), "--out", str(out), "--with-critic", str(work / "critic"), "--overwrite",
        "--name", "bach-tiny")
    return out


def fingerprints(folder: Path) -> dict:
    from safetensors.torch import load_file

    from tgan.critic.model import state_fingerprint

    return {"generator": state_fingerprint(load_file(str(folder / "model.safetensors"))),
            "critic": state_fingerprint(load_file(str(folder / "critic.safetensors")))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true",
                   help="rebuild in a temporary folder and compare with the shipped one")
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if not args.check:
            build(TARGET, tmp)
            size = sum(f.stat().st_size for f in TARGET.iterdir())
            print(f"wrote {TARGET} ({size / 1e6:.2f} MB): {json.dumps(fingerprints(TARGET))}")
            return 0
        rebuilt = fingerprints(build(tmp / "bach-tiny", tmp))
        shipped = fingerprints(TARGET)
        same = rebuilt == shipped
        print(f"shipped {shipped}\nrebuilt {rebuilt}\n{'identical' if same else 'DIFFERENT'}")
        return 0 if same else 1


if __name__ == "__main__":
    sys.exit(main())
