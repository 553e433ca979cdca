"""The report of ``python -m tgan.experiment``: every run's Table 1 gathered per arm.

``report.json`` holds, per arm and sample kind (unconditional, primed), the mean, standard
deviation (over seeds; 0 with one seed) and per-seed values of NLL, CA (with each seed's interval),
PLL, the nine note statistics and their distance to the data (sample - data) in both conventions,
CA along the piece averaged over seeds, and the wall time of each step. ``report.md`` holds the
same as tables; ``plots/`` the figures (CA along the piece per arm, each statistic's distance to the
data per arm).
"""
from __future__ import annotations

import json
import logging
import math
from pathlib import Path

import numpy as np

from tgan.metrics.notes_stats import STATISTICS

logger = logging.getLogger(__name__)

KINDS = ("unconditional", "primed")


def _spread(values: list) -> dict:
    """{"mean", "std", "values"} of the finite values (None where there is none)."""
    xs = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if not xs:
        return {"mean": None, "std": None, "values": list(values)}
    return {"mean": float(np.mean(xs)), "std": float(np.std(xs, ddof=1)) if len(xs) > 1 else 0.0,
            "values": list(values)}


def _value(x):
    """The number of an NLL / PLL entry ({"value": ...} in an evaluation), None when absent."""
    return x.get("value") if isinstance(x, dict) else x


def _ca_curve(rows: list) -> list:
    """CA along the piece averaged over seeds, per block start."""
    by_start: dict = {}
    for row in rows:
        for p in row.get("CA_by_position") or []:
            by_start.setdefault(p["start"], []).append(p["accuracy"])
    return [{"start": s, "accuracy": float(np.mean(v)), "seeds": len(v)} for s, v in sorted(by_start.items())]


def after_pretraining_seconds(train: dict) -> float:
    """Seconds a run's training record (``experiment.json``) spent after the shared pre-training:
    the D warm-up and the adversarial stage, or the MLE continuation."""
    return sum((train.get("stage_seconds") or {}).get(k, 0.0) for k in ("dwarm", "gan"))


def _disc_auc(trains: list) -> dict | None:
    """D's held-out AUC over an arm's seeds: warm-up end, first, last and mean of the stage as
    spreads, D' (PPO-GP) likewise, and the curve along the stage averaged over seeds; None for an
    arm without a discriminator."""
    if not any("disc_auc" in t for t in trains):
        return None
    out = {}
    for key in ("disc_auc", "ppo_auc"):
        if any(key in t for t in trains):
            out[key] = {f: _spread([(t.get(key) or {}).get(f) for t in trains])
                        for f in ("warmup_end", "first", "last", "mean", "informative_share")}
    by_it: dict = {}
    for t in trains:
        for p in t.get("disc_auc_points") or []:
            if p["stage"] == "gan":
                by_it.setdefault(p["it"], []).append(p["d_auc"])
    out["curve"] = [{"it": i, "auc": float(np.mean(v)), "seeds": len(v)} for i, v in sorted(by_it.items())]
    return out


def _selection(selection: dict | None, samples: list, critics: list) -> dict | None:
    """A selection arm's settings, cost (generated tokens per kept token, sampling seconds) and its
    critics' held-out AUC over seeds; None for an arm without selection."""
    if not selection:
        return None
    recs = [s.get("selection") or {} for s in samples]
    return {**selection, "tokens_per_kept": _spread([r.get("tokens_per_kept") for r in recs]),
            "sampling_seconds": _spread([s.get("seconds") for s in samples]),
            "critic_auc": _spread([(c or {}).get("auc") for c in critics]),
            "critic_auc_train": _spread([(c or {}).get("auc_train") for c in critics])}


