"""The stage runner behind ``python -m tgan.train``.

Stages, in order, each skipped when the run directory's checkpoint says it is done:
  1. ``mle``:  MLE pre-training of G (segment recurrence, Adam + inverse-sqrt warm-up);
  2. ``disc``: masked-LM pre-training of the BERT D on the same data (span masking by default);
  3. ``gan``:  adversarial training: an MLE step every iteration, and from ``gan_start`` one D step
               and one G adversarial step every ``gan_every`` iterations. With ``--loss mle`` and
               ``--init-from`` it is the MLE baseline at equal compute: the same ``gan_steps``
               iterations, each its MLE step and nothing else.
Then samples (unconditional and primed) are written as MIDI and a metrics summary as JSON.

Checkpoints hold every model, optimizer, scheduler and RNG state plus the stage and step, so a
killed run resumed with ``--resume`` ends with the same weights as an uninterrupted one (CPU,
deterministic mode). A NaN/inf loss skips its update; ``max_bad_steps`` in a row stop the run.
"""
from __future__ import annotations

import json
import logging
import math
import random
import time
from pathlib import Path

import numpy as np
import torch
from tgan.progress import progress

from tgan.gan import distributed as D
from tgan.gan.config import TrainConfig
from tgan.gan.data_feed import DataFeed
from tgan.gan.losses import make_loss
from tgan.gan.mle import PieceStream, evaluate_nll, mle_step, uniform_nll
from tgan.gan.pretrain import mlm_step
from tgan.gan.rollout import disc_inputs, discriminator_step, generator_adversarial_step, sample_fakes
from tgan.gan.schedule import gumbel_beta, inverse_sqrt_scheduler
from tgan.gan.tblog import ScalarLog
from tgan.model import BertDiscriminator, CNNDiscriminator, TransformerXL, preset
from tgan.model.checkpoint import (CheckpointError, latest_checkpoint, list_checkpoints, load_checkpoint,
                                   read_meta, save_checkpoint)

logger = logging.getLogger(__name__)

STAGES = ("mle", "disc", "gan", "done")


class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""


def stage_names(loss: str, disc: str, init_from: str = "") -> list[str]:
    """The stages a run with this loss and discriminator goes through, in order.

    An MLE run started from another run (``init_from``) continues MLE through the adversarial
    stage's iterations, so it matches an adversarial run from the same pre-training step for step.
    """
    names = ["mle"]
    if loss != "mle":
        if disc == "bert":
            names.append("disc")
        names.append("gan")
    elif init_from:
        names.append("gan")
    return names


def _finished_stages(meta: dict) -> list[str]:
    """Stages a run checkpoint says are complete (it is saved at a stage boundary or mid-stage)."""
    train, extra = meta.get("configs", {}).get("train", {}), meta.get("extra", {})
    names = stage_names(train.get("loss", "mle"), train.get("disc", "bert"), train.get("init_from") or "")
    stage = extra.get("stage", "mle")
    if stage == "done":
        return names
    return names[: names.index(stage)] if stage in names else []


def pretrained_checkpoint(path) -> Path:
    """The checkpoint ``--init-from path`` starts from.

    ``path`` is a checkpoint directory saved at the end of a stage, or a run directory: then its
    newest checkpoint that ends pre-training (MLE, or MLE and D pre-training), which runs pin. A run
    with ``--gan-steps 0`` (pre-training only) ends with a "done" checkpoint that is its end of D
    pre-training: that one is taken, not the end of MLE before it.
    """
    p = Path(path)
    if (p / "meta.json").is_file():
        meta = read_meta(p)
        if meta.get("extra", {}).get("stage_step", 0) != 0 or not _finished_stages(meta):
            raise CheckpointError(f"--init-from {p}: this checkpoint is in the middle of stage "
                                  f"{meta.get('extra', {}).get('stage')!r}; pass one saved at the end of a "
                                  "stage, or the run directory")
        return p
    for ck in reversed(list_checkpoints(p)):
        meta = read_meta(ck)
        finished = _finished_stages(meta)
        no_gan = meta.get("configs", {}).get("train", {}).get("gan_steps") == 0
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
        finished = _finished_stages(read_meta(pretrained_checkpoint(cfg.init_from)))
    except (CheckpointError, OSError):
        return []
    ours = stage_names(cfg.loss, cfg.disc, cfg.init_from)
    return [s for s in finished if s in ("mle", "disc") and s in ours]


