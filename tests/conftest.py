"""Shared test setup.

Triton reads TRITON_INTERPRET when a kernel is defined, so one pytest process runs the kernels
either under the interpreter (on the CPU) or compiled (on a GPU), not both:
  - ``pytest`` (the default, CI): TRITON_INTERPRET=1 is set here before triton is imported; the
    kernels run on CPU tensors; ``gpu`` tests are skipped;
  - ``TRITON_INTERPRET=0 pytest -m gpu`` on a CUDA machine: the compiled kernels against the
    references; tests that need the interpreter (fixture ``triton_backend`` on CPU tensors) skip.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")
INTERPRET = os.environ["TRITON_INTERPRET"] == "1"

import pathlib  # noqa: E402
import random  # noqa: E402
import sys  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
# The measuring tool the tests share with the benchmarks (benchmarks/saved_memory.py).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
MAESTRO_MINI = SHARED_DATA / "maestro-mini"


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


def _make_run(root, data: str = "", vocab: str = "maestro", seed: int = 0, name: str = "run") -> pathlib.Path:
    """A run directory holding one checkpoint of a tiny untrained generator and BERT (ppo_gp,
    stage gan, validation NLL 3.25): what tgan.load, export and generate read."""
    from tgan.data.vocab import Vocab
    from tgan.model import BertConfig, BertDiscriminator, GeneratorConfig, TransformerXL
    from tgan.model.checkpoint import save_checkpoint

    torch.manual_seed(seed)
    v = Vocab.by_name(vocab)
    cfg = GeneratorConfig(vocab_size=v.lm_size, n_layer=1, d_model=16, n_head=2, d_head=8, d_inner=32, tgt_len=8,
                          mem_len=8, eval_mem_len=32, init_std=0.3)
    bcfg = BertConfig(vocab_size=v.size, n_layer=1, d_model=16, n_head=2, d_inner=32, max_len=64)
    run = pathlib.Path(root) / name
    save_checkpoint(run, 7, "run", {"gen": TransformerXL(cfg), "disc": BertDiscriminator(bcfg)},
                    configs={"generator": cfg.to_dict(), "bert": bcfg.to_dict(), "vocab": vocab,
                             "train": {"data": data, "loss": "ppo_gp", "preset": "tiny"}},
                    extra={"stage": "gan", "history": {"val_nll": [[0, 5.7], [7, 3.25]]}})
    return run


def _primer_file(path) -> pathlib.Path:
    """A 40-note MIDI file to continue."""
    from tgan.data.midi import write_midi
    from tgan.data.notes import Note

    write_midi([Note(60 + i % 12, 80, 0.25 * i, 0.25 * i + 0.2) for i in range(40)], path)
    return pathlib.Path(path)


@pytest.fixture
def make_run():
    """``make_run(root, data="", vocab="maestro", seed=0, name="run")``: a run directory with a tiny
    untrained generator and BERT."""
    return _make_run


@pytest.fixture
def run(tmp_path):
    """A run directory with a tiny untrained generator and BERT (bundled-corpus run config)."""
    return _make_run(tmp_path)


@pytest.fixture
def primer_file():
    """``primer_file(path)``: writes a 40-note MIDI file there and returns its path."""
    return _primer_file


@pytest.fixture
def maestro_mini():
    """Path to the real MAESTRO excerpt set in ../shared/data, skipping where it is absent."""
    if not (MAESTRO_MINI / "LICENSE.md").exists() and not MAESTRO_MINI.exists():
        pytest.skip(f"real MAESTRO data not found at {MAESTRO_MINI}")
    return MAESTRO_MINI


def pytest_collection_modifyitems(config, items):
    no_cuda = pytest.mark.skip(reason="needs a CUDA device")
    interpreted = pytest.mark.skip(reason="compiled kernels: run `TRITON_INTERPRET=0 pytest -m gpu` on a CUDA machine")
    needs_interpreter = pytest.mark.skip(reason="runs kernels on CPU tensors: needs TRITON_INTERPRET=1 (the default)")
    for item in items:
        if "gpu" in item.keywords:
            if not torch.cuda.is_available():
                item.add_marker(no_cuda)
            elif INTERPRET:
                item.add_marker(interpreted)
        elif not INTERPRET and "triton_backend" in getattr(item, "fixturenames", ()):
            item.add_marker(needs_interpreter)
