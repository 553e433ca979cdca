"""Figures of an evaluation: a piano roll per sample, histograms of pitch and inter-onset
interval, data against samples, and CA along the piece. Needs matplotlib (``pip install -e ".[plot]"``).

Figures are drawn on matplotlib's Agg canvas directly (no pyplot), so no GUI backend and no
global figure state are involved.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Sequence

import numpy as np

from tgan.data.notes import Performance

logger = logging.getLogger(__name__)

INSTALL_HINT = 'plotting needs matplotlib: pip install -e ".[plot]" (or pip install matplotlib)'
IOI_MAX = 2.0  # seconds; longer inter-onset intervals go into the last bin


def require_matplotlib():
    """The matplotlib module, or ImportError whose message says how to install it."""
    try:
        import matplotlib
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise ImportError(INSTALL_HINT) from None
    return matplotlib


def _save(fig, path: Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(path, dpi=100)
    return path


def piano_roll(perf: Performance, path, title: str = "", primer_end: float | None = None) -> Path:
    """Write a piano roll of ``perf`` (time in s against MIDI pitch, shade = velocity) as PNG;
    ``primer_end``: the second where a primer ends and the model's music begins (a dashed line)."""
    return _save(piano_roll_figure(perf, title, primer_end), Path(path))


def piano_roll_figure(perf: Performance, title: str = "", primer_end: float | None = None):
    """The figure ``piano_roll`` writes."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4), layout="constrained")
    ax = fig.add_subplot()
    if perf.notes:
        # One bar collection per (pitch, velocity band): a few hundred artists, not one per note.
        bars: dict[tuple[int, int], list] = {}
        for n in perf.notes:
            bars.setdefault((n.pitch, n.velocity // 8), []).append((n.start, n.end - n.start))
        for (pitch, band), spans in bars.items():
            color = (0.1, 0.2, 0.6, 0.25 + 0.75 * min(band, 15) / 15)
            ax.broken_barh(spans, (pitch - 0.4, 0.8), color=color)
        pitches = [n.pitch for n in perf.notes]
        ax.set_ylim(min(pitches) - 2, max(pitches) + 2)
        ax.set_xlim(0, max(perf.duration, 1e-3))
    else:
        ax.text(0.5, 0.5, "no notes", ha="center", va="center", transform=ax.transAxes)
    if primer_end is not None and primer_end > 0:
        ax.axvline(primer_end, color=(0.8, 0.1, 0.1), linestyle="--", linewidth=1.2,
                   label=f"primer ends ({primer_end:.1f} s)")
        ax.legend(loc="upper right")
    ax.set_xlabel("time (s)")
    ax.set_ylabel("MIDI pitch")
    ax.set_title(title or Path(perf.source).name)
    return fig


def onset_intervals(perf: Performance) -> np.ndarray:
    """Time between consecutive distinct onsets, seconds (chords count once)."""
    starts = np.unique(np.fromiter((n.start for n in perf.notes), np.float64, len(perf.notes)))
    return np.diff(starts)


def histograms(sets: Sequence[tuple[str, Sequence[Performance]]], path) -> Path:
    """Write pitch and inter-onset-interval histograms (densities) of several sets, one line per
    set, e.g. ``[("data", pieces), ("samples", pieces)]``; intervals above 2 s share the last bin."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(12, 4), layout="constrained")
    ax_p, ax_i = fig.subplots(1, 2)
    pitch_bins = np.arange(-0.5, 128.5, 1.0)
    ioi_bins = np.linspace(0.0, IOI_MAX, 41)
    for name, pieces in sets:
        pitches = np.fromiter((n.pitch for p in pieces for n in p.notes), np.int64)
        iois = np.concatenate([onset_intervals(p) for p in pieces] or [np.zeros(0)])
        if len(pitches):
            ax_p.hist(pitches, bins=pitch_bins, density=True, histtype="step", label=name)
        if len(iois):
            ax_i.hist(np.minimum(iois, IOI_MAX), bins=ioi_bins, density=True, histtype="step",
                      label=name)
    ax_p.set_xlabel("MIDI pitch")
    ax_p.set_ylabel("density")
    ax_p.set_title("pitch")
    ax_i.set_xlabel(f"inter-onset interval (s, > {IOI_MAX:g} in the last bin)")
    ax_i.set_title("inter-onset interval")
    for ax in (ax_p, ax_i):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")
    return _save(fig, Path(path))


