"""python -m tgan.train without surprises: preset per device, --dry-run, --help per preset."""
import json

import pytest

from tgan.gan.config import build_parser, config_from_args, estimate_seconds
from tgan.train import main


def test_no_flags_on_a_gpu_means_small_and_the_paper_schedule():
    args = build_parser().parse_args([])
    gpu, cpu = config_from_args(args, on_gpu=True), config_from_args(args, on_gpu=False)
    assert (gpu.preset, gpu.mle_steps, gpu.disc_steps, gpu.gan_steps) == ("small", 100000, 20000, 100000)
    assert (cpu.preset, cpu.mle_steps, cpu.gan_steps) == ("tiny", 3000, 300)


def test_dry_run_prints_the_resolved_configuration_and_trains_nothing(tmp_path, capsys):
    run_dir = tmp_path / "run"
    assert main(["--dry-run", "--run-dir", str(run_dir), "--loss", "wgan_gp", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "preset tiny on cpu; loss wgan_gp" in out and "MLE 3000 steps" in out
    # the measured main job: MLE 75 s, D pre-training 47 s, a warm-up of at most 300 steps, the stage
    assert "mle 1.2 min, disc 0.8 min, dwarm (at most) 4.2 min, gan 3.1 min; 9.3 min in all" in out
    cfg = json.loads(out[out.index("{"):])
    assert cfg["loss"] == "wgan_gp" and cfg["run_dir"] == str(run_dir)
    assert not run_dir.exists()


def test_estimate_scales_with_the_schedule_and_is_absent_where_unmeasured():
    args = build_parser().parse_args(["--batch-size", "16", "--rollout-len", "512"])
    cfg = config_from_args(args, on_gpu=False)
    est = estimate_seconds(cfg, "cpu")
    base = estimate_seconds(config_from_args(build_parser().parse_args([]), on_gpu=False), "cpu")
    # 300 iterations: 300 MLE steps, 58 generator updates (from 10, every 5) with 2 D steps each,
    # 32 sequences' AUC at 21 points; a warm-up of at most 300 D steps measured every 25
    mle, adv, probe = 300 * 75 / 3000, 58 * (1.04 + 2 * 0.77), 21 * 1.5
    assert base["gan"] == pytest.approx(mle + adv + probe)
    assert base["dwarm"] == pytest.approx(300 * (0.77 + 1.5 / 25))
    # twice the batch and the rollout: MLE x2, rollouts x4, the measurements (same count) x2
    assert est["mle"] == pytest.approx(2 * 75) and est["gan"] == pytest.approx(2 * mle + 4 * adv + 2 * probe)
    small = config_from_args(build_parser().parse_args(["--preset", "small"]), on_gpu=False)
    assert estimate_seconds(small, "cpu") is None


def test_help_shows_each_preset_s_default(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "MLE pre-training steps (segments) (default: tiny 3000, small 100000, paper 100000)" in text
    assert "(default: tiny 256, small 2048, paper 2048)" in text  # --rollout-len
