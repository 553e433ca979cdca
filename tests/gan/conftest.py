import random
import signal
import time

import pytest

from tgan.data.midi import write_midi
from tgan.data.notes import Note

# Flags that shrink every stage of the tiny preset to seconds on a CPU.
FAST = ["--preset", "tiny", "--batch-size", "2", "--mle-steps", "4", "--disc-steps", "2", "--gan-steps", "4",
        "--gan-start", "0", "--gan-every", "2", "--rollout-len", "16", "--segment-len", "8", "--prefix-len", "3",
        "--eval-len", "64", "--eval-chunks", "2", "--eval-every", "0", "--sample-count", "1", "--sample-len", "24",
        "--checkpoint-every", "2", "--log-every", "1", "--d-warmup-steps", "0", "--d-steps", "1",
        "--d-eval-batch", "4"]


def _piece(rng, n=120):
    t, notes = 0.0, []
    for _ in range(n):
        p = rng.randint(48, 84)
        d = rng.choice([0.12, 0.25, 0.5])
        notes.append(Note(p, rng.randint(40, 110), t, t + d))
        if rng.random() < 0.5:
            notes.append(Note(p - 12, rng.randint(40, 110), t, t + d))
        t += rng.choice([0.06, 0.12, 0.25])
    return notes


def kill_when_written(proc, path, timeout: float = 300):
    """SIGKILL ``proc`` as soon as ``path`` exists (a checkpoint it writes); fails the test when the
    process ended before it could be killed."""
    deadline = time.time() + timeout
    while not path.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the run ended before it could be killed"


@pytest.fixture(scope="session")
def midi_folder(tmp_path_factory):
    """A small data set: 14 generated piano pieces in a folder (hash split 90/5/5)."""
    root = tmp_path_factory.mktemp("midi_data")
    rng = random.Random(0)
    for i in range(14):
        write_midi(_piece(rng), root / f"piece_{i:02d}.mid")
    return root


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("TGAN_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "tgan_cache"))