def gather(out: Path, state: dict, args) -> dict:
    """The report's dict from the evaluations listed in ``state`` (see the module docstring)."""
    done = state["done"]
    report = {"options": {**state["options"], "arms": args.arms, "seeds": args.seeds},
              "pretrain": done.get("pretrain"), "scorer": done.get("scorer"),
              "primers": {k: v for k, v in done.get("primers", {}).items() if k != "tokens"}, "data": None, "arms": {}}
    from tgan.data.vocab import Vocab
    from tgan.experiment import selection_spec
    from tgan.metrics.diversity import folder_diversity

    vocab = Vocab.by_name(state["options"].get("vocab", "maestro"))
    for arm in args.arms:
        trained, selection = selection_spec(arm)
        evals, times = [], {"train": [], "sample": [], "evaluate": []}
        if selection:
            times["critic"] = []
        diversity = {kind: [] for kind in KINDS}
        for s in range(args.seeds):
            key = f"{arm}/seed{s}"
            where = Path(done[key + "/evaluate"]["evaluation"])
            evals.append(json.loads(where.read_text()))
            for step in times:
                times[step].append(done[f"{trained if step in ('train', 'critic') else arm}/seed{s}/{step}"]["seconds"])
            for kind in KINDS:
                diversity[kind].append(folder_diversity(where.parent / "eval_samples" / kind, vocab))
        if report["data"] is None:
            d = evals[0]["data"]
            report["data"] = {"name": d["name"], "split": d["split"], "pieces": d["pieces"],
                              "clip_tokens": d["clip_tokens"], "PLL": _value(d["PLL"]),
                              "stats": {c: d["stats"][c]["mean"] for c in evals[0]["conventions"]}}
        trains = [done[f"{trained}/seed{s}/train"] for s in range(args.seeds)]
        entry = {"wall_seconds": {k: _spread(v) for k, v in times.items()},
                 "selection": _selection(selection, [done[f"{arm}/seed{s}/sample"] for s in range(args.seeds)],
                                         [done.get(f"{trained}/seed{s}/critic") for s in range(args.seeds)]),
                 "resumed": [t.get("resumed", False) for t in trains],
                 "disc_auc": _disc_auc(trains),
                 # seconds of the stage after pre-training (D warm-up + adversarial, or MLE continued)
                 "stage_seconds": _spread([after_pretraining_seconds(t) for t in trains])}
        for k, kind in enumerate(KINDS):
            rows = [e["samples"][k] for e in evals]
            ca = [r.get("CA") or {} for r in rows]
            entry[kind] = {
                "NLL": _spread([_value(r.get("NLL")) for r in rows]),
                "CA": {**_spread([c.get("mean") for c in ca]),
                       "intervals": [[c.get("low"), c.get("high")] for c in ca]},
                "PLL": _spread([_value(r.get("PLL")) for r in rows]),
                "stats": {c: {st: _spread([r["stats"][c]["mean"].get(st) for r in rows]) for st in STATISTICS}
                          for c in evals[0]["conventions"]},
                "distance": {c: {st: _spread([r["diff"][c].get(st) for r in rows]) for st in STATISTICS}
                             for c in evals[0]["conventions"]},
                "CA_by_position": _ca_curve(rows),
                "diversity": {m: _spread([d[m] for d in diversity[kind]])
                              for m in ("distinct_4grams", "pitch_histogram_distance", "tokens_median")},
            }
        report["arms"][arm] = entry
    return report


def _pm(s: dict | None, digits: int = 3) -> str:
    if not s or s.get("mean") is None:
        return "n/a"
    return f"{s['mean']:.{digits}f} ± {s['std']:.{digits}f}"


