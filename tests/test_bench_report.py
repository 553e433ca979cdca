"""benchmarks/report.py: ratios and target checks computed from pytest-benchmark JSON."""
import importlib.util
import json
from pathlib import Path

import pytest

REPORT = Path(__file__).resolve().parents[1] / "benchmarks" / "report.py"


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("bench_report", REPORT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _bench(file, func, params, median, **extra):
    ident = "-".join(str(v) for v in params.values())
    return {"name": f"{func}[{ident}]", "fullname": f"benchmarks/{file}.py::{func}[{ident}]",
            "params": params, "extra_info": extra,
            "stats": {"median": median, "rounds": 5}}


def _write(tmp_path, benches):
    path = tmp_path / "run.json"
    path.write_text(json.dumps({"machine_info": {"python_version": "3.12", "cpu": {"brand_raw": "x"}},
                                "datetime": "2026-01-01T00:00:00", "benchmarks": benches}))
    return path


def _row(text, *cells):
    """The table row containing every one of ``cells``."""
    rows = [line for line in text.splitlines() if all(c in line for c in cells)]
    assert len(rows) == 1, (cells, rows)
    return rows[0]


def test_gumbel_ratios_and_targets(report, tmp_path):
    g = "bench_gumbel_softmax"
    shape = {"R": 131072, "V": 390, "dtype": "bfloat16"}
    benches = [
        _bench(g, "test_gumbel_softmax", {"provider": "torch_gumbel", "mode": "fwd+bwd", **shape},
               4e-3, peak_memory_bytes=600 * 2**20, min_bytes=512e6),
        _bench(g, "test_gumbel_softmax", {"provider": "triton", "mode": "fwd+bwd", **shape},
               8e-4, peak_memory_bytes=300 * 2**20, min_bytes=512e6),
        _bench(g, "test_gumbel_softmax", {"provider": "triton", "mode": "fwd", **shape},
               1e-3, min_bytes=205e6),  # 205 GB/s
        _bench(g, "test_copy_bandwidth", shape, 0.5e-3, bytes_moved=150e6),  # 300 GB/s
    ]
    text = report.report([_write(tmp_path, benches)])
    assert "5.00x" in _row(text, "| bfloat16 | 390 | 131072 | fwd+bwd |")
    fwd = _row(text, "| bfloat16 | 390 | 131072 | fwd |")
    assert "| 205 |" in fwd and "68.3%" in fwd
    assert _row(text, "speed-up over F.gumbel_softmax").endswith("| 5.00x | met |")
    assert _row(text, "peak memory, triton").endswith("| 300.0 MiB vs 600.0 MiB | met |")
    assert _row(text, "bandwidth / copy bandwidth").endswith("| 68.3% | NOT met |")


def test_attention_ratios_and_missing_providers(report, tmp_path):
    a = "bench_rel_attention"
    benches = [
        _bench(a, "test_rel_attention", {"provider": "eager", "T": 512, "mode": "fwd"}, 10e-3,
               B=32, dtype="bfloat16", saved_bytes=1000, saved_beyond_output_bytes=1000),
        _bench(a, "test_rel_attention", {"provider": "sdpa", "T": 512, "mode": "fwd"}, 2e-3, B=32),
        _bench(a, "test_rel_attention", {"provider": "triton", "T": 512, "mode": "fwd"}, 3e-3,
               B=32, saved_bytes=80, saved_beyond_output_bytes=10, tflops=100.0,
               kernel_tflops=133.3),
        _bench(a, "test_rel_attention", {"provider": "flex", "T": 512, "mode": "fwd"}, 6e-3, B=32),
        _bench(a, "test_rel_attention", {"provider": "eager", "T": 512, "mode": "bwd"}, 20e-3, B=32),
        *(_bench(a, "test_rel_attention", {"provider": n, "T": 512, "mode": "fwd+bwd"}, sec, B=32)
          for n, sec in (("compiled", 4e-3), ("triton", 5e-3), ("triton_fused", 2e-3))),
        _bench("bench_kv_cache", "test_decode_step", {"provider": "cpp", "B": 1, "S": 256}, 0.8,
               ms_per_step=3.125, peak_bytes=2**20),
    ]
    text = report.report([_write(tmp_path, benches)])
    row = _row(text, "| 512 | 32 | fwd |")
    assert "3.33x" in row and "1.50x" in row and "100.0 / 133.3" in row
    assert "| 3.33x | 1.50x | 2.00x | - |" in row  # vs eager, over sdpa, vs flex, vs compiled
    assert row.endswith("| 8.0% | 1.0% |")
    assert _row(text, "fwd, T=512: speed-up over eager").endswith("| 3.33x | NOT met |")
    assert _row(text, "fwd, T=512: time over SDPA").endswith("| 1.50x | met |")
    assert _row(text, "memory saved for backward").endswith("| 8.0% | NOT met |")
    assert _row(text, "output not counted), over").endswith("| 1.0% | met |")
    assert _row(text, "bwd, T=512: speed-up over eager").endswith("| - | not measured |")
    # fwd+bwd against torch.compile of eager, both backwards: 4 / 5 ms and 4 / 2 ms
    assert "| 0.80x | 2.00x |" in _row(text, "| 512 | 32 | fwd+bwd |")
    assert _row(text, "T=512: triton speed-up over compiled").endswith("| 0.80x | NOT met |")
    assert _row(text, "T=512: triton_fused speed-up over compiled").endswith("| 2.00x | met |")
    assert "### bench_kv_cache::test_decode_step" in text
    assert "3.125" in _row(text, "| cpp | 800.00 ms |") and "1.0 MiB" in _row(text, "| cpp |")


def test_bad_json_names_the_file(report, tmp_path):
    bad = tmp_path / "not_bench.json"
    bad.write_text("{}")
    with pytest.raises(SystemExit, match="not_bench.json"):
        report.report([bad])
