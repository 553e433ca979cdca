"""The GPU run scripts: gpu_session.sh's test shards select every gpu-marked test once, and
run.sh's tests stage runs pytest -m gpu (all skipped without CUDA) and stops at its time limit."""
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _collect(*args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-m", "gpu",
                           "-p", "no:cacheprovider", *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=300)
    assert proc.returncode in (0, 5), proc.stdout[-2000:] + proc.stderr[-2000:]  # 5: none selected
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_gpu_session_shards_cover_every_gpu_test_once():
    script = (ROOT / "benchmarks" / "gpu_session.sh").read_text()
    body = script[script.index("gpu_tests() {"):script.index("\n}\n", script.index("gpu_tests() {"))]
    shards = re.findall(r'pytest -m gpu [^\n]*?tests --ignore="\$kv" -k "([^"]+)"', body)
    assert len(shards) == 3, shards
    kv = "tests/ops/test_kv_cache.py"
    assert f'local kv={kv}' in body and 'pytest -m gpu -p no:cacheprovider -q -rs "$kv"' in body
    selected = [t for k in shards for t in _collect("tests", f"--ignore={kv}", "-k", k)]
    selected += _collect(kv)
    everything = _collect("tests")
    assert len(everything) >= 14
    assert sorted(selected) == sorted(everything), (
        set(everything) ^ set(selected), len(selected), len(everything))


def _run_sh(tmp_path, **env):
    # the script calls `pytest` and `python`: this interpreter's, as an activated environment would
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    env = dict(os.environ, OUT=str(tmp_path), TGAN_RUN_NO_BUILD="1", PATH=path, **env)
    return subprocess.run(["bash", str(ROOT / "benchmarks" / "run.sh"), "tests"], capture_output=True,
                          text=True, cwd=ROOT, env=env, timeout=300)


def test_run_sh_tests_stage_passes_without_cuda_and_stops_at_its_limit(tmp_path):
    proc = _run_sh(tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" in proc.stdout and (tmp_path / "tests.log").exists()
    proc = _run_sh(tmp_path, TESTS_TIMEOUT="1")  # pytest cannot even collect in a second
    assert proc.returncode == 124, proc.stdout + proc.stderr
    assert "tests: stopped at the limit of 1s (TESTS_TIMEOUT)" in proc.stdout


def test_rollout_probe_runs_both_paths_at_every_batch(tmp_path):
    # the GPU session's 'rollouts' stage, at toy size on the CPU: every batch and rollout length,
    # the first step cold, the per-token weight-gradient path beside the segment sums at batch 2
    import json

    out = tmp_path / "probe.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rollout_probe.py"), "--preset", "tiny",
                           "--batches", "2,3", "--rollouts", "128", "--steps", "18", "--old-path-batches", "2",
                           "--decode-modes", "eager,static",
                           "--device", "cpu", "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    res = json.loads(out.read_text())
    rows = [(r["batch"], r["path"], r["cache"]) for r in res["adversarial"]]
    assert rows == [(2, "segment_sums", "cold"), (2, "segment_sums", "warm"),
                    (2, "per_token_weight_grads", "warm"), (3, "segment_sums", "warm")]
    assert all(r["tokens_per_s"] > 0 and r["rollout_len"] == 128 for r in res["adversarial"])
    assert set(res["decode_tokens_per_s"]) == {"2", "3"}
    assert [(r["batch"], r["mode"]) for r in res["decode_modes"]] == [(2, "eager"), (2, "static"), (3, "eager"),
                                                                      (3, "static")]
    assert all(r["tokens_per_s"] > 0 for r in res["decode_modes"])
    assert "rollouts" in (ROOT / "benchmarks" / "gpu_session.sh").read_text()
