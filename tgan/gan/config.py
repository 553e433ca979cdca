"""Training configuration: one dataclass, a comment per field, command-line flags generated from it.

Defaults follow the paper / released code at the ``paper`` and ``small``
presets; ``PRESET_TRAIN`` shortens the schedule so ``tiny`` finishes every stage on 2 CPU cores in
minutes. Flags a user sets on the command line always win over preset values.
"""
from __future__ import annotations

import argparse
import dataclasses
from dataclasses import dataclass, fields
from pathlib import Path

from tgan.gan.losses import LOSSES


@dataclass
class TrainConfig:
    # -- run ------------------------------------------------------------------------------------
    loss: str = "ppo_gp"  # mle | wgan_gp | rsgan | rsgan_gp | ppo_gp
    disc: str = "bert"  # discriminator: bert | cnn
    preset: str = ""  # model size: tiny | small | paper ('' = tiny on CPU, small on a GPU)
    data: str = ""  # MAESTRO folder, folder of MIDI files, or '' for the bundled Bach corpus
    vocab: str = "maestro"  # event vocabulary: maestro (pitches 21..108) | full (0..127)
    run_dir: str = ""  # where checkpoints, samples, logs go ('' = runs/<loss>-<time>)
    init_from: str = ""  # start from another run's pre-trained models (its run dir or a checkpoint dir) and skip the pre-training stages it finished; with --loss mle, MLE then continues for --gan-steps iterations (the equal-compute baseline)
    seed: int = 0  # seed of every RNG
    device: str = ""  # cpu | cuda | cuda:N ('' = cuda when available, else cpu)
    deterministic: bool = False  # torch deterministic algorithms (bitwise-reproducible CPU runs)
    batch_size: int = 16  # sequences per step (per process under torchrun)
    checkpoint_every: int = 500  # steps between checkpoints (and at the end of every stage)
    log_every: int = 10  # steps between log lines / TensorBoard points
    max_bad_steps: int = 10  # consecutive NaN/inf losses before the run stops
    # -- stage 1: MLE pre-training of G ------------------------------------------------------------
    mle_steps: int = 100000  # MLE pre-training steps (segments)
    lr: float = 2e-3  # generator Adam learning rate (MLE)
    warmup: int = 4000  # inverse-sqrt warm-up steps (MLE)
    clip: float = 1.0  # gradient-norm clipping (generator and discriminator)
    mle_crop_segments: int = -1  # MLE segments read from one random position (memory carried, EOS between pieces) before each row jumps and the memory restarts (-1 = 4 x mem_len / segment, the memory full 3/4 of the time; 0 = never: pieces stream as the released iterator)
    eval_every: int = 2000  # steps between validation NLL evaluations
    eval_chunks: int = 64  # validation chunks scored per evaluation (0 = all)
    eval_len: int = 2048  # tokens per validation chunk
    # -- stage 2: discriminator pre-training ------------------------------------------------------
    disc_steps: int = 20000  # masked-LM pre-training steps of D (BERT only)
    disc_lr: float = 1e-4  # D pre-training AdamW learning rate
    mask: str = "span"  # span (SpanBERT, the paper) | token (plain MLM, the released code)
    disc_len: int = 0  # tokens per D pre-training crop (0 = all of D's positions, so none stays untrained)
    # -- stage 3: adversarial training -----------------------------------------------------------
    gan_steps: int = 100000  # adversarial-stage iterations (N of the Gumbel schedule)
    mle_seconds: float = 0.0  # with --loss mle and --init-from: continue MLE for this many seconds of wall-clock instead of --gan-steps iterations (the equal-time baseline; 0 = iterations)
    gan_start: int = 100  # first iteration with adversarial steps
    gan_every: int = 5  # one D and one G adversarial step every this many iterations
    gen_weight: float = 1.0  # lambda: L_G = L_mle + lambda·L_gen on adversarial iterations (with --gen-update joint)
    gen_update: str = "joint"  # joint: one Adam step on L_mle + lambda·L_gen (Equation 1, the paper) | separate: L_gen stepped alone by its own Adam (--g-adv-lr; the released code; lambda then has no effect)
    gp_weight: float = 10.0  # gamma: gradient-penalty weight (losses with GP)
    d_lr: float = 1e-5  # discriminator AdamW learning rate (adversarial and D warm-up)
    d_steps: int = 1  # D updates (each on a fresh rollout and real batch; PPO's D' as many) per generator adversarial update: WGAN's n_critic
    d_warmup_steps: int = 2000  # D warm-up before the first generator update: D (and D') trained against the frozen G's samples for at most this many steps (0 = none, the released code; it stops earlier at --d-warmup-auc)
    d_warmup_auc: float = 0.8  # the D warm-up stops once the held-out AUC of D (and of PPO's D') reaches this
    d_warmup_eval_every: int = 25  # D warm-up steps between held-out AUC measurements
    d_eval_every: int = 0  # adversarial iterations between held-out AUC measurements of D (0 = about 20 per stage)
    d_eval_batch: int = 16  # held-out sequences per AUC measurement: real validation crops and as many fresh samples
    g_adv_lr: float = 2e-3  # generator adversarial Adam learning rate (--gen-update separate)
    g_adv_warmup: int = 1000  # inverse-sqrt warm-up of the adversarial generator optimizer (--gen-update separate)
    beta_max: float = 100.0  # Gumbel inverse temperature reaches beta_max at gan_steps
    prefix_len: int = 5  # shared real priming prefix (tokens)
    rollout_len: int = 2048  # generated tokens per adversarial rollout
    segment_len: int = 64  # TBPTT segment: D scores and back-propagates this many tokens at once
    freeze_layers: int = 2  # BERT layers frozen (from the bottom) during adversarial training (the paper freezes earlier layers; the released code all)
    mem_grad_segments: int = 2  # TBPTT segments one backward spans, the gradient flowing through G's memory between them (the paper); 1 = memory detached at every segment (the released code); peak memory grows linearly with it
    disc_prefix: bool = True  # D sees the shared real prefix before the first segment (the released code)
    freeze_embeddings: bool = False  # freeze D's embeddings during adversarial training
    ppo_lr: float = 6.25e-5  # PPO-GP classifier D' Adam learning rate
    ppo_clip: float = 0.4  # PPO ratio clipped to [1-clip, 1+clip]
    ppo_snapshot_every: int = 20  # classifier steps between snapshots D0
    # -- samples at the end ------------------------------------------------------------------------
    sample_count: int = 4  # samples written per kind (unconditional and primed)
    sample_len: int = 2048  # tokens per sample
    top_k: int = 32  # sampling: keep the k most likely tokens
    temperature: float = 0.95  # sampling temperature

    def validate(self) -> None:
        """Raise ValueError naming the flag of the first bad value."""
        def bad(name, msg):
            raise ValueError(f"--{name.replace('_', '-')}: {msg}, got {getattr(self, name)!r}")

        if self.loss not in LOSSES:
            bad("loss", f"must be one of {', '.join(LOSSES)}")
        if self.disc not in ("bert", "cnn"):
            bad("disc", "must be bert or cnn")
        if self.preset not in ("", "tiny", "small", "paper"):
            bad("preset", "must be tiny, small or paper")
        if self.vocab not in ("maestro", "full"):
            bad("vocab", "must be maestro or full")
        if self.gen_update not in ("joint", "separate"):
            bad("gen_update", "must be joint or separate")
        if self.mle_crop_segments < -1:
            bad("mle_crop_segments", "must be >= -1 (-1 = 4 x mem_len / segment, 0 = never restart)")
        if self.gen_weight < 0:
            bad("gen_weight", "must be >= 0")
        if self.mask not in ("span", "token"):
            bad("mask", "must be span or token")
        for n in ("batch_size", "segment_len", "rollout_len", "prefix_len", "gan_every", "checkpoint_every",
                  "log_every", "eval_len", "max_bad_steps", "ppo_snapshot_every", "mem_grad_segments", "d_steps",
                  "d_warmup_eval_every", "d_eval_batch"):
            if getattr(self, n) <= 0:
                bad(n, "must be > 0")
        for n in ("mle_steps", "disc_steps", "gan_steps", "gan_start", "warmup", "g_adv_warmup",
                  "freeze_layers", "disc_len", "eval_chunks", "sample_count", "sample_len", "top_k", "eval_every",
                  "d_warmup_steps", "d_eval_every", "mle_seconds"):
            if getattr(self, n) < 0:
                bad(n, "must be >= 0")
        if not 0.5 < self.d_warmup_auc <= 1:
            bad("d_warmup_auc", "must be in (0.5, 1]")
        for n in ("lr", "disc_lr", "d_lr", "g_adv_lr", "ppo_lr", "clip", "temperature"):
            if getattr(self, n) <= 0:
                bad(n, "must be > 0")
        if self.beta_max < 1:
            bad("beta_max", "must be >= 1")
        if self.rollout_len % self.segment_len:
            bad("rollout_len", f"must be a multiple of --segment-len ({self.segment_len})")
        if self.prefix_len >= self.rollout_len:
            bad("prefix_len", f"must be smaller than --rollout-len ({self.rollout_len})")
        if not 0 < self.ppo_clip < 1:
            bad("ppo_clip", "must be in (0, 1)")
        if self.mle_seconds and not (self.loss == "mle" and self.init_from):
            bad("mle_seconds", "is for the MLE baseline only (--loss mle with --init-from)")
        if self.init_from and not Path(self.init_from).is_dir():
            bad("init_from", "must be a run directory or a checkpoint directory")
        if self.preset:  # what the preset's models can take, checked before any data is read
            from tgan.model import preset

            b = preset(self.preset).bert
            max_len = max(b.max_len, self.segment_len + (self.prefix_len if self.disc_prefix else 0))
            if self.disc == "bert" and self.freeze_layers > b.n_layer:
                bad("freeze_layers", f"must be <= D's {b.n_layer} layers at --preset {self.preset}")
            if (self.disc_len or max_len) > max_len:
                bad("disc_len", f"must be <= D's positions ({max_len})")


