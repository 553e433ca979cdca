"""Markdown tables and target checks from pytest-benchmark JSON files.

    pytest benchmarks/ --benchmark-only --benchmark-json=run.json
    python benchmarks/report.py run.json [more.json ...] > tables.md

Every figure printed is computed from the JSON (medians of the timed rounds and the benchmarks'
extra_info); nothing is typed in by hand, so a results page can be pasted from the output. Ratios
are only formed between benchmarks of the same file and the same shape, i.e. measured side by
side in one run. Sections:

  gumbel_softmax  per (dtype, V, R, mode): time of each provider, the kernel's speed-up over
                  F.gumbel_softmax, its bandwidth on the op's byte floor and, for the forward,
                  that bandwidth as a fraction of `copy_`'s on the same [R, V] tensor; memory.
  rel_attention   per (T, mode): time of each provider, the kernel's speed-up over the eager
                  formulation, its time over SDPA's, TFLOP/s, activation memory against eager's:
                  all bytes saved for backward beyond the inputs, and the same without the
                  output (which a model's next layer saves anyway), both checked against the
                  target.
  other files     one table per benchmark function: parameters, median, numeric extra_info.
  targets         the issues' performance targets, each with the measured value and whether it
                  is met; a target whose benchmarks are missing (e.g. no CUDA) says so.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

# the issues' targets (see benchmarks/bench_gumbel_softmax.py, bench_rel_attention.py)
GUMBEL_SPEEDUP_ROWS, GUMBEL_MIN_SPEEDUP, GUMBEL_MIN_COPY_FRACTION = 131072, 4.0, 0.70
ATTN_MIN_SPEEDUP = {"fwd": 5.0, "bwd": 4.0}
ATTN_MAX_OVER_SDPA, ATTN_MAX_SAVED_FRACTION = 2.0, 0.05
ATTN_MIN_OVER_COMPILED = 1.3  # fwd+bwd against torch.compile of the eager formulation


class Bench:
    """One benchmark: its function, parameters merged with extra_info, and median seconds."""

    def __init__(self, raw: dict, source: str):
        self.func = raw["name"].split("[", 1)[0]
        self.file = Path(raw.get("fullname", "").split("::", 1)[0]).stem or source
        self.info = {**(raw.get("params") or {}), **(raw.get("extra_info") or {})}
        self.median = float(raw["stats"]["median"])
        self.rounds = int(raw["stats"].get("rounds", 0))

    def get(self, key, default=None):
        return self.info.get(key, default)


def load(paths) -> tuple[list[Bench], list[dict]]:
    benches, headers = [], []
    for path in paths:
        try:
            data = json.loads(Path(path).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise SystemExit(f"report: cannot read benchmark JSON {path}: {e}")
        if "benchmarks" not in data:
            raise SystemExit(f"report: {path} is not a pytest-benchmark JSON file (no 'benchmarks')")
        headers.append({"file": str(path), "datetime": data.get("datetime"),
                        "machine": data.get("machine_info", {})})
        benches.extend(Bench(b, Path(path).stem) for b in data["benchmarks"])
    return benches, headers


# ------------------------------------------------------------------------------------ formatting

def fmt_time(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 1e-3:
        return f"{s * 1e6:.1f} us"
    if s < 1:
        return f"{s * 1e3:.2f} ms"
    return f"{s:.2f} s"


def fmt_bytes(n) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


def fmt_ratio(x: float | None, digits: int = 2) -> str:
    return "-" if x is None else f"{x:.{digits}f}x"


def _mode_order(mode) -> int:
    return {"fwd": 0, "bwd": 1, "fwd+bwd": 2}.get(mode, 3)


def _pct(x: float) -> str:
    return f"{100 * x:.1f}%"


def table(header: list[str], rows: list[list[str]]) -> str:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    out += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(out)


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


# ---------------------------------------------------------------------------------------- sections

class Targets:
    def __init__(self):
        self.rows: list[list[str]] = []

    def add(self, what: str, goal: str, value, ok, shown) -> None:
        """``value`` None: not measured; else ``ok(value)`` says whether the goal is met and
        ``shown(value)`` prints it."""
        if value is None:
            self.rows.append([what, goal, "-", "not measured"])
        else:
            self.rows.append([what, goal, shown(value), "met" if ok(value) else "NOT met"])


def gumbel_section(benches: list[Bench], targets: Targets) -> str:
    by = defaultdict(dict)  # (dtype, V, R, mode) -> provider -> Bench
    copy = {}
    for b in benches:
        key = (b.get("dtype"), b.get("V"), b.get("R"))
        if b.func == "test_copy_bandwidth":
            copy[key] = b
        elif b.func == "test_gumbel_softmax":
            by[key + (b.get("mode"),)][b.get("provider")] = b
    rows = []
    for (dtype, V, R, mode), p in sorted(by.items(), key=lambda kv: (*kv[0][:3], _mode_order(kv[0][3]))):
        t = {name: (p[name].median if name in p else None)
             for name in ("torch_gumbel", "reference", "triton")}
        kernel = p.get("triton")
        gbs = ratio(kernel.get("min_bytes"), kernel.median) if kernel else None
        c = copy.get((dtype, V, R))
        copy_gbs = ratio(c.get("bytes_moved"), c.median) if c else None
        frac = ratio(gbs, copy_gbs) if mode == "fwd" else None
        speedup = ratio(t["torch_gumbel"], t["triton"])
        mem = {n: p[n].get("peak_memory_bytes") if n in p else None for n in ("torch_gumbel", "triton")}
        saved = {n: p[n].get("saved_bytes") if n in p else None for n in ("torch_gumbel", "triton")}
        rows.append([dtype, V, R, mode, fmt_time(t["torch_gumbel"]), fmt_time(t["reference"]),
                     fmt_time(t["triton"]), fmt_ratio(speedup),
                     "-" if gbs is None else f"{gbs / 1e9:.0f}",
                     "-" if frac is None else _pct(frac),
                     f"{fmt_bytes(mem['torch_gumbel'])} / {fmt_bytes(mem['triton'])}",
                     f"{fmt_bytes(saved['torch_gumbel'])} / {fmt_bytes(saved['triton'])}"])
        if R == GUMBEL_SPEEDUP_ROWS and mode == "fwd+bwd":
            targets.add(f"gumbel fwd+bwd, R={R}, V={V}, {dtype}: speed-up over F.gumbel_softmax",
                        f">= {GUMBEL_MIN_SPEEDUP:g}x", speedup,
                        lambda x: x >= GUMBEL_MIN_SPEEDUP, fmt_ratio)
            both = all(isinstance(m, (int, float)) for m in mem.values())
            targets.add(f"gumbel fwd+bwd, R={R}, V={V}, {dtype}: peak memory, triton vs F.gumbel",
                        "lower", (mem["triton"], mem["torch_gumbel"]) if both else None,
                        lambda m: m[0] < m[1], lambda m: f"{fmt_bytes(m[0])} vs {fmt_bytes(m[1])}")
        if R == GUMBEL_SPEEDUP_ROWS and mode == "fwd":
            targets.add(f"gumbel fwd, R={R}, V={V}, {dtype}: bandwidth / copy bandwidth",
                        f">= {100 * GUMBEL_MIN_COPY_FRACTION:.0f}%", frac,
                        lambda x: x >= GUMBEL_MIN_COPY_FRACTION, _pct)
    if not rows:
        return ""
    head = ["dtype", "V", "R", "mode", "F.gumbel_softmax", "reference", "triton",
            "speed-up vs F.gumbel", "triton GB/s (floor bytes)", "of copy bw",
            "peak mem F.gumbel / triton", "saved for bwd F.gumbel / triton"]
    copies = [[k[0], k[1], k[2], fmt_time(b.median), f"{b.get('bytes_moved') / b.median / 1e9:.0f}"]
              for k, b in sorted(copy.items())]
    text = "### Gumbel-softmax (benchmarks/bench_gumbel_softmax.py)\n\n" + table(head, rows)
    if copies:
        text += "\n\nCopy bandwidth (`copy_` of an [R, V] tensor):\n\n" + table(
            ["dtype", "V", "R", "time", "GB/s"], copies)
    return text


_ATTN_PROVIDERS = ("eager", "reference", "sdpa", "triton", "triton_fused", "flex", "compiled")


def attention_section(benches: list[Bench], targets: Targets) -> str:
    by = defaultdict(dict)  # (T, mode) -> provider -> Bench
    for b in benches:
        if b.func == "test_rel_attention":
            by[(b.get("T"), b.get("mode"))][b.get("provider")] = b
    rows = []
    for (T, mode), p in sorted(by.items(), key=lambda kv: (kv[0][0], _mode_order(kv[0][1]))):
        t = {n: (p[n].median if n in p else None) for n in _ATTN_PROVIDERS}
        kernel, eager = p.get("triton"), p.get("eager")
        speedup = ratio(t["eager"], t["triton"])
        over_sdpa = ratio(t["triton"], t["sdpa"])
        saved_frac = (ratio(kernel.get("saved_bytes"), eager.get("saved_bytes"))
                      if kernel and eager else None)
        added_frac = (ratio(kernel.get("saved_beyond_output_bytes"),
                            eager.get("saved_beyond_output_bytes")) if kernel and eager else None)
        any_b = next(iter(p.values()))
        rows.append([T, any_b.get("B"), mode, any_b.get("dtype", "-"),
                     *(fmt_time(t[n]) for n in _ATTN_PROVIDERS),
                     fmt_ratio(speedup), fmt_ratio(over_sdpa),
                     fmt_ratio(ratio(t["flex"], t["triton"])),
                     fmt_ratio(ratio(t["compiled"], t["triton"])),
                     fmt_ratio(ratio(t["compiled"], t["triton_fused"])),
                     "-" if not kernel else f"{kernel.get('tflops', 0):.1f} / {kernel.get('kernel_tflops', 0):.1f}",
                     " / ".join(fmt_bytes(p[n].get("saved_bytes")) if n in p else "-"
                                for n in ("eager", "triton")),
                     "-" if saved_frac is None else _pct(saved_frac),
                     "-" if added_frac is None else _pct(added_frac)])
        if mode in ATTN_MIN_SPEEDUP:
            need = ATTN_MIN_SPEEDUP[mode]
            targets.add(f"rel_attention {mode}, T={T}: speed-up over eager", f">= {need:g}x",
                        speedup, lambda x, need=need: x >= need, fmt_ratio)
        targets.add(f"rel_attention {mode}, T={T}: time over SDPA's", f"<= {ATTN_MAX_OVER_SDPA:g}x",
                    over_sdpa, lambda x: x <= ATTN_MAX_OVER_SDPA, fmt_ratio)
        if mode == "fwd+bwd":
            for name in ("triton", "triton_fused"):
                if name in p:
                    targets.add(f"rel_attention fwd+bwd, T={T}: {name} speed-up over compiled "
                                "eager", f">= {ATTN_MIN_OVER_COMPILED:g}x",
                                ratio(t["compiled"], t[name]),
                                lambda x: x >= ATTN_MIN_OVER_COMPILED, fmt_ratio)
        if mode == "fwd":
            for what, frac in (("saved for backward", saved_frac),
                               ("added to a model (saved, output not counted)", added_frac)):
                targets.add(f"rel_attention T={T}: activation memory {what}, over eager's",
                            f"<= {100 * ATTN_MAX_SAVED_FRACTION:.0f}%", frac,
                            lambda x: x <= ATTN_MAX_SAVED_FRACTION, _pct)
    if not rows:
        return ""
    head = ["T (= M)", "B", "mode", "dtype", "eager", "reference", "sdpa (no rel. term)", "triton",
            "triton, fused bwd", "flex", "compiled eager", "speed-up vs eager", "triton / sdpa", "speed-up vs flex",
            "speed-up vs compiled", "fused bwd: speed-up vs compiled", "triton TFLOP/s op / executed",
            "saved for bwd eager / triton", "triton / eager saved",
            "triton / eager saved, output not counted"]
    return "### Relative attention (benchmarks/bench_rel_attention.py)\n\n" + table(head, rows)


_SKIP_INFO = {"device", "torch", "triton", "model", "provider", "mode", "dtype"}


def generic_sections(benches: list[Bench]) -> str:
    groups = defaultdict(list)
    for b in benches:
        if b.func not in ("test_gumbel_softmax", "test_copy_bandwidth", "test_rel_attention"):
            groups[(b.file, b.func)].append(b)
    parts = []
    for (file, func), bs in sorted(groups.items()):
        keys = []
        for b in bs:
            for k, v in b.info.items():
                if k not in keys and k not in _SKIP_INFO and isinstance(v, (int, float)):
                    keys.append(k)
        rows = [[b.get("provider", "-"), fmt_time(b.median), b.rounds]
                + [_fmt_value(k, b.get(k)) for k in keys] for b in bs]
        parts.append(f"### {file}::{func}\n\n" + table(["provider", "median", "rounds"] + keys, rows))
    return "\n\n".join(parts)


def _fmt_value(key: str, v) -> str:
    if v is None:
        return "-"
    if "bytes" in key or key == "max_memory_allocated":
        return fmt_bytes(v)
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v)


def environment(benches: list[Bench], headers: list[dict]) -> str:
    rows = []
    for h in headers:
        m = h["machine"]
        cpu = (m.get("cpu") or {}).get("brand_raw", "-")
        rows.append([h["file"], h["datetime"] or "-", m.get("python_version", "-"), cpu])
    devices = sorted({str(b.get("device")) for b in benches if b.get("device")})
    soft = sorted({f"torch {b.get('torch')}" for b in benches if b.get("torch")}
                  | {f"triton {b.get('triton')}" for b in benches if b.get("triton")})
    return (table(["json", "date (UTC)", "python", "cpu"], rows)
            + f"\n\nDevices: {', '.join(devices) or '-'}. Software: {', '.join(soft) or '-'}.")


def report(paths) -> str:
    benches, headers = load(paths)
    targets = Targets()
    parts = ["## Environment\n\n" + environment(benches, headers)]
    for section in (gumbel_section(benches, targets), attention_section(benches, targets),
                    generic_sections(benches)):
        if section:
            parts.append(section)
    if targets.rows:
        parts.append("## Targets\n\n" + table(["target", "goal", "measured", "status"], targets.rows))
    return "\n\n".join(parts) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("json", nargs="+", help="pytest-benchmark JSON files (--benchmark-json)")
    args = ap.parse_args(argv)
    sys.stdout.write(report(args.json))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
