"""Formatting evaluation results: a Markdown table in the shape of Table 1, and JSON.

A result is a plain dict (built by ``python -m tgan.evaluate``)::

    {"conventions": ["correct", ...],
     "data":    {"name", "split", "pieces", "skipped": [...], "stats": {conv: {"mean", "std", "n"}},
                 "PLL": {"value", ...} or None, ...},
     "samples": [{"name", "pieces", "skipped", "stats", "diff": {conv: {stat: d}},
                  "NLL": {"value", ...} or None, "checkpoint": path or None,
                  "PLL": ... or None,
                  "CA": {"mean", "low", "high", "folds", "blocks", ...} or None,
                  "CA_by_position": [{"start", "end", "accuracy", "blocks"}, ...]}, ...],
     "model":   {"NLL": {"value", ...} or None, ...} or None,   (the first checkpoint)
     "scorer":  {"path", "data", "mlm_accuracy", ...} or None,
     "notes":   ["...", ...], "options": {...}}

Rows: the data set, then each sample set; columns NLL, CA, PLL and the nine statistics. A sample
row shows its mean and, in parentheses, its difference to the data row; "n/a" where a value was
not computed (or is NaN). CA shows its 95% interval in brackets, or "too few" beside it when it
rests on too few blocks. NLL and CA belong to the model and the sample set, so the data row has
none. Under the tables, one line per sample set gives CA along the piece.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

from tgan.metrics.notes_stats import STATISTICS

COLUMNS = ("NLL", "CA", "PLL") + STATISTICS
# Decimals per column: counts and semitones with 2, rates, seconds and nats with 3.
DECIMALS = {"NLL": 3, "CA": 3, "PLL": 3, "PCU": 2, "NPU": 2, "EBR": 3, "ISR": 3, "PRS": 3,
            "TUP": 2, "PR": 2, "APS": 2, "IOI": 3}
NA = "n/a"


def _finite(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def format_value(value, column: str, diff=None) -> str:
    """``value`` with the column's decimals, ``diff`` appended as "(+d)"; "n/a" for None/NaN."""
    if not _finite(value):
        return NA
    dec = DECIMALS.get(column, 3)
    text = f"{value:.{dec}f}"
    if _finite(diff):
        text += f" ({diff:+.{dec}f})"
    return text


def _escape(text: str) -> str:
    return str(text).replace("|", "\\|")


def _value(entry, key: str):
    return None if not entry else entry.get(key)


def format_ca(ca) -> str:
    """The CA cell: "mean [low, high]", "mean (too few)" when flagged, "n/a" when not computed."""
    mean = _value(ca, "mean")
    if not _finite(mean):
        return NA
    if ca.get("flag"):
        return f"{mean:.3f} (too few)"
    low, high = ca.get("low"), ca.get("high")
    if _finite(low) and _finite(high):
        return f"{mean:.3f} [{low:.2f}, {high:.2f}]"
    return f"{mean:.3f}"


# What each column means (the full definitions: tgan.metrics).
LEGEND = {
    "NLL": "the generator's validation negative log-likelihood, nats per token (lower is better)",
    "CA": "balanced accuracy of a classifier telling generated from real blocks, held out by piece, "
          "[95% interval] (0.5 = indistinguishable)",
    "PLL": "pseudo-log-likelihood of the blocks under the scorer BERT, per token",
    "PCU": "distinct pitch classes used", "NPU": "distinct pitches used",
    "EBR": "share of empty beats", "ISR": "share of in-scale (C major) sounding time",
    "PRS": "share of time with at least 4 pitches sounding", "TUP": "total used pitches",
    "PR": "pitch range, semitones", "APS": "mean absolute pitch step between chords",
    "IOI": "mean inter-onset interval between chords, seconds",
}
MIN_POSITION_BLOCKS = 20  # CA along the piece: positions are merged until a point rests on this many blocks