def markdown(report: dict) -> str:
    """The report as Markdown tables."""
    o, arms = report["options"], report["arms"]
    lines = ["# Equal-compute experiment", "",
             f"Data: {o['data'] or 'bach (bundled corpus)'} (vocabulary {o['vocab']}); arms: "
             f"{', '.join(o['arms'])}; {o['seeds']} seed(s) each, mean ± standard deviation over seeds. "
             f"Every arm starts from one shared pre-training and runs the same iterations and MLE steps; "
             f"training flags: `{' '.join(o['train_flags']) or '(defaults)'}`. CA and PLL by one scorer "
             f"({o['scorer_preset']} preset). {o['num_samples']} samples of {o['sample_tokens']} tokens per "
             f"run and kind; primed ones continue the first {o['primer_tokens']} tokens of pieces of the "
             f"{report['primers'].get('split', 'test')} split.", ""]
    d = report["data"]
    for kind in KINDS:
        for conv in d["stats"]:
            lines += [f"## Table 1, {kind} samples ({conv} statistics)", "",
                      "| arm | NLL | CA | PLL | " + " | ".join(STATISTICS) + " |",
                      "|---" * (4 + len(STATISTICS)) + "|"]
            pll = "n/a" if d["PLL"] is None else f"{d['PLL']:.3f}"
            lines.append(f"| data ({d['split']}, {d['pieces']} pieces) | | | {pll} | "
                         + " | ".join(f"{d['stats'][conv].get(st, float('nan')):.3f}" for st in STATISTICS) + " |")
            for arm, e in arms.items():
                k = e[kind]
                lines.append(f"| {arm} | {_pm(k['NLL'])} | {_pm(k['CA'])} | {_pm(k['PLL'])} | "
                             + " | ".join(_pm(k["stats"][conv][st]) for st in STATISTICS) + " |")
            lines += ["", f"Distance to the data (sample - data), {kind}, {conv}:", "",
                      "| arm | " + " | ".join(STATISTICS) + " |", "|---" * (1 + len(STATISTICS)) + "|"]
            for arm, e in arms.items():
                lines.append(f"| {arm} | " + " | ".join(_pm(e[kind]["distance"][conv][st]) for st in STATISTICS) + " |")
            lines.append("")
    lines += _auc_table(report)
    lines += _selection_table(report)
    lines += ["## CA along the piece (unconditional samples, mean over seeds)", ""]
    starts = sorted({p["start"] for e in arms.values() for p in e["unconditional"]["CA_by_position"]})
    if starts:
        lines += ["| arm | " + " | ".join(f"from {s}" for s in starts) + " |", "|---" * (1 + len(starts)) + "|"]
        for arm, e in arms.items():
            acc = {p["start"]: p["accuracy"] for p in e["unconditional"]["CA_by_position"]}
            lines.append(f"| {arm} | " + " | ".join("n/a" if s not in acc else f"{acc[s]:.3f}" for s in starts) + " |")
    else:
        lines.append("(no CA along the piece: the samples are shorter than one CA block)")
    lines += ["", "## Wall time per arm (seconds, mean ± standard deviation over seeds)", "",
              "| arm | training | sampling | evaluation | resumed |", "|---|---|---|---|---|"]
    for arm, e in arms.items():
        w = e["wall_seconds"]
        lines.append(f"| {arm} | {_pm(w['train'], 1)} | {_pm(w['sample'], 1)} | {_pm(w['evaluate'], 1)} | "
                     f"{'yes' if any(e['resumed']) else 'no'} |")
    pre, sc = report.get("pretrain") or {}, report.get("scorer") or {}
    lines += ["", f"Shared pre-training: {pre.get('seconds', 0):.0f} s; scorer: {sc.get('seconds', 0):.0f} s. "
              "A resumed arm's training time adds, to the call that finished it, the stopped attempt's time up "
              "to its newest checkpoint (the work the resumed run kept).", ""]
    return "\n".join(lines)


def _selection_table(report: dict) -> list[str]:
    """CA, diversity and cost per arm: what selection by a critic buys, and at what price."""
    arms = report["arms"]
    lines = ["## Selection by a critic: CA, diversity and cost", "",
             "Arms ARM+SELECT@N keep one of N candidates per sample by a critic trained against ARM's generator "
             "(python -m tgan.critic; its held-out AUC is the critic's own, on validation pieces against fresh "
             "samples). Diversity of each set of samples: distinct token 4-grams over all 4-grams, and the mean "
             "pairwise total-variation distance of pitch histograms (higher = more diverse). Cost: generated "
             "tokens per kept token; sampling seconds for both sample kinds. CA by the fixed scorer, never the "
             "critic. Median length: the samples' median tokens (to EOS); shorter samples put more of their "
             "blocks early in the piece, where CA is lower.", "",
             "| arm | CA, unconditional | CA, primed | distinct 4-grams, uncond. | pitch-hist. distance, uncond. | "
             "distinct 4-grams, primed | pitch-hist. distance, primed | median length, uncond. / primed | "
             "tokens per kept | sampling s | critic AUC |",
             "|---" * 11 + "|"]
    for arm, e in arms.items():
        sel = e.get("selection") or {}
        du, dp = e["unconditional"]["diversity"], e["primed"]["diversity"]
        lines.append(f"| {arm} | {_pm(e['unconditional']['CA'])} | {_pm(e['primed']['CA'])} | "
                     f"{_pm(du['distinct_4grams'])} | {_pm(du['pitch_histogram_distance'])} | "
                     f"{_pm(dp['distinct_4grams'])} | {_pm(dp['pitch_histogram_distance'])} | "
                     f"{_pm(du['tokens_median'], 0)} / {_pm(dp['tokens_median'], 0)} | "
                     f"{_pm(sel.get('tokens_per_kept'), 1) if sel else '1.0'} | "
                     f"{_pm(e['wall_seconds']['sample'], 0)} | "
                     f"{_pm(sel.get('critic_auc')) if sel else ''} |")
    return lines + [""]