# Per-preset overrides of the defaults above (paper values stay for small/paper).
PRESET_TRAIN = {
    # Every stage on 2 CPU cores, corpus build and samples included, in about 10 minutes (the D
    # warm-up and 2 D steps per update take half of it).
    "tiny": dict(batch_size=8, mle_steps=3000, lr=1e-3, warmup=200, eval_every=500, eval_chunks=16,
                 eval_len=512, disc_steps=600, disc_lr=3e-4, gan_steps=300, gan_start=10, gan_every=5,
                 g_adv_lr=1e-4, g_adv_warmup=10, freeze_layers=1, rollout_len=256, segment_len=64,
                 checkpoint_every=500, sample_count=2, sample_len=1024, log_every=10,
                 # a D that keeps up, measured by its held-out AUC on the main job (README, "Does D
                 # discriminate?"): at the released 1e-5 / 6.25e-5, one D step per update and no
                 # warm-up, D stays at chance through the stage
                 d_lr=1e-3, ppo_lr=2e-4, d_steps=2, d_warmup_steps=300, d_eval_batch=32),
    "small": dict(batch_size=16, rollout_len=2048, segment_len=128),
    "paper": dict(),
}


def build_parser(prog: str = "python -m tgan.train") -> argparse.ArgumentParser:
    """An argparse parser with one flag per TrainConfig field (default None = not given)."""
    p = argparse.ArgumentParser(prog=prog, description="Train a Transformer-GAN: MLE pre-training of G, "
                                "masked-LM pre-training of D, then adversarial training.")
    comments = field_comments()
    for f in fields(TrainConfig):
        flag = "--" + f.name.replace("_", "-")
        per_preset = {name: over[f.name] for name, over in PRESET_TRAIN.items() if f.name in over}
        default = (f"{f.default!r}" if not per_preset else
                   ", ".join(f"{name} {per_preset.get(name, f.default)!r}" for name in PRESET_TRAIN))
        help_ = f"{comments.get(f.name, '')} (default: {default})".replace("%", "%%")
        if f.type in ("bool", bool):
            p.add_argument(flag, action=argparse.BooleanOptionalAction, default=None, help=help_)
        else:
            typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
            p.add_argument(flag, type=typ, default=None, help=help_)
    p.add_argument("--resume", action="store_true", help="continue the newest complete checkpoint in --run-dir")
    p.add_argument("--dry-run", action="store_true",
                   help="resolve the configuration (preset, device, schedule), print it with the "
                        "estimated duration, and train nothing")
    return p