def wilson_interval(hits: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion ``hits / n``."""
    if n <= 0:
        return float("nan"), float("nan")
    p = hits / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def merge_positions(points: list, min_blocks: int = MIN_POSITION_BLOCKS) -> list[dict]:
    """CA-by-position points merged left to right until each rests on ``min_blocks`` generated
    blocks (a short last run joins the point before it): {"start", "end", "accuracy", "blocks",
    "low", "high"} with the accuracy weighted by blocks and a 95% Wilson interval."""
    merged, run = [], []

    def close():
        n = sum(p["blocks"] for p in run)
        hits = sum(p["accuracy"] * p["blocks"] for p in run)
        low, high = wilson_interval(hits, n)
        merged.append({"start": run[0]["start"], "end": run[-1]["end"], "accuracy": hits / n if n else float("nan"),
                       "blocks": n, "low": low, "high": high})

    for p in points:
        run.append(p)
        if sum(q["blocks"] for q in run) >= min_blocks:
            close()
            run = []
    if run:
        if merged:  # too few for a point of their own: they join the last one
            last = merged.pop()
            run = [{"start": last["start"], "end": last["end"], "accuracy": last["accuracy"],
                    "blocks": last["blocks"]}] + run
        close()
    return merged


def position_lines(result: dict) -> list[str]:
    """One line per sample set with CA along the piece: positions merged until each point rests
    on enough generated blocks, each with its accuracy, 95% interval and block count."""
    lines = []
    for s in result["samples"]:
        points = s.get("CA_by_position") or []
        if points:
            cells = " · ".join(f"{p['start']}-{p['end']} {p['accuracy']:.2f} [{p['low']:.2f}, {p['high']:.2f}] "
                               f"n={p['blocks']}" for p in merge_positions(points))
            lines.append(f"CA along the piece, {s['name']} (accuracy on generated blocks by start token, "
                         f"positions merged to >= {MIN_POSITION_BLOCKS} blocks): {cells}")
    return lines


def table_rows(result: dict, convention: str) -> list[list[str]]:
    """The table as cells: a header row, then the data row and one row per sample set."""
    if convention not in result["conventions"]:
        raise ValueError(f"convention must be one of {result['conventions']}, got {convention!r}")
    data = result["data"]
    model = result.get("model") or {}
    header = [f"{convention} convention"] + list(COLUMNS)
    d_mean = data["stats"][convention]["mean"]
    d_pll = _value(data.get("PLL"), "value")
    rows = [header, [_escape(f"data: {data['name']} ({data['split']}, {data['pieces']} pieces)"),
                     NA, NA, format_value(d_pll, "PLL")]
            + [format_value(d_mean.get(k), k) for k in STATISTICS]]
    model_nll = _value(model.get("NLL"), "value")
    for s in result["samples"]:
        nll = _value(s.get("NLL"), "value") if s.get("NLL") else model_nll
        mean = s["stats"][convention]["mean"]
        diff = s.get("diff", {}).get(convention, {})
        pll = _value(s.get("PLL"), "value")
        pll_diff = pll - d_pll if _finite(pll) and _finite(d_pll) else None
        skipped = f", {len(s['skipped'])} skipped" if s.get("skipped") else ""
        rows.append([_escape(f"samples: {s['name']} ({s['pieces']} files{skipped})"),
                     format_value(nll, "NLL"), format_ca(s.get("CA")),
                     format_value(pll, "PLL", pll_diff)]
                    + [format_value(mean.get(k), k, diff.get(k)) for k in STATISTICS])
    return rows


def markdown_table(result: dict, convention: str) -> str:
    """One Markdown table (GitHub style) for one convention of the note statistics."""
    rows = table_rows(result, convention)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    line = lambda r: "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |"  # noqa: E731
    sep = "|" + "|".join(("-" * (w + 1) + ":") if i else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|"
    return "\n".join([line(rows[0]), sep] + [line(r) for r in rows[1:]])


def markdown_report(result: dict) -> str:
    """Every convention's table, then the notes (what was computed, what is n/a and why)."""
    parts = [markdown_table(result, c) for c in result["conventions"]]
    lines = position_lines(result)
    if lines:
        parts.append("\n".join(lines))
    notes = ["Means over pieces; in parentheses the difference to the data row. Standard "
             "deviations and counts are in the JSON.",
             "Columns: " + "; ".join(f"{k}: {v}" for k, v in LEGEND.items()) + "."] + list(result.get("notes", []))
    parts.append("\n".join(f"- {n}" for n in notes))
    return "\n\n".join(parts) + "\n"


def jsonable(obj):
    """``obj`` with NaN/inf replaced by None (strict JSON has no NaN), tuples as lists."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy / torch scalars
        return jsonable(obj.item())
    return obj


def write_json(result: dict, path) -> Path:
    """Write ``result`` (NaN as null) to ``path``, creating its folder; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(jsonable(result), indent=2, allow_nan=False) + "\n",
                    encoding="utf-8")
    return path