def _auc_table(report: dict) -> list[str]:
    """D's held-out AUC per arm beside the scorer's CA and the stage's wall time."""
    arms = report["arms"]
    lines = ["## The discriminator's held-out AUC, beside CA", "",
             "Held-out AUC of D's logit (real validation crops against fresh samples of the generator, "
             "neither trained on; 0.5 = chance): at the end of the D warm-up, at the first and last "
             "points of the adversarial stage, its mean over the stage and the share of points at or "
             "above 0.6. D' is PPO-GP's classifier (its last point). CA is the fixed scorer's. Stage "
             "seconds: the D warm-up and adversarial stage, or the MLE continuation.", "",
             "| arm | AUC warm-up end | AUC first | AUC last | AUC mean | share >= 0.6 | D' AUC last | "
             "CA, unconditional | CA, primed | stage s |", "|---" * 10 + "|"]
    for arm, e in arms.items():
        a = e.get("disc_auc") or {}
        d, p = a.get("disc_auc") or {}, a.get("ppo_auc") or {}
        lines.append(f"| {arm} | {_pm(d.get('warmup_end'))} | {_pm(d.get('first'))} | {_pm(d.get('last'))} | "
                     f"{_pm(d.get('mean'))} | {_pm(d.get('informative_share'), 2)} | {_pm(p.get('last'))} | "
                     f"{_pm(e['unconditional']['CA'])} | {_pm(e['primed']['CA'])} | {_pm(e.get('stage_seconds'), 0)} |")
    return lines + [""]


def plots(report: dict, folder: Path) -> dict:
    """CA along the piece per arm and each statistic's distance to the data per arm."""
    from tgan.metrics.plots import ca_by_position_plot, stat_distance_plot

    folder.mkdir(parents=True, exist_ok=True)
    arms = report["arms"]
    out = {}
    curves = [(arm, e["unconditional"]["CA_by_position"]) for arm, e in arms.items()
              if e["unconditional"]["CA_by_position"]]
    if curves:
        out["ca_by_position"] = str(ca_by_position_plot(curves, folder / "ca_by_position.png"))
    auc = {arm: e["disc_auc"]["curve"] for arm, e in arms.items() if (e.get("disc_auc") or {}).get("curve")}
    if auc:
        from tgan.metrics.plots import disc_auc_plot

        ca = {arm: {k: e[k]["CA"] for k in KINDS} for arm, e in arms.items()}
        out["disc_auc"] = str(disc_auc_plot(auc, ca, folder / "disc_auc.png"))
    for conv in report["data"]["stats"]:
        dist = {arm: e["unconditional"]["distance"][conv] for arm, e in arms.items()}
        out[f"distance_{conv}"] = str(stat_distance_plot(dist, STATISTICS, folder / f"distance_{conv}.png",
                                                         title=f"distance to the data ({conv} statistics)"))
    return out


def write_report(out: Path, state: dict, args, figures: bool = True) -> Path:
    """Write OUT/report.json, OUT/report.md and (with ``figures``) OUT/plots; returns report.md's path."""
    from tgan.metrics.report import write_json

    report = gather(out, state, args)
    if figures:
        report["plots"] = plots(report, out / "plots")
    write_json(report, out / "report.json")
    path = out / "report.md"
    path.write_text(markdown(report), encoding="utf-8")
    logger.info("wrote %s and %s", path, out / "report.json")
    return path
