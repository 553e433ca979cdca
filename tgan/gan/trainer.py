"""The stage runner behind ``python -m tgan.train``.

Stages, in order, each skipped when the run directory's checkpoint says it is done:
  1. ``mle``:   MLE pre-training of G (segment recurrence, Adam + inverse-sqrt warm-up);
  2. ``disc``:  masked-LM pre-training of the BERT D on the same data (span masking by default);
  3. ``dwarm``: the D warm-up: D (and D') trained against the frozen G's samples until the
                held-out AUC reaches ``d_warmup_auc``;
  4. ``gan``:   the adversarial stage: an MLE step every iteration, and from ``gan_start``, every
                ``gan_every`` iterations, ``Trainer.adversarial_iteration`` instead (Equation 1:
                D's steps, L_mle, the rollout and L_gen, one update of G). With ``--loss mle`` and
                ``--init-from`` it is the MLE baseline at equal compute: the same ``gan_steps``
                iterations (or ``--mle-seconds`` of wall-clock), each its MLE step and nothing else.
Then samples (unconditional and primed) are written as MIDI and a metrics summary as JSON. Which
stages run, checkpoints, ``--resume`` and ``--init-from`` are ``tgan.gan.run_state``'s.

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
from tgan.gan.disc_eval import AUC_INFORMATIVE, HeldOutProbe
from tgan.gan.losses import make_loss
from tgan.gan.mle import PieceStream, evaluate_nll, mle_step, uniform_nll
from tgan.gan.pretrain import mlm_step
from tgan.gan.run_state import STAGES, global_step, init_from_run, plan, resume_run, save_run
from tgan.ops import triton_compiles, watch_triton_compiles
from tgan.gan.rollout import disc_inputs, discriminator_step, generator_adversarial_step, sample_fakes
from tgan.gan.schedule import gumbel_beta, inverse_sqrt_scheduler
from tgan.gan.tblog import ScalarLog
from tgan.model import BertDiscriminator, CNNDiscriminator, TransformerXL, preset
from tgan.model.checkpoint import latest_checkpoint

logger = logging.getLogger(__name__)

class TrainingDiverged(RuntimeError):
    """Too many consecutive non-finite losses."""



class Trainer:
    """Owns the models, optimizers and loop state of one run. ``run()`` does everything."""

    def __init__(self, cfg: TrainConfig, info: D.DistInfo | None = None, resume: bool = False):
        cfg.validate()  # every check of the configuration (ValueError naming the flag)
        self.cfg, self.info = cfg, info or D.DistInfo()
        self.device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
        if self.device.type == "cuda" and self.info.enabled:
            self.device = torch.device("cuda", self.info.local_rank)
        self.run_dir = Path(cfg.run_dir)
        self.seed_rngs(cfg.seed)
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
        self.gen = TransformerXL(self.gcfg).to(self.device)
        self.disc = self._make_disc().to(self.device)
        self.ppo = None
        if cfg.loss == "ppo_gp":
            classifier = self._make_disc().to(self.device)
            self.ppo = make_loss("ppo_gp", classifier, lr=cfg.ppo_lr, clip=cfg.ppo_clip,
                                 snapshot_every=cfg.ppo_snapshot_every)
        self.loss = self.ppo if self.ppo is not None else (make_loss(cfg.loss) if cfg.loss != "mle" else None)
        for m in self.models().values():
            D.broadcast_params(m, self.info)
        self.opt = {
            "g_mle": torch.optim.Adam(self.gen.parameters(), lr=cfg.lr),
            "g_adv": torch.optim.Adam(self.gen.parameters(), lr=cfg.g_adv_lr),
            "d_pre": torch.optim.AdamW(self.disc.parameters(), lr=cfg.disc_lr),
        }
        self.sched = {"g_mle": inverse_sqrt_scheduler(self.opt["g_mle"], cfg.warmup),
                      "g_adv": inverse_sqrt_scheduler(self.opt["g_adv"], cfg.g_adv_warmup)}
        self.stage, self.stage_step, self.bad_steps = "mle", 0, 0
        # wall-clock the current stage had spent when this run resumed it, and the time its clock
        # started in this process (a stage's time is carried across resumes: --mle-seconds)
        self.stage_seconds, self.stage_started = 0.0, time.time()
        self._probe = None  # the held-out AUC measurement, built when first used
        self._warned_at = None  # where the current stretch of uninformative-D points began
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
            resume_run(self)
        elif cfg.init_from:
            init_from_run(self, cfg.init_from)

    # -- construction helpers -------------------------------------------------------------------
    def seed_rngs(self, seed: int):
        """Seed Python's, numpy's and torch's RNGs for this rank."""
        seed = seed + self.info.rank * 1000003  # different crops per rank, same init via broadcast
        random.seed(seed)
        np.random.seed(seed % 2**32)
        torch.manual_seed(seed)

    def _make_disc(self):
        return BertDiscriminator(self.bcfg) if self.cfg.disc == "bert" else CNNDiscriminator(self.ccfg)

    def models(self) -> dict:
        m = {"gen": self.gen, "disc": self.disc}
        if self.ppo is not None:
            m["ppo_classifier"] = self.ppo.classifier
        return m

    def adv_optimizers(self):
        """D's adversarial optimizer, built once the frozen layers are known (stage 3)."""
        if "d_adv" not in self.opt:
            if isinstance(self.disc, BertDiscriminator):
                self.disc.freeze(self.cfg.freeze_layers, embeddings=self.cfg.freeze_embeddings)
            self.opt["d_adv"] = torch.optim.AdamW([p for p in self.disc.parameters() if p.requires_grad],
                                                  lr=self.cfg.d_lr)
        return self.opt["d_adv"]

    # -- checkpoints ------------------------------------------------------------------------------
    def save(self, pin: bool = False):
        save_run(self, pin)

    def plan(self) -> list[tuple[str, int]]:
        """The stages this run goes through, with their step counts."""
        return plan(self.cfg)

    @property
    def global_step(self) -> int:
        """Steps over every planned stage so far (the checkpoint's step number)."""
        return global_step(self.cfg, self.stage, self.stage_step)

    # -- one guarded update -------------------------------------------------------------------------
    def _apply(self, losses: float | tuple, model, opt, sched=None) -> bool:
        """Sync gradients, check finiteness everywhere (``losses``: the value or values whose
        gradients ``model`` holds, and the gradients), clip and step; skip on NaN/inf."""
        values = losses if isinstance(losses, tuple) else (losses,)
        ok = D.all_true(all(math.isfinite(v) for v in values), self.info, self.device)
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
        watch_triton_compiles()
        plan = self.plan()
        run_stage = {"mle": self._mle_stage, "disc": self._disc_stage, "dwarm": self._dwarm_stage,
                     "gan": self._gan_stage}
        times = {}
        for i, (name, steps) in enumerate(plan):
            if STAGES.index(self.stage) > STAGES.index(name):
                continue
            self.stage = name
            t0 = time.time()
            self.stage_started = t0 - self.stage_seconds
            c0 = triton_compiles()
            run_stage[name](steps)
            times[name] = time.time() - t0
            self._log_compiles(f"stage {name}", c0, times[name])
            self.stage_seconds = 0.0
            self.stage, self.stage_step = (plan[i + 1][0] if i + 1 < len(plan) else "done"), 0
            self.save(pin=name in ("mle", "disc", "dwarm"))  # pre-trained models stay for --init-from
        summary = self._finish(times)
        if self.log is not None:
            self.log.close()
        return summary

    def _log_compiles(self, what: str, before: dict, seconds: float) -> None:
        """Log the Triton compiles (count, time, loads from the disk cache) since ``before``."""
        now = triton_compiles()
        n, hits = now["compiled"] - before["compiled"], now["cache_hits"] - before["cache_hits"]
        if n or hits:
            logger.info("%s: %.1f s, of which %.1f s in %d Triton compiles (%d kernels loaded from the disk "
                        "cache)", what, seconds, now["seconds"] - before["seconds"], n, hits)

    def _label(self, name: str, what: str) -> str:
        names = [n for n, _ in self.plan()]
        return f"stage {names.index(name) + 1}/{len(names)} {what}"

    def _bar(self, total, desc):
        # a bar on a terminal, a plain line every 30 s in a log file (tgan.progress)
        return progress(total=total, initial=self.stage_step, desc=desc, unit="step",
                        disable=not self.info.is_main, dynamic_ncols=True, mininterval=1.0)

    def _mle_stage(self, steps: int):
        cfg = self.cfg
        self.gen.train()
        if self.stage_step == 0 and not self.history["val_nll"]:
            self._validate()  # the curve starts from the untrained model
        bar = self._bar(steps, self._label("mle", "MLE"))
        t0, toks = time.time(), 0
        while self.stage_step < steps:
            lv, n = self.mle_iteration()
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
        bar = self._bar(steps, self._label("disc", "D pre-training"))
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

    # -- the discriminator's held-out AUC, and the D warm-up -----------------------------------------
    def _critics(self) -> dict:
        c = {"d": self.disc}
        if self.ppo is not None:
            c["ppo"] = self.ppo.classifier
        return c

    def _measure_disc(self, phase: str, beta: float) -> dict:
        """Held-out AUC / accuracy of D (and D') now, appended to history["disc_auc"] and logged."""
        if self._probe is None:
            cfg = self.cfg
            self._probe = HeldOutProbe(self.data, cfg.d_eval_batch, cfg.prefix_len, cfg.rollout_len,
                                       cfg.segment_len, cfg.disc_prefix, cfg.seed, self.device)
        m = self._probe.measure(self.gen, self._critics(), beta, self.global_step)
        point = {"step": self.global_step, "stage": phase, "it": self.stage_step}
        for name, v in m.items():
            point.update({f"{name}_auc": v["auc"], f"{name}_acc": v["acc"]})
        self.history.setdefault("disc_auc", []).append(point)
        self._log({k: v for k, v in point.items() if k.endswith(("_auc", "_acc"))},
                  "dwarm/" if phase == "dwarm" else "gan/")
        return point

    @staticmethod
    def _auc_text(point: dict) -> str:
        return "/".join(f"{point[k]:.2f}" for k in ("d_auc", "ppo_auc") if k in point)

    def _critic_updates(self, d_opt, beta: float, count: int) -> tuple[dict, torch.Tensor]:
        """``count`` D steps (and as many of PPO's D'), each on a fresh rollout without gradient and
        a fresh real batch. Returns the mean statistics and the last real batch."""
        cfg, S = self.cfg, self.cfg.segment_len
        sums: dict = {}
        for _ in range(count):
            real = self.data.sample(cfg.batch_size, cfg.prefix_len + cfg.rollout_len).to(self.device)
            fake = sample_fakes(self.gen, real, cfg.prefix_len, cfg.rollout_len, S, beta)
            st = dict(zip(("d_loss", "d_real", "d_fake"), discriminator_step(
                self.disc, self.loss, real, fake, S, cfg.gp_weight, cfg.prefix_len, cfg.disc_prefix)))
            self._apply(st["d_loss"], self.disc, d_opt)
            if self.ppo is not None:  # D' sees every segment, as D does
                pairs = [disc_inputs(real, fake[:, s * S: (s + 1) * S], s, cfg.prefix_len, S, cfg.disc_prefix)
                         for s in range(cfg.rollout_len // S)]
                st["ppo_cls"] = self.ppo.classifier_step(pairs, sync=lambda m: D.sync_grads(m, self.info))
            for k, v in st.items():
                sums[k] = sums.get(k, 0.0) + v / count
        return sums, real

    def _dwarm_stage(self, steps: int):
        """D warm-up: D (and D') trained against the frozen G's samples until the held-out AUC of
        every critic reaches ``d_warmup_auc`` or ``steps`` steps have run. G does not change, so a
        generator update never follows a discriminator that has not yet learned to tell."""
        cfg = self.cfg
        d_opt = self.adv_optimizers()
        beta = gumbel_beta(0, cfg.gan_steps, cfg.beta_max)  # the first adversarial iteration's
        self.gen.train()  # the rollouts' own setting: D learns the samples the stage will show it
        self.disc.train()
        bar = self._bar(steps, self._label("dwarm", "D warm-up"))
        point = self._measure_disc("dwarm", beta) if self.stage_step == 0 else \
            (self.history.get("disc_auc") or [{}])[-1]
        keys = ("d_auc", "ppo_auc") if self.ppo is not None else ("d_auc",)
        reached = lambda p: all(p.get(k, 0.0) >= cfg.d_warmup_auc for k in keys)  # noqa: E731
        while self.stage_step < steps and not D.all_true(reached(point), self.info, self.device):
            stats, _ = self._critic_updates(d_opt, beta, 1)
            self.stage_step += 1
            bar.update(1)
            if self.stage_step % cfg.d_warmup_eval_every == 0 or self.stage_step == steps:
                point = self._measure_disc("dwarm", beta)
                bar.set_postfix(auc=self._auc_text(point), d=f"{stats['d_loss']:.3f}")
            if self.stage_step % cfg.log_every == 0:
                self._log(stats, "dwarm/")
            if self.stage_step % cfg.checkpoint_every == 0 and self.stage_step < steps:
                self.save()
        bar.close()
        verdict = "reached" if reached(point) else "did not reach"
        logger.info("D warm-up: held-out AUC %s after %d steps: %s the target %.2f (--d-warmup-auc)%s",
                    self._auc_text(point), self.stage_step, verdict, cfg.d_warmup_auc,
                    "" if reached(point) else "; raise --d-warmup-steps or --d-lr")

    def _gan_stage(self, steps: int):
        cfg = self.cfg
        mle_only = self.loss is None  # the MLE baseline: the adversarial stage's iterations, MLE steps only
        d_opt = None if mle_only else self.adv_optimizers()
        if not mle_only and cfg.prefix_len + cfg.rollout_len > self.data.longest_piece:
            logger.info("adversarial crops (%d tokens) are longer than every training piece (at most %d): "
                        "they join pieces behind EOS, never padded", cfg.prefix_len + cfg.rollout_len,
                        self.data.longest_piece)
        eval_every = cfg.d_eval_every or max(1, steps // 20)
        self.gen.train()
        self.disc.train()
        bar = self._bar(None if mle_only and cfg.mle_seconds else steps,
                        self._label("gan", "MLE continued" if mle_only else f"adversarial ({cfg.loss})"))
        t0, toks, last_adv = time.time(), 0, {}
        auc = None
        # the equal-time MLE baseline runs for a wall-clock budget (the time a resumed run had
        # already spent is carried in the checkpoint) instead of a count of iterations
        budget = cfg.mle_seconds if mle_only else 0.0
        spent = lambda: time.time() - self.stage_started  # noqa: E731
        if budget:
            logger.info("MLE continues for %.0f s of wall-clock (--mle-seconds), %.0f s done", budget,
                        self.stage_seconds)
        if not mle_only and self.stage_step == 0 and steps > 0:
            auc = self._measure_disc("gan", gumbel_beta(0, steps, cfg.beta_max))
        while (spent() < budget) if budget else (self.stage_step < steps):
            it = self.stage_step
            adv = not mle_only and it >= cfg.gan_start and (it - cfg.gan_start) % cfg.gan_every == 0
            if adv:
                first = not last_adv
                c0, ta = triton_compiles(), time.time()
                stats = self.adversarial_iteration(d_opt, gumbel_beta(it, steps, cfg.beta_max))
                toks += cfg.batch_size * cfg.rollout_len * self.info.world_size
                last_adv = stats
                if first:
                    self._log_compiles("first adversarial iteration", c0, time.time() - ta)
            else:
                stats = {"mle_loss": self.mle_iteration()[0]}
            self.stage_step += 1
            bar.update(1)
            if not mle_only and (self.stage_step % eval_every == 0 or self.stage_step == steps):
                auc = self._measure_disc("gan", gumbel_beta(self.stage_step, steps, cfg.beta_max))
                self._warn_uninformative(steps)
            if self.stage_step % cfg.log_every == 0 or "g_adv" in stats:
                rollout_tps = toks / max(time.time() - t0, 1e-9)
                adv_ = {"d": f"{last_adv['d_loss']:.3f}", "g": f"{last_adv['g_adv']:.3f}"} if last_adv else {}
                if auc is not None:
                    adv_["auc"] = self._auc_text(auc)
                bar.set_postfix(mle=f"{stats['mle_loss']:.3f}", **adv_, rollout_tok_s=f"{rollout_tps:.0f}")
                self._log({**stats, "rollout_tokens_per_s": rollout_tps}, "gan/")
            if self.stage_step % cfg.checkpoint_every == 0 and (budget or self.stage_step < steps):
                self.save()
        bar.close()
        if budget:
            logger.info("MLE continued for %d iterations in %.0f s (--mle-seconds %.0f)", self.stage_step, spent(),
                        budget)
        self._validate()

    def _warn_uninformative(self, steps: int):
        """Say so, once per stretch, when D's held-out AUC has stayed below AUC_INFORMATIVE for a
        quarter of the stage: the generator is then trained on an uninformative discriminator."""
        points = [p for p in self.history.get("disc_auc", []) if p["stage"] == "gan"]
        run = []
        for p in reversed(points):
            if p["d_auc"] >= AUC_INFORMATIVE:
                break
            run.append(p)
        if len(run) < 2 or run[0]["it"] - run[-1]["it"] < steps / 4:
            self._warned_at = None
            return
        if self._warned_at is None:
            self._warned_at = run[-1]["it"]
            logger.warning("D's held-out AUC has stayed below %.2f since iteration %d (%d of %d iterations, last "
                           "%.2f): the generator is being trained on an uninformative discriminator. Raise "
                           "--d-lr or --d-steps, or warm D up longer (--d-warmup-steps, --d-warmup-auc)",
                           AUC_INFORMATIVE, run[-1]["it"], run[0]["it"] - run[-1]["it"], steps, run[0]["d_auc"])

    def mle_iteration(self, step: bool = True) -> tuple[float, int]:
        """L_mle of G on the next real batch, its gradient into .grad, and with ``step`` G's MLE
        update on it: (L_mle, tokens scored)."""
        loss, n = mle_step(self.gen, self.stream, self.gcfg.pad_id)
        loss.backward()
        mle_loss = loss.item()  # the one host sync of the step
        if step:
            self._apply(mle_loss, self.gen, self.opt["g_mle"], self.sched["g_mle"])
        return mle_loss, n

    def adversarial_iteration(self, d_opt, beta: float) -> dict:
        """One generator update of the adversarial stage: Equation 1, min_G L_mle + λ·L_gen.

        1. D's step(s): ``--d-steps`` updates of D (and of PPO-GP's classifier D') on real crops
           against rollouts of the current G drawn without gradient.
        2. L_mle: G's MLE loss on a real batch (segment recurrence); its gradient goes into .grad.
        3. The rollout and L_gen: G continues real priming prefixes with straight-through
           Gumbel-softmax samples at inverse temperature ``beta``; D scores each segment, and the
           gradient of λ·L_gen / n_segments is back-propagated segment by segment (TBPTT) into the
           same .grad. λ (``--gen-weight``) scales the gradient there and nowhere else.
        4. One update of G on that sum, ∇L_mle + λ·∇L_gen (``--gen-update joint``). With
           ``--gen-update separate`` (the released code) L_mle is stepped at 2. by its own Adam and
           λ·L_gen at 4. by another.
        Returns the iteration's statistics (losses, D's outputs, beta).
        """
        cfg = self.cfg
        joint = cfg.gen_update == "joint"
        # 1. D's step(s), against the G that 3. will roll out
        stats, real = self._critic_updates(d_opt, beta, cfg.d_steps)
        # 2. L_mle (stepped here only with --gen-update separate)
        mle_loss, _ = self.mle_iteration(step=not joint)
        # 3. the rollout, and λ·∇L_gen accumulated segment by segment
        gen_loss = generator_adversarial_step(self.gen, self.disc, self.loss, real, cfg.prefix_len, cfg.rollout_len,
                                              cfg.segment_len, beta, weight=cfg.gen_weight,
                                              disc_prefix=cfg.disc_prefix, grad_segments=cfg.mem_grad_segments)
        self.disc.zero_grad(set_to_none=True)  # D took gradients in 3. too; D is not updated there
        if self.ppo is not None:
            self.ppo.classifier.zero_grad(set_to_none=True)
        # 4. one update of G
        if joint:
            self._apply((mle_loss, gen_loss), self.gen, self.opt["g_mle"], self.sched["g_mle"])
        else:
            self._apply(gen_loss, self.gen, self.opt["g_adv"], self.sched["g_adv"])
        return {**stats, "mle_loss": mle_loss, "g_adv": gen_loss, "beta": beta}

    def _log(self, values: dict, prefix: str):
        if self.log is not None:
            self.log.scalars(self.global_step, values, prefix)

    # -- samples and summary ------------------------------------------------------------------------
    def _finish(self, times: dict) -> dict:
        from tgan.gan.report import write_samples_and_summary

        if not self.info.is_main:
            return {}
        return write_samples_and_summary(self, times)


def train(cfg: TrainConfig, resume: bool = False, info: D.DistInfo | None = None) -> dict:
    """Run the training ``cfg`` describes to its end (every remaining stage, the samples, the
    summary) in ``cfg.run_dir``; ``resume`` continues from its newest checkpoint. Returns the
    summary (``summary.json``). Raises ValueError for a bad configuration, DataError for bad data,
    CheckpointError or FileNotFoundError for a bad --init-from / --resume, TrainingDiverged."""
    return Trainer(cfg, info, resume=resume).run()
