"""The FlexAttention baseline of bench_rel_attention computes the same function (forward, CPU)."""
import importlib.util
import sys
import warnings
from pathlib import Path

import pytest
import torch

from tgan.ops.rel_attention import naive

BENCH = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_rel_attention.py"


@pytest.mark.parametrize("T,M", [(20, 11), (16, 0)])
def test_flex_baseline_equals_reference(T, M):
    pytest.importorskip("torch.nn.attention.flex_attention")
    spec = importlib.util.spec_from_file_location("bench_rel_attention_mod", BENCH)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # create_block_mask traces with dynamo, which looks it up
    spec.loader.exec_module(mod)
    B, H, D = 2, 3, 16
    L = M + T
    shapes = [(B, T, H, D), (B, L, H, D), (B, L, H, D), (L + 3, H, D), (H, D), (H, D)]
    xs = [torch.randn(s) for s in shapes]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex_attention warns that it is not compiled
        out = mod.flex_rel_attention(*xs)
    torch.testing.assert_close(out, naive.rel_attention(*xs), atol=1e-5, rtol=1e-5)
