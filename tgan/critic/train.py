"""Training a critic for one generator: a BERT classifier of real windows against the generator's
own samples (noise-contrastive estimation; ``python -m tgan.critic``).

- Real: windows of ``window`` tokens of training pieces, each inside one piece (the piece closed
  by EOS, as a generated piece is), at a uniform start (``DataFeed.piece_windows``), not
  augmented unless ``augment``: a critic trained on augmented windows learns the augmentation
  rather than the data that the scorer compares with (docs/generation.md). Training crops would not do: they run on across EOS into the
  next piece, which generated windows never do, and a critic learns that tell first.
- Generated: windows at random offsets in a pool of the generator's samples (half unconditional,
  half continuing the openings of training pieces), drawn with the sampling settings the critic
  will select under, and redrawn every ``refresh`` steps. A sample is cut after its first EOS, as
  ``piece_windows`` cuts it when scoring.
- Equal numbers of both per step, binary cross-entropy: the logit then estimates
  log p_data / p_G of a window.
- Start: a masked-LM pre-trained BERT. ``--bert`` names one (a scorer folder, or a run whose BERT
  finished pre-training); by default the generator's own run's BERT where it has one, else one is
  pre-trained here (``OUT/mlm``, as ``python -m tgan.scorer`` trains the scorer).
- Measured every ``eval_every`` steps and at the end: ROC AUC of the logit on held-out windows
  (validation pieces cut as pieces are scored, against fresh samples that no training step saw),
  and on training windows against the current pool (the gap shows over-fitting).

Resumable from ``OUT/checkpoints``; the folder is finished when ``critic.json`` is written.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tgan.critic.model import CRITIC_META, Critic, CriticError, critic_logits, pad_rows, piece_windows, state_fingerprint

logger = logging.getLogger(__name__)

# Training steps per BERT preset when --steps is 0.
CRITIC_STEPS = {"tiny": 600, "small": 5000, "paper": 20000}


@dataclass
class CriticConfig:
    generator: str = ""  # the generator: a run directory, a checkpoint directory or a model folder
    data: str = ""  # data set of the real windows ('' = the generator's training data; 'bach' = bundled)
    bert: str = ""  # start from: a scorer folder or a run with a pre-trained BERT ('' = the generator's run's own, else pre-train one here)
    preset: str = ""  # BERT size when pre-trained here: tiny | small | paper ('' = the generator's preset)
    mlm_steps: int = 0  # masked-LM steps when pre-trained here (0 = the scorer's for the preset)
    window: int = 0  # tokens per window (0 = the BERT's max_len)
    steps: int = 0  # classifier training steps (0 = CRITIC_STEPS of the preset)
    batch_size: int = 16  # real windows per step (and as many generated)
    lr: float = 1e-4  # AdamW peak learning rate
    warmup: int = 50  # inverse-sqrt warm-up steps
    weight_decay: float = 0.01  # AdamW decay of the weight matrices
    pool: int = 64  # generated samples per pool
    sample_tokens: int = 1024  # tokens per generated sample (primer included)
    refresh: int = 100  # steps between fresh pools
    augment: int = 0  # 1 = transpose and stretch the real training windows as training crops are (0: the data as it is)
    primer_tokens: int = 50  # tokens of a training piece's opening that half the pool continues
    temperature: float = 0.95  # sampling settings of the generated samples (use the ones you will select with)
    top_k: int = 32
    top_p: float = 1.0
    eval_windows: int = 64  # held-out real windows (validation chunks) per measurement
    eval_samples: int = 16  # fresh generated samples per measurement
    eval_every: int = 200  # steps between held-out measurements
    checkpoint_every: int = 200  # steps between resumable checkpoints
    log_every: int = 50  # steps between log lines (when stderr is not a terminal)
    seed: int = 0  # seed of the crops, the pools and the pre-training
    device: str = ""  # cpu | cuda ('' = cuda when available)

    def validate(self) -> None:
        """Raise ValueError naming the flag of the first bad value."""
        def bad(name, msg):
            raise ValueError(f"--{name.replace('_', '-')}: {msg}, got {getattr(self, name)!r}")

        if not self.generator:
            bad("generator", "is required (a run directory, a checkpoint or a model folder)")
        if self.preset not in ("", "tiny", "small", "paper"):
            bad("preset", "must be tiny, small or paper")
        for n in ("batch_size", "pool", "sample_tokens", "refresh", "primer_tokens", "eval_windows",
                  "eval_samples", "eval_every", "checkpoint_every", "log_every"):
            if getattr(self, n) <= 0:
                bad(n, "must be > 0")
        if self.augment not in (0, 1):
            bad("augment", "must be 0 or 1")
        for n in ("mlm_steps", "window", "steps", "warmup", "top_k"):
            if getattr(self, n) < 0:
                bad(n, "must be >= 0")
        if self.window == 1:
            bad("window", "must be 0 (the BERT's max_len) or >= 2")
        for n in ("lr", "temperature"):
            if not getattr(self, n) > 0:
                bad(n, "must be > 0")
        if not 0 < self.top_p <= 1:
            bad("top_p", "must be in (0, 1]")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")
        if self.primer_tokens >= self.sample_tokens:
            bad("primer_tokens", f"must be smaller than --sample-tokens ({self.sample_tokens})")


def config_fields() -> list[str]:
    """The CriticConfig field names (the CLI makes one flag of each)."""
    return [f.name for f in fields(CriticConfig)]


def _seed(*parts: int) -> int:
    """A torch seed from integers (one stream per use and index)."""
    return int(np.random.SeedSequence(list(parts)).generate_state(1, np.uint64)[0] >> 1)


def generator_data(gen) -> str | None:
    """The training data of a loaded generator ('' for the bundled corpus), None when unknown."""
    info = gen.info
    if "data" in info:  # a run or a checkpoint
        return "" if info["data"] in ("", "bach", None) else info["data"]
    training = info.get("training") or {}
    if training.get("data_kind") == "bach":
        return ""
    return None


def _preset(gen) -> str:
    """The preset a loaded generator was trained with (tiny when it does not say)."""
    p = gen.info.get("preset") or (gen.info.get("training") or {}).get("preset")
    return p if p in CRITIC_STEPS else "tiny"


def _initial_bert(cfg: CriticConfig, gen, vocab, out: Path, feed_data: str, device):
    """(BertDiscriminator, {"kind", "path", "fingerprint"}) to start from (see the module docstring)."""
    from tgan.scorer.train import SCORER_STEPS, ScorerConfig, is_scorer, load_scorer, train_scorer
    from tgan.gan.run_state import finished_stages
    from tgan.model import BertConfig, BertDiscriminator
    from tgan.model.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint

    def from_run(path, strict: bool):
        try:
            ck = load_checkpoint(path, map_location="cpu")
        except CheckpointError as e:
            if strict:
                raise CriticError(f"--bert {path}: {e}") from None
            return None
        train = ck.configs.get("train", {})
        pretrained = "disc" in finished_stages(ck.meta) or bool(train.get("init_from"))
        if train.get("disc", "bert") != "bert" or "disc" not in ck.models or "bert" not in ck.configs or not pretrained:
            if strict:
                raise CriticError(f"--bert {path}: checkpoint {ck.path} holds no BERT that finished masked-LM "
                                  "pre-training")
            return None
        bert = BertDiscriminator(BertConfig.from_dict(ck.configs["bert"]))
        bert.load_state_dict(ck.models["disc"])
        return bert, {"kind": "run", "path": str(ck.path), "fingerprint": state_fingerprint(ck.models["disc"])}

    found = None
    if cfg.bert:
        if is_scorer(cfg.bert):
            bert, _ = load_scorer(cfg.bert)
            found = bert, {"kind": "scorer", "path": str(cfg.bert), "fingerprint": state_fingerprint(bert.state_dict())}
        else:
            found = from_run(cfg.bert, strict=True)
    elif "checkpoint" in gen.info:  # the generator is a run: its own BERT
        found = from_run(gen.info["checkpoint"], strict=False)
    if found is None:
        preset = cfg.preset or _preset(gen)
        mlm = out / "mlm"
        if not is_scorer(mlm):
            logger.info("pre-training the critic's BERT (masked LM, %s preset) into %s", preset, mlm)
            train_scorer(ScorerConfig(data=feed_data, vocab=vocab.preset, preset=preset,
                                      steps=cfg.mlm_steps or SCORER_STEPS[preset], seed=cfg.seed + 1,
                                      device=str(device)),
                         mlm, resume=latest_checkpoint(mlm) is not None, progress=True)
        bert, _ = load_scorer(mlm)
        found = bert, {"kind": "pretrained here", "path": str(mlm), "fingerprint": state_fingerprint(bert.state_dict())}
    bert, init = found
    if bert.cfg.vocab_size != vocab.size:
        raise CriticError(f"the BERT of {init['path']} has {bert.cfg.vocab_size} ids, the generator's "
                          f"{vocab.preset} vocabulary {vocab.size}")
    return bert.to(device), init


class _Pool:
    """Generated samples cut at their first EOS, drawn for one (seed, index)."""

    def __init__(self, gen, feed, cfg: CriticConfig, n: int, seed: int, split: str, device):
        from tgan.sampling import generate_tokens

        vocab = feed.vocab
        n_primed = n // 2
        rows = []
        common = dict(temperature=cfg.temperature, top_k=cfg.top_k, top_p=cfg.top_p, eos_id=vocab.eos_id,
                      device=device)
        if n - n_primed:
            rows += list(generate_tokens(gen.model, n - n_primed, cfg.sample_tokens, seed=seed, **common).cpu())
        if n_primed:
            rng = np.random.default_rng(seed)
            pieces = [feed.piece(split, i) for i in range(feed.num_pieces(split))]
            long_enough = [p for p in pieces if len(p) > cfg.primer_tokens] or pieces
            primers = [long_enough[int(rng.integers(len(long_enough)))][: cfg.primer_tokens] for _ in range(n_primed)]
            width = min(len(p) for p in primers)
            primer = torch.from_numpy(np.stack([p[:width] for p in primers]))
            rows += list(generate_tokens(gen.model, n_primed, cfg.sample_tokens, primer=primer, seed=seed + 1,
                                         **common).cpu())
        self.pieces = [piece_windows(r.numpy(), 10 ** 9, vocab.eos_id)[0] for r in rows]  # cut at EOS

    def windows(self, count: int, window: int, rng: np.random.Generator) -> list[np.ndarray]:
        """``count`` windows drawn as ``DataFeed.piece_windows`` draws real ones: a piece in
        proportion to its length, then a uniform start."""
        sizes = np.array([len(p) for p in self.pieces], dtype=np.float64)
        out = []
        for i in rng.choice(len(self.pieces), size=count, p=sizes / sizes.sum()):
            p = self.pieces[int(i)]
            start = int(rng.integers(len(p) - window + 1)) if len(p) > window else 0
            out.append(p[start: start + window])
        return out


@torch.no_grad()
def _logits(bert, windows: list[np.ndarray], pad_id: int, batch: int = 64) -> np.ndarray:
    was = bert.training
    bert.eval()
    out = []
    for s in range(0, len(windows), batch):
        part = windows[s: s + batch]
        x = pad_rows(part, max(len(w) for w in part), pad_id).to(next(bert.parameters()).device)
        out.append(critic_logits(bert, x).float().cpu().numpy())
    bert.train(was)
    return np.concatenate(out) if out else np.zeros(0)


def _bar(total: int, initial: int):
    from tgan.progress import progress

    return progress(total=total, initial=initial, desc="critic", unit="step", dynamic_ncols=True, mininterval=1.0)


def train_critic(cfg: CriticConfig, out, resume: bool = False, progress: bool = True) -> dict:
    """Train a critic for ``cfg.generator`` into ``out`` (see the module docstring); returns its
    metadata (``critic.json``). Resumes from ``out/checkpoints`` with ``resume``; without it
    ``out`` must hold neither a critic nor checkpoints. Raises ValueError (a bad config, an
    ``out`` that does not fit, a generator or BERT that does not load), DataError (the data)."""
    import tgan
    from tgan.data.datasets import data_identity
    from tgan.gan.disc_eval import roc_auc
    from tgan.gan.data_feed import DataFeed
    from tgan.gan.schedule import apply_step, inverse_sqrt_scheduler, restore_step
    from tgan.scorer.train import param_groups
    from tgan.model.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint

    cfg.validate()
    out = Path(out)
    if not resume and ((out / CRITIC_META).exists() or latest_checkpoint(out) is not None):
        raise ValueError(f"--out {out} already holds a critic or its checkpoints: pass --resume to continue it, "
                         "or choose another --out")
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gen = tgan.load(cfg.generator, device)
    fingerprint = gen.fingerprint
    data = cfg.data if cfg.data else generator_data(gen)
    if data is None:
        raise ValueError(f"--data: the generator {cfg.generator} does not say where its training data is "
                         f"(its config names {gen.info.get('training', {}).get('data')!r}); pass --data")
    data = "" if data == "bach" else data
    vocab = gen.vocab
    feed = DataFeed(data or None, vocab.preset, progress=progress)
    identity = data_identity(data or None, vocab.preset)
    bert, init = _initial_bert(cfg, gen, vocab, out, data, device)
    window = cfg.window or bert.cfg.max_len
    if window > bert.cfg.max_len:
        raise ValueError(f"--window {window} exceeds the BERT's max_len {bert.cfg.max_len}")
    steps = cfg.steps or CRITIC_STEPS[cfg.preset or _preset(gen)]
    opt = torch.optim.AdamW(param_groups(bert, cfg.weight_decay), lr=cfg.lr)
    sched = inverse_sqrt_scheduler(opt, cfg.warmup)
    step, history, seconds = 0, [], 0.0
    generator = {"source": str(gen.source), "fingerprint": fingerprint}
    configs = {"critic": asdict(cfg), "bert": bert.cfg.to_dict(), "vocab": vocab.preset}
    if resume and latest_checkpoint(out) is not None:
        ck = load_checkpoint(out, kind="critic", map_location=device)
        keys = ("data", "bert", "window", "augment", "batch_size", "pool", "sample_tokens", "refresh", "seed",
                "temperature", "top_k", "top_p")
        theirs = {k: ck.configs.get("critic", {}).get(k) for k in keys}
        ours = {k: getattr(cfg, k) for k in keys}
        if theirs != ours or ck.extra.get("generator", {}).get("fingerprint") != fingerprint:
            raise CheckpointError(f"--resume: the checkpoint {ck.path} was trained against "
                                  f"{ck.extra.get('generator', {}).get('source')} with {theirs}; this run asks "
                                  f"for {gen.source} with {ours}")
        step, history, seconds = restore_step(ck, bert, opt, sched)
        init = ck.extra["init"]
        logger.info("resumed the critic at step %d of %d from %s", step, steps, ck.path)
    split = feed.resolve_split("validation")
    pieces = [np.concatenate([feed.piece(split, i), [vocab.eos_id]]) for i in range(feed.num_pieces(split))]
    eval_real = [w for p in pieces for w in piece_windows(p, window, vocab.eos_id)]  # as pieces are scored
    eval_real = [eval_real[int(i)] for i in np.random.default_rng([cfg.seed, 6]).permutation(len(eval_real))
                 [: cfg.eval_windows]]
    eval_pool = _Pool(gen, feed, cfg, cfg.eval_samples, _seed(cfg.seed, 3), "validation", device)
    eval_fake = [w for p in eval_pool.pieces for w in piece_windows(p, window, vocab.eos_id)]
    pool, pool_index = None, -1

    def measure() -> dict:
        rng = np.random.default_rng([cfg.seed, 5, step])
        held = roc_auc(_logits(bert, eval_real, vocab.pad_id), _logits(bert, eval_fake, vocab.pad_id))
        real = feed.piece_windows(len(eval_real), window, rng, "train", bool(cfg.augment))
        train = roc_auc(_logits(bert, real, vocab.pad_id),
                        _logits(bert, pool.windows(len(eval_fake), window, rng), vocab.pad_id))
        history.append({"step": step, "held_out": held, "train": train})
        logger.info("critic step %d: AUC held out %.3f, on training windows %.3f", step, held, train)
        return history[-1]

    def save():
        extra = {"history": history, "data": identity, "seconds": seconds, "generator": generator, "init": init}
        save_checkpoint(out, step, "critic", {"bert": bert}, {"opt": opt}, {"lr": sched}, configs, extra)

    bert.train()
    bar = _bar(steps, step) if progress else None
    t0 = time.perf_counter()
    labels = torch.cat([torch.ones(cfg.batch_size), torch.zeros(cfg.batch_size)]).to(device)
    while step < steps:
        if step // cfg.refresh != pool_index:
            pool_index = step // cfg.refresh
            pool = _Pool(gen, feed, cfg, cfg.pool, _seed(cfg.seed, 1, pool_index), "train", device)
        rng = np.random.default_rng([cfg.seed, 2, step])  # per step: a resumed run draws identically
        real = feed.piece_windows(cfg.batch_size, window, rng, "train", bool(cfg.augment))
        x = pad_rows(real + pool.windows(cfg.batch_size, window, rng), window, vocab.pad_id)
        torch.manual_seed(_seed(cfg.seed, 4, step))  # dropout
        logits = critic_logits(bert, x.to(device))
        loss = F.binary_cross_entropy_with_logits(logits.float(), labels)
        apply_step(loss, bert, opt, sched)
        step += 1
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(bce=f"{loss.item():.3f}")
        if step % cfg.log_every == 0 and (bar is None or bar.disable):
            logger.info("critic step %d/%d: BCE %.3f", step, steps, loss.item())
        if step % cfg.eval_every == 0 and step < steps:
            auc = measure()
            if bar is not None:
                bar.set_postfix(bce=f"{loss.item():.3f}", auc=f"{auc['held_out']:.2f}")
        if step % cfg.checkpoint_every == 0 and step < steps:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save()
    if bar is not None:
        bar.close()
    if pool is None:  # resumed at the end: the last pool, for the training-window AUC
        pool = _Pool(gen, feed, cfg, cfg.pool, _seed(cfg.seed, 1, (steps - 1) // cfg.refresh), "train", device)
    last = measure()
    seconds += time.perf_counter() - t0
    save()
    meta = {"kind": "critic", "bert": bert.cfg.to_dict(), "window": window, "vocab": vocab.preset,
            "eos_id": vocab.eos_id, "pad_id": vocab.pad_id, "generator": generator, "data": identity,
            "init": init, "config": asdict(cfg), "steps": steps,
            "sampling": {"temperature": cfg.temperature, "top_k": cfg.top_k, "top_p": cfg.top_p,
                         "sample_tokens": cfg.sample_tokens},
            "auc": {"held_out": last["held_out"], "train": last["train"], "history": history,
                    "held_out_windows": {"real": len(eval_real), "generated": len(eval_fake)}},
            "train_seconds": seconds}
    Critic(bert, meta, out).save(out)
    return meta


def critic_summary(meta: dict) -> str:
    """One line: what the critic was trained against and how well it separates."""
    a = meta["auc"]
    return (f"critic of {meta['generator']['source']} ({meta['steps']} steps, window {meta['window']}, "
            f"started from {meta['init']['kind']} {meta['init']['path']}): held-out AUC {a['held_out']:.3f} "
            f"({a['held_out_windows']['real']} validation windows against {a['held_out_windows']['generated']} "
            f"windows of fresh samples), {a['train']:.3f} on training windows; {meta['train_seconds']:.0f} s")


def read_meta(folder) -> dict:
    return json.loads((Path(folder) / CRITIC_META).read_text(encoding="utf-8"))
