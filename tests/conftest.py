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

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"
MAESTRO_MINI = SHARED_DATA / "maestro-mini"


@pytest.fixture(autouse=True)
def _fixed_seeds():
    random.seed(0)
    np.random.seed(0)
    torch.manual_seed(0)
    yield


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
