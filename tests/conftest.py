"""Shared test setup.

TRITON_INTERPRET must be set before triton is imported anywhere, so the kernels run on the CPU.
"""
import os

os.environ.setdefault("TRITON_INTERPRET", "1")

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
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