def ca_by_position_plot(curves: Sequence[tuple[str, Sequence[dict]]], path) -> Path:
    """CA along the piece: for each sample set, the classifier's accuracy on its generated blocks
    against their start token (``CA_by_position`` entries), with chance (0.5) marked."""
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 4), layout="constrained")
    ax = fig.add_subplot()
    for name, points in curves:
        x = [p["start"] for p in points]
        ax.plot(x, [p["accuracy"] for p in points], marker="o", label=f"{name}")
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("block start in the sample (tokens)")
    ax.set_ylabel("accuracy on generated blocks")
    ax.set_title("CA along the piece")
    ax.legend(fontsize=8)
    return _save(fig, Path(path))


def stat_distance_plot(distance: dict, statistics: Sequence[str], path, title: str = "") -> Path:
    """Each statistic's distance to the data (sample - data) per arm: one panel per statistic, a
    bar per arm at the mean over seeds with the standard deviation as error bar.

    ``distance``: {arm: {statistic: {"mean", "std"}}} (tgan.experiment_report).
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    arms = list(distance)
    cols = 3
    rows = -(-len(statistics) // cols)
    fig = Figure(figsize=(3.2 * cols, 2.4 * rows), layout="constrained")
    for i, st in enumerate(statistics):
        ax = fig.add_subplot(rows, cols, i + 1)
        means = [distance[a].get(st, {}).get("mean") for a in arms]
        stds = [distance[a].get(st, {}).get("std") for a in arms]
        ax.bar(range(len(arms)), [np.nan if m is None else m for m in means],
               yerr=[0 if s is None else s for s in stds], color="tab:blue", capsize=3)
        ax.axhline(0, color="grey", linewidth=1)
        ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=7)
        ax.set_title(st, fontsize=9)
    if title:
        fig.suptitle(title)
    return _save(fig, Path(path))


def disc_auc_plot(curves: dict, ca: dict, path) -> Path:
    """The discriminator's held-out AUC along the adversarial stage per arm (left; chance and the
    0.6 line marked), next to each arm's CA by the fixed scorer (right; mean and standard deviation
    over seeds, unconditional and primed).

    ``curves``: {arm: [{"it", "auc"}]} (mean over seeds); ``ca``: {arm: {kind: {"mean", "std"}}}.
    """
    require_matplotlib()
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 4), layout="constrained")
    ax = fig.add_subplot(1, 2, 1)
    for name, points in curves.items():
        ax.plot([p["it"] for p in points], [p["auc"] for p in points], marker=".", label=name)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1, label="chance")
    ax.axhline(0.6, color="tab:red", linestyle=":", linewidth=1, label="0.6")
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("adversarial iteration")
    ax.set_ylabel("held-out AUC of D")
    ax.set_title("D's held-out AUC along the stage")
    ax.legend(fontsize=8)
    ax = fig.add_subplot(1, 2, 2)
    arms, width = list(ca), 0.38
    for j, kind in enumerate(("unconditional", "primed")):
        means = [ca[a].get(kind, {}).get("mean") for a in arms]
        stds = [ca[a].get(kind, {}).get("std") for a in arms]
        ax.bar([i + (j - 0.5) * width for i in range(len(arms))], [np.nan if m is None else m for m in means],
               width, yerr=[0 if s is None else s for s in stds], capsize=3, label=kind)
    ax.axhline(0.5, color="grey", linestyle="--", linewidth=1)
    ax.set_ylim(0, 1.02)
    ax.set_xticks(range(len(arms)), arms, rotation=30, ha="right", fontsize=7)
    ax.set_ylabel("CA (fixed scorer; lower is better)")
    ax.set_title("CA per arm")
    ax.legend(fontsize=8)
    return _save(fig, Path(path))
