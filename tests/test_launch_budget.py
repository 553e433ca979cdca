"""benchmarks/launch_count.py: what a rollout token step and a decode step ask of the GPU, counted
on the CPU by running the GPU code path with the Triton kernels recorded instead of run.

Select these together with ``-k "launch_budget or no_host_sync or one_specialization"``. The
budgets below are the counts now (small preset, batch 2, segments of 32), so that a change that
adds launches per token fails here; the issue's targets (<= 40 per rollout token, <= 20 per decode
step) need the token loop captured as a CUDA graph and are marked as expected failures until then.
In a subprocess: the recorder binds launches with triton's JIT, which TRITON_INTERPRET=1 (set for
this test session) replaces by the interpreter.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "launch_count.py"
SEGMENT = 32


@pytest.fixture(scope="module")
def counts(tmp_path_factory):
    pytest.importorskip("triton")
    out = tmp_path_factory.mktemp("launches") / "counts.json"
    env = {k: v for k, v in os.environ.items() if k not in ("TRITON_INTERPRET", "TGAN_BACKEND")}
    proc = subprocess.run([sys.executable, str(SCRIPT), "--preset", "small", "--batch", "2",
                           "--segment", str(SEGMENT), "--decode-steps", "16", "--no-python-calls",
                           "--per-token-weight-grads", "--json", str(out)],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def _gpu_launches(res, phase="total"):
    per = res["per_token"] if phase is None else res["per_token"][phase]
    return per.get("launches", 0) + (res["triton_per_token"] if phase in ("total", None) else 0)


def test_rollout_launch_budget(counts):
    roll = counts["rollout"]
    assert roll["triton_per_token"] == 18  # 4 layers x (fwd + 3 backward passes) + Gumbel fwd, bwd
    assert _gpu_launches(roll) <= 268, roll["per_token"]
    assert roll["per_token"]["forward"]["launches"] <= 68, roll["per_token"]  # PAD mask once
    # weight gradients once per segment: the backward launches far less than per-token autograd's
    plain = counts["rollout_per_token_weight_grads"]
    assert roll["per_token"]["backward"]["launches"] < 0.75 * plain["per_token"]["backward"]["launches"]


def test_decode_launch_budget(counts):
    dec = counts["decode"]
    assert dec["triton_per_token"] == 5  # 4 layers' attention + the sampler
    assert _gpu_launches(dec, None) <= 58, dec


@pytest.mark.xfail(strict=True, reason="needs the token loop captured as one CUDA graph per segment")
def test_rollout_launch_budget_target(counts):
    assert _gpu_launches(counts["rollout"]) <= 40


@pytest.mark.xfail(strict=True, reason="needs the decode step captured as one CUDA graph")
def test_decode_launch_budget_target(counts):
    assert _gpu_launches(counts["decode"], None) <= 20


def test_rollout_no_host_sync(counts):
    for phase, per in counts["rollout"]["per_token"].items():
        assert per.get("syncs", 0) == 0, (phase, per)
    # no seed drawn on the host (5 per token once): one base per segment drawn on the device, which
    # every dropout and Gumbel kernel reads there (a DeviceSeed), so none takes an int seed
    assert counts["rollout"]["per_token"]["total"].get("seed_draws", 0) == 0
    assert counts["rollout"]["host_seeded_per_token"] == 0


def test_decode_no_host_sync(counts):
    per = counts["decode"]["per_token"]
    assert per.get("syncs", 0) == 0 and per.get("seed_draws", 0) == 0, per


def test_rollout_one_specialization(counts):
    # two segments with the memory full, the context sliding: one binary per kernel (sm_90 binder)
    var = counts["rollout"]["variants"]
    assert set(var) == {"rel_attention_fwd_kernel", "rel_attention_bwd_dkdv_kernel",
                        "rel_attention_bwd_dq_kernel", "rel_attention_bwd_dr_kernel",
                        "gumbel_st_fwd_kernel", "gumbel_st_bwd_kernel"}
    assert all(n == 1 for n in var.values()), var
    # a cold start, from the prefix's forward on, compiles 7 binaries with the pinned tiles (the
    # default): the prefix's segment forward, the token step's forward and three backward passes,
    # the Gumbel forward and backward; the autotuner would compile and time 17
    assert counts["rollout"]["cold_compiles"] == {"default": 7, "autotune": 17}


def test_decode_one_specialization(counts):
    var = counts["decode"]["variants"]
    assert var == {"rel_attention_fwd_kernel": 1, "sample_kernel": 1}, var
