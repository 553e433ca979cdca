"""A killed-and-resumed run equals an uninterrupted one; two torchrun ranks end identical."""
import os
import subprocess
import sys

import pytest
import torch
from safetensors.torch import load_file

from tgan.model.checkpoint import latest_checkpoint, load_checkpoint

from .conftest import FAST, kill_when_written


def _env(tmp_path_factory):
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1",
            "TGAN_CACHE_DIR": str(tmp_path_factory.getbasetemp() / "tgan_cache")}


def test_sigkill_then_resume_ends_with_the_same_weights(tmp_path, tmp_path_factory, midi_folder):
    flags = FAST + ["--data", str(midi_folder), "--loss", "ppo_gp", "--deterministic", "--seed", "3",
                    "--mle-steps", "10", "--disc-steps", "4", "--gan-steps", "6", "--checkpoint-every", "3",
                    "--sample-count", "1", "--sample-len", "8"]
    cmd = [sys.executable, "-m", "tgan.train", *flags]
    env = _env(tmp_path_factory)
    a, b = tmp_path / "whole", tmp_path / "killed"
    subprocess.run(cmd + ["--run-dir", str(a)], check=True, env=env, capture_output=True, timeout=600)

    proc = subprocess.Popen(cmd + ["--run-dir", str(b)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    kill_when_written(proc, b / "checkpoints" / "step_00000006" / "meta.json")  # mid MLE stage
    killed_at = load_checkpoint(latest_checkpoint(b)).step
    assert killed_at < 20 and not (b / "summary.json").exists()

    subprocess.run(cmd + ["--run-dir", str(b), "--resume"], check=True, env=env, capture_output=True, timeout=600)
    wa, wb = load_checkpoint(a), load_checkpoint(b)
    assert wa.step == wb.step == 20
    for name in ("gen", "disc", "ppo_classifier", "ppo_snapshot"):
        for k, t in wa.models[name].items():
            assert torch.equal(t, wb.models[name][k]), f"{name}.{k} differs after resume from step {killed_at}"


SCRIPT = r'''
import sys
from safetensors.torch import save_file
from tgan.gan import distributed as D
from tgan.gan.config import build_parser, config_from_args
from tgan.gan.trainer import Trainer

info = D.init_distributed("cpu")
cfg = config_from_args(build_parser().parse_args(sys.argv[2:]), on_gpu=False)
trainer = Trainer(cfg, info)
trainer.run()
for name, m in (("gen", trainer.gen), ("disc", trainer.disc)):
    save_file({k: v.contiguous() for k, v in m.state_dict().items()},
              f"{sys.argv[1]}/{name}_rank{info.rank}.safetensors")
D.cleanup(info)
'''


def test_two_gloo_ranks_end_with_identical_weights(tmp_path, tmp_path_factory, midi_folder):
    script = tmp_path / "ddp_run.py"
    script.write_text(SCRIPT)
    flags = FAST + ["--data", str(midi_folder), "--loss", "rsgan_gp", "--run-dir", str(tmp_path / "run"),
                    "--device", "cpu"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script),
           str(tmp_path), *flags]
    res = subprocess.run(cmd, env=_env(tmp_path_factory), capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-3000:]
    for name in ("gen", "disc"):
        r0, r1 = (load_file(str(tmp_path / f"{name}_rank{r}.safetensors")) for r in (0, 1))
        assert all(torch.equal(r0[k], r1[k]) for k in r0), name
    # only rank 0 wrote checkpoints and samples; the run went through every stage
    assert load_checkpoint(tmp_path / "run").extra["stage"] == "done"
    assert (tmp_path / "run" / "summary.json").is_file()


@pytest.mark.parametrize("bad", [["--resume"]])
def test_resume_without_checkpoint_is_a_clear_error(tmp_path, midi_folder, capsys, bad):
    from tgan.train import main

    assert main(FAST + ["--data", str(midi_folder), "--run-dir", str(tmp_path / "none"), *bad]) == 1
    assert "holds no complete checkpoint" in capsys.readouterr().err


def test_the_mle_seconds_budget_counts_the_time_spent_before_a_resume(tmp_path, tmp_path_factory, midi_folder):
    import json
    import re
    import signal
    import time

    budget = 4.0
    env = _env(tmp_path_factory)
    base = [sys.executable, "-m", "tgan.train", *FAST, "--data", str(midi_folder), "--loss", "mle",
            "--sample-count", "0"]
    subprocess.run(base + ["--gan-steps", "0", "--run-dir", str(tmp_path / "pre")], env=env, check=True,
                   capture_output=True, timeout=300)  # the pre-training --mle-seconds continues
    cmd = base + ["--init-from", str(tmp_path / "pre"), "--gan-steps", "1000000", "--mle-seconds", str(budget),
                  "--checkpoint-every", "20", "--run-dir", str(tmp_path / "run")]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    carried, deadline = 0.0, time.time() + 300
    while carried < 2.0 and proc.poll() is None and time.time() < deadline:  # 2 s of the MLE continuation saved
        ck = latest_checkpoint(tmp_path / "run")
        if ck is not None:
            extra = json.loads((ck / "meta.json").read_text())["extra"]
            carried = extra.get("stage_seconds", 0.0) if extra.get("stage") == "gan" else 0.0
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert carried >= 2.0, "the run ended before 2 s of its budget were checkpointed"
    res = subprocess.run(cmd + ["--resume"], env=env, capture_output=True, text=True, timeout=300, check=True)
    resumed = json.loads((tmp_path / "run" / "summary.json").read_text())["stage_seconds"]["gan"]
    done = re.search(r"--mle-seconds\), (\d+) s done", res.stderr)
    assert done and int(done.group(1)) >= 2, res.stderr[-2000:]
    # the resumed run spends what was left of the budget, not the whole budget again
    assert resumed < budget - 2.0 + 1.0, (resumed, carried)