# Rates for the duration estimate, from the main job's stage times (tiny preset, bundled corpus,
# 2-core CPU, batch 8, 256-token rollouts; benchmarks/RESULTS.md, "The main job"): MLE 3000 steps
# in 75 s, D pre-training 600 steps in 47 s. The split of the D warm-up and adversarial stage into
# a D step, a generator adversarial step and a measurement of 32 sequences is derived from those
# two stages' totals, not timed on its own. Other presets and devices: not measured.
MEASURED = {("cpu", "tiny"): dict(mle=75 / 3000, disc=47 / 600, d_step=0.77, g_adv=1.04, probe=1.5 / 32,
                                  batch=8, rollout=256)}


def estimate_seconds(cfg: TrainConfig, device: str, skipped=()) -> dict | None:
    """Per-stage seconds estimated from MEASURED (scaled linearly by batch size, rollout length
    and adversarial-step frequency), or None when this preset was not measured on this device.
    Stages in ``skipped`` (finished in the --init-from run) count zero."""
    m = MEASURED.get(("cuda" if device.startswith("cuda") else "cpu", cfg.preset))
    if m is None:
        return None
    scale = cfg.batch_size / m["batch"]
    roll = cfg.rollout_len / m["rollout"]
    probe = m["probe"] * cfg.d_eval_batch * roll
    n_adv = len(range(cfg.gan_start, cfg.gan_steps, cfg.gan_every))
    gan = (cfg.gan_steps * m["mle"] * scale + n_adv * (m["g_adv"] + cfg.d_steps * m["d_step"]) * scale * roll
           + (cfg.gan_steps / (cfg.d_eval_every or max(1, cfg.gan_steps // 20)) + 1) * probe)
    mle_gan = cfg.gan_steps * m["mle"] * scale if cfg.init_from else 0.0  # the MLE baseline's continuation
    out = {"mle": cfg.mle_steps * m["mle"] * scale, "disc": cfg.disc_steps * m["disc"],
           # the warm-up at most: it stops once D's AUC reaches the target
           "dwarm": cfg.d_warmup_steps * (m["d_step"] * scale * roll + probe / cfg.d_warmup_eval_every),
           "gan": (cfg.mle_seconds or mle_gan) if cfg.loss == "mle" else gan}
    if cfg.disc == "cnn" or cfg.loss == "mle":
        out["disc"] = 0.0
    if cfg.loss == "mle" or not cfg.gan_steps:
        out["dwarm"] = 0.0
    for stage in skipped:
        out[stage] = 0.0
    return out


def describe(cfg: TrainConfig, device: str, skipped=()) -> str:
    """The resolved configuration in a few lines, with the estimated duration; ``skipped``: the
    pre-training stages the --init-from run finished, which this run does not repeat."""
    est = estimate_seconds(cfg, device, skipped)
    fmt = lambda s: f"{s / 3600:.1f} h" if s >= 3600 else f"{s / 60:.1f} min"  # noqa: E731
    lines = [
        f"preset {cfg.preset} on {device}; loss {cfg.loss}, discriminator {cfg.disc}; "
        f"data {cfg.data or 'bach (bundled corpus)'}; vocabulary {cfg.vocab}",
        f"stages: MLE {cfg.mle_steps} steps, D pre-training {cfg.disc_steps} steps, adversarial "
        f"{cfg.gan_steps} iterations (batch {cfg.batch_size}, rollouts of {cfg.rollout_len} "
        f"tokens in segments of {cfg.segment_len}; {cfg.d_steps} D step(s) per generator update, one every "
        f"{cfg.gan_every} iterations from {cfg.gan_start}), D warm-up before it: at most {cfg.d_warmup_steps} "
        f"steps, until D's held-out AUC reaches {cfg.d_warmup_auc}",
    ]
    if skipped:
        lines.append(f"from --init-from {cfg.init_from}: {', '.join(skipped)} finished there, not repeated")
    if est is None:
        lines.append(f"estimated duration: not known (no measured rate for the {cfg.preset} "
                     f"preset on {device}); the log's steps/s tell after the first steps")
    else:
        lines.append("estimated duration (from the measured tiny-preset CPU rates, scaled): "
                     + ", ".join(f"{k}{' (at most)' if k == 'dwarm' else ''} {fmt(v)}" for k, v in est.items())
                     + f"; {fmt(sum(est.values()))} in all, data preparation and samples not counted")
    return "\n".join(lines)


def config_from_args(args: argparse.Namespace, on_gpu: bool) -> TrainConfig:
    """TrainConfig from parsed flags: defaults, then the preset's overrides, then the user's flags."""
    given = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if getattr(args, f.name) is not None}
    preset = given.get("preset") or ("small" if on_gpu else "tiny")
    cfg = dataclasses.replace(TrainConfig(), preset=preset)
    if preset in PRESET_TRAIN:
        cfg = dataclasses.replace(cfg, **PRESET_TRAIN[preset])
    cfg = dataclasses.replace(cfg, **given)
    cfg.preset = preset
    cfg.validate()
    return cfg


def add_dataclass_flags(parser, cls, required=()) -> None:
    """One ``--flag`` per field of the dataclass ``cls`` (int, float or str), its comment as help
    with the default; the fields named in ``required`` must be given."""
    comments = field_comments(cls)
    for f in fields(cls):
        typ = {"int": int, "float": float, "str": str}[f.type if isinstance(f.type, str) else f.type.__name__]
        parser.add_argument("--" + f.name.replace("_", "-"), type=typ, default=f.default, required=f.name in required,
                            help=f"{comments.get(f.name, '')} (default: {f.default!r})")


def config_from_flags(parser, args, cls):
    """The dataclass ``cls`` from the flags ``add_dataclass_flags`` made, validated; a bad value
    exits through ``parser.error`` naming its flag."""
    cfg = cls(**{f.name: getattr(args, f.name) for f in fields(cls)})
    try:
        cfg.validate()
    except ValueError as e:
        parser.error(str(e))
    return cfg


def field_comments(cls=None) -> dict:
    """Field name -> the comment after it in the dataclass ``cls``'s source (TrainConfig by
    default): the help text of the generated command-line flags."""
    import inspect
    import re

    out = {}
    for line in inspect.getsource(cls or TrainConfig).splitlines():
        m = re.match(r"\s+(\w+): \w+ = .*?#\s*(.*)$", line)
        if m:
            out[m.group(1)] = m.group(2)
    return out
