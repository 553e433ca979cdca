"""A run's bookkeeping: its stages, its checkpoints, ``--resume`` and ``--init-from``.

The algorithm is in ``tgan.gan.trainer``; this module only decides which stages a run goes
through and which it may skip, and saves and restores the state of a ``Trainer`` ``t``:
  - ``stage_names`` / ``plan``: the stages a configuration runs (mle, disc, dwarm, gan), with steps;
  - ``finished_stages``: what a checkpoint says is complete; ``pretrained_checkpoint`` and
    ``inherited_stages``: what ``--init-from`` takes from another run;
  - ``save_run``, ``resume_run``, ``init_from_run``: checkpoints out of and into a trainer.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path

from tgan.model.checkpoint import (CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint,
                                   read_meta, save_checkpoint)

logger = logging.getLogger(__name__)

STAGES = ("mle", "disc", "dwarm", "gan", "done")


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""


def stage_names(loss: str, disc: str, init_from: str = "", warmup: bool = False) -> list[str]:
    """The stages a run with this loss and discriminator goes through, in order.

    An MLE run started from another run (``init_from``) continues MLE through the adversarial
    stage's iterations, so it matches an adversarial run from the same pre-training step for step.
    ``warmup``: the D warm-up (``dwarm``: D trained against the frozen G) precedes the adversarial stage.
    """
    names = ["mle"]
    if loss != "mle":
        if disc == "bert":
            names.append("disc")
        if warmup:
            names.append("dwarm")
        names.append("gan")
    elif init_from:
        names.append("gan")
    return names


def has_warmup(train: dict) -> bool:
    """Whether a run with this training configuration (a TrainConfig's fields, as a dict) warms D up."""
    return (train.get("loss", "mle") != "mle" and train.get("d_warmup_steps", 0) > 0
            and train.get("gan_steps", 1) > 0)


def finished_stages(meta: dict) -> list[str]:
    """Stages a run checkpoint says are complete (it is saved at a stage boundary or mid-stage)."""
    train, extra = meta.get("configs", {}).get("train", {}), meta.get("extra", {})
    names = stage_names(train.get("loss", "mle"), train.get("disc", "bert"), train.get("init_from") or "",
                        has_warmup(train))
    stage = extra.get("stage", "mle")
    if stage == "done":
        return names
    return names[: names.index(stage)] if stage in names else []


def warmup_matches(meta: dict, loss: str | None, disc: str | None) -> bool:
    """Whether a checkpoint's finished D warm-up can stand for this run's: D (and D') were warmed
    up with the same loss and discriminator kind (G is frozen in the warm-up, so G is the same)."""
    train = meta.get("configs", {}).get("train", {})
    return loss is None or (train.get("loss") == loss and train.get("disc") == disc)


def pretrained_checkpoint(path, loss: str | None = None, disc: str | None = None) -> Path:
    """The checkpoint ``--init-from path`` starts from.

    ``path`` is a checkpoint directory saved at the end of a stage, or a run directory: then its
    newest checkpoint that ends pre-training (MLE, or MLE and D pre-training, or those and the D
    warm-up), which runs pin. A run with ``--gan-steps 0`` (pre-training only) ends with a "done"
    checkpoint that is its end of D pre-training: that one is taken, not the end of MLE before it.
    A checkpoint that ends a D warm-up is taken only for a run of the same ``loss`` and ``disc``
    (given; None = any): another loss starts from the end of D pre-training, whose G is the same.
    """
    p = Path(path)
    if (p / "meta.json").is_file():
        meta = read_meta(p)
        if meta.get("extra", {}).get("stage_step", 0) != 0 or not finished_stages(meta):
            raise CheckpointError(f"--init-from {p}: this checkpoint is in the middle of stage "
                                  f"{meta.get('extra', {}).get('stage')!r}; pass one saved at the end of a "
                                  "stage, or the run directory")
        return p
    for ck in reversed(list_checkpoints(p)):
        meta = read_meta(ck)
        finished = finished_stages(meta)
        no_gan = meta.get("configs", {}).get("train", {}).get("gan_steps") == 0
        if "dwarm" in finished and not warmup_matches(meta, loss, disc):
            continue
        if meta.get("extra", {}).get("stage_step", 0) == 0 and finished and ("gan" not in finished or no_gan):
            return ck
    raise CheckpointError(f"--init-from {p}: no checkpoint of this run ends a pre-training stage (MLE or "
                          "D pre-training); it has not finished MLE, or its stage-end checkpoints were "
                          "pruned (pass a checkpoint directory instead)")


def inherited_stages(cfg) -> list[str]:
    """Pre-training stages ``cfg`` takes from its ``--init-from`` run and so skips: MLE, and D
    pre-training when both runs train a BERT discriminator. Empty without --init-from, or when
    that run cannot be read (the trainer then says why)."""
    if not cfg.init_from:
        return []
    try:
        finished = finished_stages(read_meta(pretrained_checkpoint(cfg.init_from, cfg.loss, cfg.disc)))
    except (CheckpointError, OSError):
        return []
    ours = stage_names(cfg.loss, cfg.disc, cfg.init_from, has_warmup(cfg.__dict__))
    return [s for s in finished if s in ("mle", "disc", "dwarm") and s in ours]


def config_mismatch(what: str, theirs: dict, ours: dict) -> str | None:
    diff = [f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)]
    return f"its {what} differs from this run's ({'; '.join(diff[:4])})" if diff else None