def _config_mismatch(what: str, theirs: dict, ours: dict) -> str | None:
    diff = [f"{k} {theirs.get(k)!r} vs {ours.get(k)!r}" for k in sorted(set(theirs) | set(ours))
            if theirs.get(k) != ours.get(k)]
    return f"its {what} differs from this run's ({'; '.join(diff[:4])})" if diff else None


class Trainer:
    """Owns the models, optimizers and loop state of one run. ``run()`` does everything."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo | None = None, resume: bool = False):
        self.cfg, self.info = cfg, info or D.DistInfo()
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.info.enabled:
            self.device = torch.device("cuda", self.info.local_rank)
        self.run_dir = Path(cfg.run_dir)
        self._seed(cfg.seed)
        if cfg.deterministic:
            torch.use_deterministic_algorithms(True)
        self.data = DataFeed(cfg.data or None, cfg.vocab, self.info, progress=self.info.is_main)
        v = self.data.vocab
        p = preset(cfg.preset, vocab_size=v.lm_size, pad_id=v.pad_id)
        p.bert.vocab_size = v.size  # D also embeds MASK for its masked-LM pre-training
        p.bert.max_len = max(p.bert.max_len, cfg.segment_len + (cfg.prefix_len if cfg.disc_prefix else 0))
        self.gcfg, self.bcfg, self.ccfg = p.generator, p.bert, p.cnn
        # D pre-training crops cover every position D can be given (adversarial segments with the
        # prefix, the run's BERT in evaluation), not just the adversarial segment length.
        self.disc_len = cfg.disc_len or self.bcfg.max_len
        if cfg.disc == "bert" and cfg.freeze_layers > self.bcfg.n_layer:
            raise ValueError(f"--freeze-layers: must be <= D's {self.bcfg.n_layer} layers at --preset {cfg.preset}, "
                             f"got {cfg.freeze_layers}")
        if self.disc_len > self.bcfg.max_len:
            raise ValueError(f"--disc-len: must be <= D's positions ({self.bcfg.max_len}), got {self.disc_len}")
        self.gen = TransformerXL(self.gcfg).to(self.device)
        self.disc = self._make_disc().to(self.device)
        self.ppo = None
        if cfg.loss == "ppo_gp":
            classifier = self._make_disc().to(self.device)
            self.ppo = make_loss("ppo_gp", classifier, lr=cfg.ppo_lr, clip=cfg.ppo_clip,
                                 snapshot_every=cfg.ppo_snapshot_every)
        self.loss = self.ppo if self.ppo is not None else (make_loss(cfg.loss) if cfg.loss != "mle" else None)
        for m in self._models().values():
            D.broadcast_params(m, self.info)
        self.opt = {
            "g_mle": torch.optim.Adam(self.gen.parameters(), lr=cfg.lr),
            "g_adv": torch.optim.Adam(self.gen.parameters(), lr=cfg.g_adv_lr),
            "d_pre": torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr),
        }
        self.sched = {"g_mle": inverse_sqrt_scheduler(self.opt["g_mle"], cfg.warmup),
                      "g_adv": inverse_sqrt_scheduler(self.opt["g_adv"], cfg.g_adv_warmup)}
        self.stage, self.stage_step, self.bad_steps = "mle", 0, 0
        self.history: dict = {"val_nll": []}
        # One MLE stream for stages 1 and 3, with its own generator: the MLE data does not depend on
        # what the adversarial steps draw.
        crop = cfg.mle_crop_segments if cfg.mle_crop_segments >= 0 else \
            4 * max(1, math.ceil(self.gcfg.mem_len / self.gcfg.tgt_len))
        self.stream = PieceStream(self.data.draw_piece, cfg.batch_size, self.gcfg.tgt_len, self.device,
                                  seed=[cfg.seed, self.info.rank, 1], eos_id=self.data.vocab.eos_id,
                                  crop_segments=crop)
        self.log = None
        self.initialized_from = None
        if resume and (cfg.init_from == "" or latest_checkpoint(self.run_dir) is not None):
            self._resume()
        elif cfg.init_from:
            self._init_from(cfg.init_from)

    # -- construction helpers -------------------------------------------------------------------
    def _seed(self, seed: int):
        seed = seed + self.info.rank * 1000003  # different crops per rank, same init via broadcast
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _make_disc(self):
        return BertDiscriminator(self.bcfg) if self.cfg.disc == "bert" else CNNDiscriminator(self.ccfg)

    def _models(self) -> dict:
        m = {"gen": self.gen, "disc": self.disc}
        if self.ppo is not None:
            m["ppo_classifier"] = self.ppo.classifier
        return m

    def _adv_optimizers(self):
        """D's adversarial optimizer, built once the frozen layers are known (stage 3)."""
        if "d_adv" not in self.opt:
            if isinstance(self.disc, BertDiscriminator):
                self.disc.freeze(self.cfg.freeze_layers, embeddings=self.cfg.freeze_embeddings)
            self.opt["d_adv"] = torch.optim.AdamW([p for p in self.disc.parameters() if p.requires_grad],
                                                  lr=self.cfg.d_lr)
        return self.opt["d_adv"]

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, pin: bool = False):
        self.stream.reset()  # rows and memory restart at checkpoints in every run: resumes match
        if not self.info.is_main:
            return
        optims = dict(self.opt)
        models = self._models()
        if self.ppo is not None:
            optims["ppo"] = self.ppo.opt
            models["ppo_snapshot"] = self.ppo.snapshot
        extra = {"stage": self.stage, "stage_step": self.stage_step, "bad_steps": self.bad_steps,
                 "history": self.history, "ppo_steps": self.ppo.steps if self.ppo else 0,
                 "mle_stream": self.stream.state_dict()}
        configs = {"generator": self.gcfg.to_dict(), "bert": self.bcfg.to_dict(), "cnn": self.ccfg.to_dict(),
                   "train": self.cfg.__dict__, "vocab": self.data.vocab.preset}
        save_checkpoint(self.run_dir, self.global_step, "run", models, optims, self.sched, configs, extra,
                        pin=pin)

    def plan(self) -> list[tuple[str, int]]:
        """The stages this run goes through, with their step counts."""
        steps = {"mle": self.cfg.mle_steps, "disc": self.cfg.disc_steps, "gan": self.cfg.gan_steps}
        return [(name, steps[name]) for name in stage_names(self.cfg.loss, self.cfg.disc, self.cfg.init_from)]

    @property
    def global_step(self) -> int:
        """Steps over every planned stage so far (the checkpoint's step number)."""
        base = 0
        for name, steps in self.plan():
            if name == self.stage:
                return base + self.stage_step
            base += steps
        return base

    def _resume(self):
        path = latest_checkpoint(self.run_dir)
        if path is None:
            raise FileNotFoundError(f"--resume: {self.run_dir} holds no complete checkpoint")
        ck = load_checkpoint(path, kind="run", map_location=self.device)
        ex = ck.extra
        self.stage, self.stage_step, self.bad_steps = ex["stage"], ex["stage_step"], ex["bad_steps"]
        self.history = ex["history"]
        if "mle_stream" in ex:
            self.stream.load_state_dict(ex["mle_stream"])
        if self.stage in ("gan", "done"):
            self._adv_optimizers()
        for name, m in self._models().items():
            m.load_state_dict(ck.models[name])
        if self.ppo is not None:
            self.ppo.snapshot.load_state_dict(ck.models["ppo_snapshot"])
            self.ppo.steps = ex["ppo_steps"]
            self.ppo.opt.load_state_dict(ck.optimizers["ppo"])
        for name, opt in self.opt.items():
            if name in ck.optimizers:
                opt.load_state_dict(ck.optimizers[name])
        for name, s in self.sched.items():
            s.load_state_dict(ck.meta["schedulers"][name])
        ck.restore_rng()
        if self.info.enabled:  # restored RNG is rank 0's; keep ranks drawing different crops
            self._seed(self.cfg.seed + self.global_step)
        logger.info("resumed %s at stage %s step %d", path, self.stage, self.stage_step)

    def _init_from(self, path):
        """Take the pre-trained models of another run; skip the pre-training stages it finished."""
        ck = load_checkpoint(pretrained_checkpoint(path), kind="run", map_location=self.device)
        theirs = ck.configs
        finished = [s for s in _finished_stages(ck.meta) if s in ("mle", "disc")]
        problems = []
        if theirs.get("vocab") != self.data.vocab.preset:
            problems.append(f"its vocabulary is {theirs.get('vocab')!r}, this run's {self.data.vocab.preset!r} "
                            "(--vocab)")
        problems.append(_config_mismatch("generator", theirs.get("generator", {}), self.gcfg.to_dict()))
        take_disc = "disc" in finished and self.cfg.disc == "bert" and "disc" in ck.models
        if take_disc:
            problems.append(_config_mismatch("BERT discriminator", theirs.get("bert", {}), self.bcfg.to_dict()))
        problems = [p for p in problems if p]
        if problems:
            raise CheckpointError(f"--init-from {ck.path}: {'; '.join(problems)}. Use the same --preset, "
                                  "--vocab and --segment-len as that run")
        self.gen.load_state_dict(ck.models["gen"])
        if "g_mle" in ck.optimizers:
            self.opt["g_mle"].load_state_dict(ck.optimizers["g_mle"])
            self.sched["g_mle"].load_state_dict(ck.meta["schedulers"]["g_mle"])
        if take_disc:
            self.disc.load_state_dict(ck.models["disc"])
        else:
            finished = [s for s in finished if s != "disc"]
        self.history = {"val_nll": [list(x) for x in ck.extra.get("history", {}).get("val_nll", [])]}
        todo = [name for name, _ in self.plan() if name not in finished]
        self.stage, self.stage_step = (todo[0] if todo else "done"), 0
        self.initialized_from = str(ck.path)
        logger.info("initialized from %s (finished there: %s); starting at stage %s", ck.path,
                    ", ".join(finished), self.stage)

    # -- one guarded update -------------------------------------------------------------------------
    def _apply(self, loss_value: float, model, opt, sched=None) -> bool:
        """Sync gradients, check finiteness everywhere, clip and step; skip on NaN/inf."""
        ok = D.all_true(math.isfinite(loss_value), self.info, self.device)
        if ok:
            D.sync_grads(model, self.info)
            gn = torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.grad is not None], self.cfg.clip)
            ok = D.all_true(bool(torch.isfinite(gn)), self.info, self.device)
        if ok:
            opt.step()
            if sched is not None:
                sched.step()
            self.bad_steps = 0
        else:
            self.bad_steps += 1
            logger.warning("non-finite loss or gradient at %s step %d: update skipped (%d in a row)",
                           self.stage, self.stage_step, self.bad_steps)
            if self.bad_steps >= self.cfg.max_bad_steps:
                raise TrainingDiverged(
                    f"{self.bad_steps} consecutive non-finite steps in stage {self.stage!r} (--max-bad-steps "
                    f"{self.cfg.max_bad_steps}); checkpoints in {self.run_dir / 'checkpoints'} are intact")
        opt.zero_grad(set_to_none=True)
        return ok

    # -- stages ---------------------------------------------------------------------------------------
    def run(self) -> dict:
        """Run every remaining stage, then write samples and the summary; returns the summary."""
        if self.info.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            (self.run_dir / "config.json").write_text(json.dumps(self.cfg.__dict__, indent=2))
            self.log = ScalarLog(self.run_dir / "logs")
        if self.initialized_from is not None:
            self.save(pin=True)  # this run's own copy of its starting point: --resume works from here
            self.initialized_from = None
        plan = self.plan()
        run_stage = {"mle": self._mle_stage, "disc": self._disc_stage, "gan": self._gan_stage}
        times = {}
        for i, (name, steps) in enumerate(plan):
            if STAGES.index(self.stage) > STAGES.index(name):
                continue
            self.stage = name
            t0 = time.time()
            run_stage[name](steps)
            times[name] = time.time() - t0
            self.stage, self.stage_step = (plan[i + 1][0] if i + 1 < len(plan) else "done"), 0
            self.save(pin=name in ("mle", "disc"))  # pre-trained models stay for --init-from
        summary = self._finish(times)
        if self.log is not None:
            self.log.close()
        return summary

    def _bar(self, total, desc):
        # a bar on a terminal, a plain line every 30 s in a log file (tgan.progress)
        return progress(total=total, initial=self.stage_step, desc=desc, unit="step",
                        disable=not self.info.is_main, dynamic_ncols=True, mininterval=1.0)

    def _mle_stage(self, steps: int):
        cfg = self.cfg
        self.gen.train()
        if self.stage_step == 0 and not self.history["val_nll"]:
            self._validate()  # the curve starts from the untrained model
        bar = self._bar(steps, "stage 1/3 MLE")
        t0, toks = time.time(), 0
        while self.stage_step < steps:
            loss, n = mle_step(self.gen, self.stream, self.gcfg.pad_id)
            loss.backward()
            lv = loss.item()  # the one host sync of the step
            self._apply(lv, self.gen, self.opt["g_mle"], self.sched["g_mle"])
            self.stage_step += 1
            toks += n * self.info.world_size
            bar.update(1)
            if self.stage_step % cfg.log_every == 0:
                tps = toks / max(time.time() - t0, 1e-9)
                bar.set_postfix(loss=f"{lv:.3f}", tok_s=f"{tps:.0f}")
                self._log({"loss": lv, "tokens_per_s": tps, "lr": self.sched["g_mle"].get_last_lr()[0]}, "mle/")
            if cfg.eval_every and self.stage_step % cfg.eval_every == 0 and self.stage_step < steps:
                self._validate()
            if self.stage_step % cfg.checkpoint_every == 0 and self.stage_step < steps:
                self.save()
        bar.close()
        self._validate()

    def _validate(self):
        nll = evaluate_nll(self.gen, self.data.chunks("validation", self.cfg.eval_len, self.cfg.eval_chunks),
                           self.gcfg.tgt_len, self.gcfg.eval_mem_len, batch_size=self.cfg.batch_size,
                           device=self.device)
        self.history["val_nll"].append([self.global_step, nll])
        self._log({"val_nll": nll}, "eval/")
        logger.info("step %d: validation NLL %.4f nats/token (uniform %.4f)", self.global_step, nll,
                    uniform_nll(self.gcfg.vocab_size))
        return nll

    def _disc_stage(self, steps: int):
        cfg, v = self.cfg, self.data.vocab
        self.disc.train()
        events = (v.note_on_offset, v.mask_id)  # random replacements drawn from the events
        bar = self._bar(steps, "stage 2/3 D pre-training")
        while self.stage_step < steps:
            # A generator per step, keyed by (seed, step, rank): a resumed run masks identically.
            rng = np.random.default_rng([cfg.seed, self.stage_step, self.info.rank])
            batch = self.data.sample(cfg.batch_size, self.disc_len).to(self.device)
            loss, acc = mlm_step(self.disc, batch, cfg.mask, v.mask_id, events, rng,
                                 special=(v.pad_id, v.eos_id))
            loss.backward()
            lv = loss.item()
            self._apply(lv, self.disc, self.opt["d_pre"])
            self.stage_step += 1
            bar.update(1)
            if self.stage_step % cfg.log_every == 0:
                bar.set_postfix(mlm=f"{lv:.3f}", acc=f"{acc:.2f}")
                self._log({"mlm_loss": lv, "mlm_acc": acc}, "disc/")
            if self.stage_step % cfg.checkpoint_every == 0 and self.stage_step < steps:
                self.save()
        bar.close()

    def _gan_stage(self, steps: int):
        cfg = self.cfg
        mle_only = self.loss is None  # the MLE baseline: the adversarial stage's iterations, MLE steps only
        d_opt = None if mle_only else self._adv_optimizers()
        joint = cfg.gen_update == "joint"
        if not mle_only and cfg.prefix_len + cfg.rollout_len > self.data.longest_piece:
            logger.info("adversarial crops (%d tokens) are longer than every training piece (at most %d): "
                        "they join pieces behind EOS, never padded", cfg.prefix_len + cfg.rollout_len,
                        self.data.longest_piece)
        self.gen.train()
        self.disc.train()
        bar = self._bar(steps, "stage 2/2 MLE continued" if mle_only else f"stage 3/3 adversarial ({cfg.loss})")
        t0, toks, last_adv = time.time(), 0, {}
        while self.stage_step < steps:
            it = self.stage_step
            adv = not mle_only and it >= cfg.gan_start and (it - cfg.gan_start) % cfg.gan_every == 0
            loss, n = mle_step(self.gen, self.stream, self.gcfg.pad_id)
            loss.backward()
            stats = {"mle_loss": loss.item()}
            if not (adv and joint):
                self._apply(stats["mle_loss"], self.gen, self.opt["g_mle"], self.sched["g_mle"])
            if adv:
                beta = gumbel_beta(it, steps, cfg.beta_max)
                stats.update(self._adversarial_step(d_opt, beta))
                if joint:  # Equation 1: one update on L_mle + lambda·L_gen, so lambda trades the terms
                    self._apply(stats["mle_loss"] + cfg.gen_weight * stats["g_adv"], self.gen,
                                self.opt["g_mle"], self.sched["g_mle"])
                else:  # the released code: L_gen stepped alone by its own Adam (lambda has no effect)
                    self._apply(cfg.gen_weight * stats["g_adv"], self.gen, self.opt["g_adv"], self.sched["g_adv"])
                toks += cfg.batch_size * cfg.rollout_len * self.info.world_size
                last_adv = stats
            self.stage_step += 1
            bar.update(1)
            if self.stage_step % cfg.log_every == 0 or "g_adv" in stats:
                rollout_tps = toks / max(time.time() - t0, 1e-9)
                adv_ = {"d": f"{last_adv['d_loss']:.3f}", "g": f"{last_adv['g_adv']:.3f}"} if last_adv else {}
                bar.set_postfix(mle=f"{stats['mle_loss']:.3f}", **adv_, rollout_tok_s=f"{rollout_tps:.0f}")
                self._log({**stats, "rollout_tokens_per_s": rollout_tps}, "gan/")
            if self.stage_step % cfg.checkpoint_every == 0 and self.stage_step < steps:
                self.save()
        bar.close()
        self._validate()

    def _adversarial_step(self, d_opt, beta: float) -> dict:
        """One D step (and PPO's classifier D' step) on a rollout without gradient, then the
        generator's adversarial gradient lambda·L_gen accumulated into G's .grad; the caller steps G."""
        cfg = self.cfg
        stats = {"beta": beta}
        real = self.data.sample(cfg.batch_size, cfg.prefix_len + cfg.rollout_len).to(self.device)
        fake = sample_fakes(self.gen, real, cfg.prefix_len, cfg.rollout_len, cfg.segment_len, beta)
        stats["d_loss"], stats["d_real"], stats["d_fake"] = discriminator_step(
            self.disc, self.loss, real, fake, cfg.segment_len, cfg.gp_weight, cfg.prefix_len, cfg.disc_prefix)
        self._apply(stats["d_loss"], self.disc, d_opt)
        if self.ppo is not None:  # D' sees every segment, as D does
            S = cfg.segment_len
            pairs = [disc_inputs(real, fake[:, s * S: (s + 1) * S], s, cfg.prefix_len, S, cfg.disc_prefix)
                     for s in range(cfg.rollout_len // S)]
            stats["ppo_cls"] = self.ppo.classifier_step(pairs, sync=lambda m: D.sync_grads(m, self.info))
        stats["g_adv"] = generator_adversarial_step(self.gen, self.disc, self.loss, real, cfg.prefix_len,
                                                    cfg.rollout_len, cfg.segment_len, beta, weight=cfg.gen_weight,
                                                    disc_prefix=cfg.disc_prefix, grad_segments=cfg.mem_grad_segments)
        self.disc.zero_grad(set_to_none=True)
        if self.ppo is not None:
            self.ppo.classifier.zero_grad(set_to_none=True)
        return stats

    def _log(self, values: dict, prefix: str):
        if self.log is not None:
            self.log.scalars(self.global_step, values, prefix)

    # -- samples and summary ------------------------------------------------------------------------
    def _finish(self, times: dict) -> dict:
        from tgan.gan.report import write_samples_and_summary

        if not self.info.is_main:
            return {}
        return write_samples_and_summary(self, times)
