"""The scorer: one BERT masked-LM, pre-trained once per data set, that computes CA and PLL for every
row of Table 1 (``python -m tgan.scorer`` trains it, ``python -m tgan.evaluate --scorer`` uses it).

A training run's own discriminator cannot serve: after adversarial training it has been tuned
against that run's fakes (while its MLM head, the CA feature and the PLL, never was), an MLE-only
run holds an untrained one, and D's pre-training sees only ``segment_len``-token crops, so the
position embeddings past them never get a gradient. The scorer is pre-trained with span masking on
crops of its full ``max_len``, so every position is trained.

A finished scorer is a folder holding ``scorer.safetensors`` (the BERT's weights) and
``scorer.json`` (its BertConfig, the training config, the vocabulary, the data set's identity
(``tgan.data.datasets.data_identity``: the cache key hashes every file), the final validation MLM
accuracy and the training time). While it trains, ``checkpoints/`` holds resumable checkpoints.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from tgan.gan.pretrain import mlm_step
from tgan.gan.schedule import apply_step, inverse_sqrt_scheduler, restore_step
from tgan.model import BertConfig, BertDiscriminator, preset
from tgan.model.bert import load_bert_folder
from tgan.model.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint, save_checkpoint
from tgan.model.masking import IGNORE, mask_batch

logger = logging.getLogger(__name__)

SCORER_WEIGHTS = "scorer.safetensors"
SCORER_META = "scorer.json"


@dataclass
class ScorerConfig:
    data: str = ""  # MAESTRO folder, folder of MIDI files, or '' for the bundled Bach corpus
    vocab: str = "maestro"  # event vocabulary: maestro | full (must match the runs it scores)
    preset: str = "tiny"  # BERT size: tiny | small | paper (tgan.model presets)
    max_len: int = 0  # positions (and crop length); 0 = the preset's max_len
    steps: int = 0  # training steps; 0 = the preset's (SCORER_STEPS)
    batch_size: int = 16  # crops per step
    lr: float = 5e-4  # AdamW peak learning rate
    warmup: int = 100  # inverse-sqrt warm-up steps
    weight_decay: float = 0.01  # AdamW decay of the weight matrices (not embeddings, biases, norms)
    mask: str = "span"  # span (SpanBERT, the paper) | token (plain MLM)
    val_every: int = 250  # steps between validation MLM accuracies
    val_chunks: int = 32  # validation chunks of max_len tokens scored (fixed masks)
    checkpoint_every: int = 250  # steps between resumable checkpoints
    log_every: int = 50  # steps between log lines (when stderr is not a terminal)
    seed: int = 0  # seed of the initialisation, the crops and the masks
    device: str = ""  # cpu | cuda ('' = cuda when available)

    def validate(self) -> None:
        """Raise ValueError naming the flag of the first bad value."""
        def bad(name, msg):
            raise ValueError(f"--{name.replace('_', '-')}: {msg}, got {getattr(self, name)!r}")

        if self.vocab not in ("maestro", "full"):
            bad("vocab", "must be maestro or full")
        if self.preset not in ("tiny", "small", "paper"):
            bad("preset", "must be tiny, small or paper")
        if self.mask not in ("span", "token"):
            bad("mask", "must be span or token")
        for n in ("batch_size", "val_every", "val_chunks", "checkpoint_every", "log_every"):
            if getattr(self, n) <= 0:
                bad(n, "must be > 0")
        for n in ("max_len", "steps", "warmup"):
            if getattr(self, n) < 0:
                bad(n, "must be >= 0")
        if not self.lr > 0:
            bad("lr", "must be > 0")
        if self.weight_decay < 0:
            bad("weight_decay", "must be >= 0")


# Steps per preset: tiny trains on the bundled corpus in a few minutes on 2 CPU cores.
SCORER_STEPS = {"tiny": 1000, "small": 20000, "paper": 100000}


def bert_config(cfg: ScorerConfig, vocab) -> BertConfig:
    """The scorer's BertConfig: the preset's, sized for ``vocab`` (MASK included)."""
    b = preset(cfg.preset, vocab_size=vocab.size, pad_id=vocab.pad_id).bert
    return b.replace(max_len=cfg.max_len) if cfg.max_len else b


def param_groups(bert, weight_decay: float) -> list[dict]:
    """AdamW parameter groups of a BERT: weight decay on the matrices only."""
    # No decay on embeddings, biases and norms: decay would move the rows of positions that get no
    # gradient, and the test that every position is trained must see gradients, not decay.
    decay = [p for n, p in bert.named_parameters() if p.dim() == 2 and not n.startswith(("word.", "position."))]
    rest = [p for n, p in bert.named_parameters() if not (p.dim() == 2 and not n.startswith(("word.", "position.")))]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


@torch.no_grad()
def mlm_accuracy(bert, chunks: list[torch.Tensor], vocab, mode: str, seed: int, batch_size: int,
                 device) -> float:
    """Masked-LM accuracy over the masked positions of ``chunks`` (each [max_len]), with masks
    drawn from ``seed`` so every evaluation sees the same ones."""
    was = bert.training
    bert.eval()
    rng = np.random.default_rng([seed, 7919])
    hit = total = 0
    for i in range(0, len(chunks), batch_size):
        batch = torch.stack(chunks[i: i + batch_size])
        inputs, labels = mask_batch(batch, mode, vocab.mask_id, (vocab.note_on_offset, vocab.mask_id), rng,
                                    special=(vocab.pad_id, vocab.eos_id))
        pred = bert.mlm_logits(inputs.to(device)).argmax(-1).cpu()
        m = labels != IGNORE
        hit += int((pred[m] == labels[m]).sum())
        total += int(m.sum())
    bert.train(was)
    return hit / max(total, 1)


def _bar(total: int, initial: int):
    from tgan.progress import progress

    # a bar on a terminal, a plain line every 30 s in a log file
    return progress(total=total, initial=initial, desc="scorer MLM", unit="step",
                    dynamic_ncols=True, mininterval=1.0)


def train_scorer(cfg: ScorerConfig, out, resume: bool = False, progress: bool = True) -> dict:
    """Pre-train a scorer into ``out`` (see the module docstring); returns its metadata.

    Resumes from ``out/checkpoints`` with ``resume``; without it ``out`` must hold neither a
    scorer nor checkpoints. Raises ValueError (bad config, or an ``out`` that does not fit),
    DataError (the data set).
    """
    from tgan.data.datasets import data_identity
    from tgan.gan.data_feed import DataFeed

    cfg.validate()
    out = Path(out)
    if not resume and ((out / SCORER_META).exists() or latest_checkpoint(out) is not None):
        raise ValueError(f"--out {out} already holds a scorer or its checkpoints: pass --resume to "
                         "continue it, or choose another --out")
    steps = cfg.steps or SCORER_STEPS[cfg.preset]
    device = torch.device(cfg.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    torch.manual_seed(cfg.seed)
    feed = DataFeed(cfg.data or None, cfg.vocab, progress=progress)
    v = feed.vocab
    identity = data_identity(cfg.data or None, cfg.vocab)
    bcfg = bert_config(cfg, v)
    bert = BertDiscriminator(bcfg).to(device)
    opt = torch.optim.AdamW(param_groups(bert, cfg.weight_decay), lr=cfg.lr)
    sched = inverse_sqrt_scheduler(opt, cfg.warmup)
    step, history, seconds = 0, [], 0.0
    configs = {"scorer": asdict(cfg), "bert": bcfg.to_dict(), "vocab": v.preset}
    if resume and latest_checkpoint(out) is not None:
        ck = load_checkpoint(out, kind="scorer", map_location=device)
        theirs = {k: ck.configs.get("scorer", {}).get(k) for k in ("data", "vocab", "preset", "max_len", "mask",
                                                                    "seed", "batch_size")}
        ours = {k: getattr(cfg, k) for k in theirs}
        if theirs != ours or ck.extra.get("data", {}).get("key") != identity["key"]:
            raise CheckpointError(f"--resume: the checkpoint {ck.path} was trained with {theirs} on "
                                  f"{ck.extra.get('data', {}).get('source')}; this run asks for {ours} on "
                                  f"{identity['source']}")
        step, history, seconds = restore_step(ck, bert, opt, sched)
        ck.restore_rng()
        logger.info("resumed the scorer at step %d of %d from %s", step, steps, ck.path)
    val = list(feed.chunks("validation", bcfg.max_len, cfg.val_chunks))

    def validate():
        acc = mlm_accuracy(bert, val, v, cfg.mask, cfg.seed, cfg.batch_size, device)
        history.append([step, acc])
        logger.info("scorer step %d: validation MLM accuracy %.4f", step, acc)
        return acc

    def save():
        extra = {"history": history, "data": identity, "seconds": seconds}
        save_checkpoint(out, step, "scorer", {"bert": bert}, {"opt": opt}, {"lr": sched}, configs, extra)

    bert.train()
    events = (v.note_on_offset, v.mask_id)  # random replacements drawn from the events
    t0, last = time.perf_counter(), None
    bar = _bar(steps, step) if progress else None
    while step < steps:
        batch = feed.sample(cfg.batch_size, bcfg.max_len).to(device)  # crops of the full max_len
        rng = np.random.default_rng([cfg.seed, step])  # per step: a resumed run masks identically
        loss, acc = mlm_step(bert, batch, cfg.mask, v.mask_id, events, rng, special=(v.pad_id, v.eos_id))
        apply_step(loss, bert, opt, sched)
        step += 1
        if bar is not None:
            bar.update(1)
            if step % 10 == 0:
                bar.set_postfix(mlm=f"{loss.item():.3f}", acc=f"{acc:.2f}")
        if step % cfg.log_every == 0 and (bar is None or bar.disable):
            logger.info("scorer step %d/%d: MLM loss %.3f, accuracy %.3f", step, steps, loss.item(), acc)
        if step % cfg.val_every == 0 and step < steps:
            last = validate()
        if step % cfg.checkpoint_every == 0 and step < steps:
            seconds += time.perf_counter() - t0
            t0 = time.perf_counter()
            save()
    if bar is not None:
        bar.close()
    last = validate()
    seconds += time.perf_counter() - t0
    save()
    meta = {"kind": "scorer", "bert": bcfg.to_dict(), "config": asdict(cfg), "vocab": v.preset,
            "data": identity, "steps": steps, "mlm_accuracy": last, "mlm_accuracy_history": history,
            "validation_chunks": len(val), "train_seconds": seconds}
    out.mkdir(parents=True, exist_ok=True)
    save_file({k: t.detach().cpu().contiguous() for k, t in bert.state_dict().items()}, str(out / SCORER_WEIGHTS))
    (out / SCORER_META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")  # last: marks done
    return meta


def is_scorer(path) -> bool:
    """Whether ``path`` is a finished scorer folder."""
    return (Path(path) / SCORER_META).is_file()


def load_scorer(path, device="cpu") -> tuple[BertDiscriminator, dict]:
    """(BERT in eval mode, metadata) of a finished scorer folder.

    Raises CheckpointError naming ``path`` when it is not a finished scorer or does not load.
    """
    p = Path(path)
    if not p.is_dir():
        raise CheckpointError(f"scorer {p} does not exist (train one with python -m tgan.scorer --out {p})")
    if not is_scorer(p):
        hint = (" (its training has not finished: continue it with python -m tgan.scorer --resume)"
                if latest_checkpoint(p) is not None else " (train one with python -m tgan.scorer)")
        raise CheckpointError(f"{p} is not a scorer: it holds no {SCORER_META}{hint}")
    try:
        bert, meta = load_bert_folder(p, SCORER_META, SCORER_WEIGHTS)
    except Exception as e:  # json, safetensors and load_state_dict raise their own types
        raise CheckpointError(f"scorer {p} does not load ({type(e).__name__}: {e})") from None
    return bert.to(device).eval(), meta


def config_fields() -> list[str]:
    """The ScorerConfig field names (the CLI makes one flag of each)."""
    return [f.name for f in fields(ScorerConfig)]


def checkpoint_scorer(ck, vocab, device="cpu"):
    """A run checkpoint's BERT discriminator as the scorer, where that is sound.

    Returns (bert or None, info or None, note): None and a note for a checkpoint without a BERT
    discriminator (a CNN). info = {"path", "data", "mlm_accuracy": None, "kind": "checkpoint",
    "trained_len"}: D's pre-training saw crops of ``segment_len`` tokens only, so blocks must not
    be longer. Raises CheckpointError naming the checkpoint when its BERT never finished masked-LM
    pre-training (an MLE-only run, a run stopped before) or was adversarially trained since.
    """
    from tgan.gan.run_state import finished_stages

    train = ck.configs.get("train", {})
    disc = train.get("disc", "bert" if "bert" in ck.configs else None)
    if disc != "bert" or "disc" not in ck.models or "bert" not in ck.configs:
        what = f"a {disc.upper()}" if disc else "no"
        return None, None, (f"PLL and CA: n/a, they need a scorer (--scorer) and the checkpoint holds {what} "
                            "discriminator.")
    finished = finished_stages(ck.meta)
    extra = ck.extra
    hint = "pass --scorer DIR (train one with python -m tgan.scorer) or --nll-only"
    if "disc" not in finished:
        raise CheckpointError(f"checkpoint {ck.path}: its BERT discriminator never finished masked-LM pre-training "
                              f"(loss {train.get('loss')!r}, stage {extra.get('stage')!r}); it cannot score PLL or "
                              f"CA: {hint}")
    if {"dwarm", "gan"} & set(finished) or (extra.get("stage") in ("dwarm", "gan") and extra.get("stage_step", 0) > 0):
        raise CheckpointError(f"checkpoint {ck.path}: its BERT discriminator was adversarially trained against this "
                              f"run's samples, which makes its PLL and CA incomparable with other rows: {hint} (or "
                              f"the checkpoint that ends D pre-training)")
    try:
        bert = BertDiscriminator(BertConfig.from_dict(ck.configs["bert"]))
        bert.load_state_dict(ck.models["disc"])
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ck.path}: the BERT discriminator does not load ({e})") from None
    if bert.cfg.vocab_size != vocab.size:
        raise CheckpointError(f"checkpoint {ck.path}: BERT vocab_size {bert.cfg.vocab_size} does not match the "
                              f"{vocab.preset!r} vocab ({vocab.size} ids)")
    trained = min(int(train.get("segment_len", bert.cfg.max_len)), bert.cfg.max_len)
    info = {"path": str(ck.path), "data": train.get("data") or "bach", "mlm_accuracy": None, "kind": "checkpoint",
            "trained_len": trained}
    note = (f"PLL and CA: the BERT discriminator of checkpoint {ck.path} (pre-trained, not adversarially trained; "
            f"no --scorer given); its pre-training saw {trained}-token crops, so blocks are at most {trained} "
            "tokens. A scorer (python -m tgan.scorer) scores runs alike whatever their stage.")
    return bert.to(device).eval(), info, note


def scorer_for(path, vocab, data, device="cpu"):
    """(bert, info, notes) of the scorer folder ``path`` for an evaluation in ``vocab`` against the
    data set ``data``: refused (CheckpointError naming it) when its vocabulary differs; a note and a
    warning when it was trained on another data set than ``data``."""
    from tgan.data.datasets import data_identity

    bert, meta = load_scorer(path, device)
    if meta.get("vocab") != vocab.preset or bert.cfg.vocab_size != vocab.size:
        raise CheckpointError(f"scorer {path} was trained on the {meta.get('vocab')!r} vocabulary, this evaluation "
                              f"uses {vocab.preset!r} (--vocab, or the checkpoint's); train a scorer with --vocab "
                              f"{vocab.preset}")
    info = {"path": str(path), "data": meta["data"]["source"], "mlm_accuracy": meta.get("mlm_accuracy"),
            "kind": "scorer", "trained_len": bert.cfg.max_len, "key": meta["data"].get("key")}
    notes = [f"PLL and CA: scorer {path} (trained on {meta['data']['source']}, validation MLM accuracy "
             f"{meta.get('mlm_accuracy', float('nan')):.3f}); the same scorer for every row."]
    here = data_identity(data, vocab.preset)
    if here["key"] != meta["data"].get("key"):
        msg = (f"the scorer {path} was trained on {meta['data']['source']}, not on the data evaluated here "
               f"({here['source']}; the data-set keys differ): its PLL and CA compare only with other "
               "evaluations by the same scorer")
        logger.warning(msg)
        notes.append("Warning: " + msg + ".")
    return bert, info, notes