def save_run(t, pin: bool = False) -> None:
    """Checkpoint the trainer ``t``: every model, optimizer, scheduler and RNG state, with the
    stage, the step in it and the stage's wall-clock so far (pinned ones are never pruned)."""
    t.stream.reset()  # rows and memory restart at checkpoints in every run: resumes match
    if not t.info.is_main:
        return
    optims = dict(t.opt)
    models = t.models()
    if t.ppo is not None:
        optims["ppo"] = t.ppo.opt
        models["ppo_snapshot"] = t.ppo.snapshot
    extra = {"stage": t.stage, "stage_step": t.stage_step, "bad_steps": t.bad_steps,
             "stage_seconds": time.time() - t.stage_started if t.stage_step else 0.0,
             "history": t.history, "ppo_steps": t.ppo.steps if t.ppo else 0,
             "mle_stream": t.stream.state_dict()}
    configs = {"generator": t.gcfg.to_dict(), "bert": t.bcfg.to_dict(), "cnn": t.ccfg.to_dict(),
               "train": t.cfg.__dict__, "vocab": t.data.vocab.preset}
    save_checkpoint(t.run_dir, t.global_step, "run", models, optims, t.sched, configs, extra,
                    pin=pin)


def plan(cfg) -> list[tuple[str, int]]:
    """The stages a run of ``cfg`` goes through, with their step counts."""
    steps = {"mle": cfg.mle_steps, "disc": cfg.disc_steps, "dwarm": cfg.d_warmup_steps, "gan": cfg.gan_steps}
    names = stage_names(cfg.loss, cfg.disc, cfg.init_from, has_warmup(cfg.__dict__))
    return [(name, steps[name]) for name in names]


def global_step(cfg, stage: str, stage_step: int) -> int:
    """Steps over every planned stage up to ``stage_step`` of ``stage`` (the checkpoint's step number)."""
    base = 0
    for name, steps in plan(cfg):
        if name == stage:
            return base + stage_step
        base += steps
    return base


def resume_run(t) -> None:
    """Load the trainer ``t``'s newest checkpoint of its run directory: models, optimizers,
    schedulers, RNG, stage and step, so the run continues as if never stopped."""
    path = latest_checkpoint(t.run_dir)
    if path is None:
        raise FileNotFoundError(f"--resume: {t.run_dir} holds no complete checkpoint")
    ck = load_checkpoint(path, kind="run", map_location=t.device)
    ex = ck.extra
    t.stage, t.stage_step, t.bad_steps = ex["stage"], ex["stage_step"], ex["bad_steps"]
    t.stage_seconds = ex.get("stage_seconds", 0.0)
    t.history = ex["history"]
    if "mle_stream" in ex:
        t.stream.load_state_dict(ex["mle_stream"])
    if t.stage in ("dwarm", "gan", "done"):
        t.adv_optimizers()
    for name, m in t.models().items():
        m.load_state_dict(ck.models[name])
    if t.ppo is not None:
        t.ppo.snapshot.load_state_dict(ck.models["ppo_snapshot"])
        t.ppo.steps = ex["ppo_steps"]
        t.ppo.opt.load_state_dict(ck.optimizers["ppo"])
    for name, opt in t.opt.items():
        if name in ck.optimizers:
            opt.load_state_dict(ck.optimizers[name])
    for name, s in t.sched.items():
        s.load_state_dict(ck.meta["schedulers"][name])
    ck.restore_rng()
    if t.info.enabled:  # restored RNG is rank 0's; keep ranks drawing different crops
        t.seed_rngs(t.cfg.seed + t.global_step)
    logger.info("resumed %s at stage %s step %d", path, t.stage, t.stage_step)


