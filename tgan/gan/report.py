"""End of a training run: samples as MIDI (unconditional and primed) and a metrics summary."""
from __future__ import annotations

import json
import logging
import time

import numpy as np
import torch

from tgan.ops import triton_compiles
from tgan.sampling import generate_tokens

logger = logging.getLogger(__name__)

PRIMER_TOKENS = 50  # conditional samples continue this many real tokens (the paper's priming excerpt)


def _note_stats(token_rows, vocab) -> dict:
    """Mean note statistics (correct convention) of token sequences; {} when none has notes."""
    from tgan.data.events import decode
    from tgan.data.notes import Performance
    from tgan.metrics.evaluation import set_statistics

    pieces = [Performance(decode(row, vocab)[0]) for row in token_rows]
    if not any(p.notes for p in pieces):
        return {}
    return set_statistics(pieces)["correct"]["mean"]


def disc_auc_summary(points: list) -> dict:
    """``{"disc_auc": {...}}`` (and ``"ppo_auc"`` for PPO-GP's D') from the run's held-out AUC
    points: the last of the D warm-up (``warmup_end``, None without one), the adversarial stage's
    first and last points, their mean, and the share of them at or above AUC_INFORMATIVE; {}
    without points."""
    from tgan.gan.disc_eval import AUC_INFORMATIVE

    out = {}
    for key, name in (("d_auc", "disc_auc"), ("ppo_auc", "ppo_auc")):
        warm = [p[key] for p in points if p["stage"] == "dwarm" and key in p]
        gan = [p[key] for p in points if p["stage"] == "gan" and key in p]
        if not warm and not gan:
            continue
        out[name] = {"warmup_end": warm[-1] if warm else None, "first": gan[0] if gan else None,
                     "last": gan[-1] if gan else None, "mean": float(np.mean(gan)) if gan else None,
                     "informative_share": float(np.mean([a >= AUC_INFORMATIVE for a in gan])) if gan else None,
                     "points": len(gan)}
    if out:  # the whole curve, for plots along the stage: (stage, iteration, AUC of each critic)
        out["disc_auc_points"] = [{k: p[k] for k in ("stage", "it", "d_auc", "ppo_auc") if k in p} for p in points]
    return out


def write_samples_and_summary(trainer, times: dict) -> dict:
    """Write <run>/samples/*.mid and <run>/summary.json; returns the summary (with a 'printable' part)."""
    from tgan.data.events import tokens_to_midi

    cfg, vocab, run_dir = trainer.cfg, trainer.data.vocab, trainer.run_dir
    out = run_dir / "samples"
    out.mkdir(parents=True, exist_ok=True)
    gen, n, length = trainer.gen, cfg.sample_count, cfg.sample_len
    uncond = primed = torch.zeros(0, length, dtype=torch.long)
    gen_tps = None
    if n > 0:  # --sample-count 0: no samples
        t0 = time.time()
        uncond = generate_tokens(gen, n, length, temperature=cfg.temperature, top_k=cfg.top_k, eos_id=vocab.eos_id,
                                 seed=cfg.seed, device=trainer.device)
        gen_tps = uncond.numel() / (time.time() - t0)
        k = min(PRIMER_TOKENS, length // 2)  # the primer must leave room to continue
        n_pieces = trainer.data.num_pieces("validation")
        pieces = [trainer.data.piece("validation", i % n_pieces)[:k] for i in range(n)]
        primer_len = min(len(p) for p in pieces)
        primers = torch.from_numpy(np.stack([p[:primer_len] for p in pieces]).astype(np.int64))
        primed = generate_tokens(gen, n, length, primer=primers, temperature=cfg.temperature, top_k=cfg.top_k,
                                 eos_id=vocab.eos_id, seed=cfg.seed + 1, device=trainer.device)
    files = []
    for kind, rows in (("unconditional", uncond), ("primed", primed)):
        for i, row in enumerate(rows.cpu().numpy()):
            path = out / f"{kind}_{i:02d}.mid"
            tokens_to_midi(row, vocab, path)
            files.append(str(path))
    hist = trainer.history["val_nll"]
    summary = {
        "loss": cfg.loss, "preset": cfg.preset, "data": cfg.data or "bach",
        "stage_seconds": times, "val_nll_first": hist[0][1] if hist else None,
        "val_nll_last": hist[-1][1] if hist else None, "val_nll_history": hist,
        "uniform_nll": float(np.log(trainer.gcfg.vocab_size)),
        "generation_tokens_per_s": gen_tps, "samples": files,
    }
    summary.update(disc_auc_summary(trainer.history.get("disc_auc", [])))
    summary["triton_compiles"] = triton_compiles()  # this process's: count, seconds, disk-cache loads
    try:
        n_real = min(8, trainer.data.num_pieces("validation"))
        real = [trainer.data.piece("validation", i)[: length] for i in range(n_real)]
        summary["note_stats_data"] = _note_stats(real, vocab)
        if n > 0:
            summary["note_stats_samples"] = _note_stats(list(uncond.cpu().numpy()) + list(primed.cpu().numpy()), vocab)
    except ImportError as e:  # the metrics layer is optional for a run's summary
        logger.warning("note statistics skipped: %s", e)
    (run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
    fmt = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    summary["printable"] = {
        "validation NLL (nats/token), first -> last": f"{fmt(summary['val_nll_first'])} -> "
                                                       f"{fmt(summary['val_nll_last'])} "
                                                       f"(uniform {summary['uniform_nll']:.4f})",
        "stage seconds": ", ".join(f"{k} {v:.0f}" for k, v in times.items()) or "(all stages already done)",
        "generation tokens/s": "n/a (--sample-count 0)" if gen_tps is None else f"{gen_tps:.0f}",
        **({"held-out AUC of D: warm-up end, first, last, mean": ", ".join(
            fmt(summary["disc_auc"][k]) for k in ("warmup_end", "first", "last", "mean"))}
           if "disc_auc" in summary else {}),
        "samples": str(out),
        "summary": str(run_dir / "summary.json"),
        "TensorBoard": f"tensorboard --logdir {run_dir / 'logs'}",
    }
    return summary