def init_from_run(t, path) -> None:
    """Take the pre-trained models of another run; skip the pre-training stages it finished."""
    ck = load_checkpoint(pretrained_checkpoint(path, t.cfg.loss, t.cfg.disc), kind="run",
                         map_location=t.device)
    theirs = ck.configs
    finished = [s for s in finished_stages(ck.meta) if s in ("mle", "disc", "dwarm")]
    problems = []
    if theirs.get("vocab") != t.data.vocab.preset:
        problems.append(f"its vocabulary is {theirs.get('vocab')!r}, this run's {t.data.vocab.preset!r} "
                        "(--vocab)")
    problems.append(config_mismatch("generator", theirs.get("generator", {}), t.gcfg.to_dict()))
    take_disc = "disc" in finished and t.cfg.disc == "bert" and "disc" in ck.models
    if take_disc:
        problems.append(config_mismatch("BERT discriminator", theirs.get("bert", {}), t.bcfg.to_dict()))
    problems = [p for p in problems if p]
    if problems:
        raise CheckpointError(f"--init-from {ck.path}: {'; '.join(problems)}. Use the same --preset, "
                              "--vocab and --segment-len as that run")
    t.gen.load_state_dict(ck.models["gen"])
    if "g_mle" in ck.optimizers:
        t.opt["g_mle"].load_state_dict(ck.optimizers["g_mle"])
        t.sched["g_mle"].load_state_dict(ck.meta["schedulers"]["g_mle"])
    if take_disc:
        t.disc.load_state_dict(ck.models["disc"])
    else:
        finished = [s for s in finished if s != "disc"]
    # A finished D warm-up of the same loss and D (pretrained_checkpoint checked): D, D' and
    # their optimizers as the warm-up left them; G is the same, the warm-up froze it.
    take_warmup = "dwarm" in finished and "dwarm" in dict(t.plan()) and \
        (take_disc or t.cfg.disc != "bert") and "disc" in ck.models
    if take_warmup:
        if t.cfg.disc != "bert":
            t.disc.load_state_dict(ck.models["disc"])
        d_opt = t.adv_optimizers()
        if "d_adv" in ck.optimizers:
            d_opt.load_state_dict(ck.optimizers["d_adv"])
        if t.ppo is not None and "ppo_classifier" in ck.models:
            t.ppo.classifier.load_state_dict(ck.models["ppo_classifier"])
            t.ppo.snapshot.load_state_dict(ck.models["ppo_snapshot"])
            t.ppo.steps = ck.extra.get("ppo_steps", 0)
            if "ppo" in ck.optimizers:
                t.ppo.opt.load_state_dict(ck.optimizers["ppo"])
    else:
        finished = [s for s in finished if s != "dwarm"]
    t.history = {"val_nll": [list(x) for x in ck.extra.get("history", {}).get("val_nll", [])]}
    if take_warmup:  # the warm-up's AUC curve comes along (its end is this run's warmup_end)
        t.history["disc_auc"] = [dict(x) for x in ck.extra.get("history", {}).get("disc_auc", [])]
    todo = [name for name, _ in t.plan() if name not in finished]
    t.stage, t.stage_step = (todo[0] if todo else "done"), 0
    t.initialized_from = str(ck.path)
    logger.info("initialized from %s (finished there: %s); starting at stage %s", ck.path,
                ", ".join(finished), t.stage)
