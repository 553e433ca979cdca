"""Where the time of a rollout goes on a new machine: per-step times from the first step on.

    python benchmarks/rollout_probe.py [--preset small] [--batches 4,16,64] [--rollouts 256,2048]
                                       [--old-path-batches 4] [--json F]

Prints, as it goes (so a run stopped at a time limit still says where it was):
  - decode: the first 16 steps of a no-grad decode one by one (Triton compiles its
    specializations there), then the mean of the next steps, and the Triton kernels compiled;
  - adversarial: ``generator_adversarial_step`` (rollout with gradient, TBPTT segments of 128,
    scored by the BERT discriminator) at each batch and rollout length, with tokens/s, the peak
    device memory (CUDA) and the kernels compiled. The first step of the run pays the compiles
    (on a cold Triton cache: ``TRITON_CACHE_DIR`` pointing at an empty folder), so it runs once
    more at once ("warm"). At the batches of ``--old-path-batches`` the same steps run again with
    plain autograd's per-token weight gradients (``TransformerXL.segment_grads = False``, the path
    before segment sums): the two paths side by side in one process.
  - decode modes (``--decode-modes eager,graph``): steady-state decode steps with the window full,
    per ``TGAN_DECODE`` mode, at every batch: tokens/s, and the first step apart (for ``graph``
    the compile and the CUDA graph's capture).
Not a benchmark file: a probe for the first minutes on a machine, before the benchmarks.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import torch


def _sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def _compiled_kernels() -> int:
    """Compiled Triton kernels in the on-disk cache (a proxy for compiles so far)."""
    root = Path(os.environ.get("TRITON_CACHE_DIR", Path.home() / ".triton" / "cache"))
    return sum(1 for _ in root.glob("*/*.cubin")) if root.exists() else 0


@torch.no_grad()
def decode_modes(gen, B: int, modes: list, steps: int, device) -> list:
    """Steady-state decode steps (window full at the preset's eval_mem_len, sampling at 0.95 /
    top-k 32) per mode: eager (``TransformerXL.step`` + ``sample_logits``), static or graph
    (``StaticDecoder``); the first step is timed apart (graph: the compile and capture)."""
    from tgan.ops import sample_logits
    from tgan.sampling import StaticDecoder, never_sample

    gen.eval()
    context = gen.cfg.eval_mem_len
    state = gen.init_state(None, batch_size=B, capacity=2 * (context + 1))
    x = torch.zeros(B, dtype=torch.long, device=device)
    for _ in range(context + 1):
        gen.step(x, state, max_context=context)
    rows = []
    for mode in modes:
        if mode == "eager":
            def step(x, t):
                lg = gen.step(x, state, max_context=context)
                return sample_logits(never_sample(lg, gen.cfg.pad_id), 0.95, 32, 1.0, seed=1, offset=t)
        else:
            dec = StaticDecoder(gen, state, context, 0.95, 32, 1.0, seed=1, offset=0,
                                compiled=mode == "graph")
            step = lambda x, t: dec.next_token(x)  # noqa: E731
        t0 = time.perf_counter()
        x = step(x, 0)
        _sync(device)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        for t in range(1, steps + 1):
            x = step(x, t)
        _sync(device)
        sec = time.perf_counter() - t0
        rows.append({"batch": B, "mode": mode, "context": context, "steps": steps,
                     "first_step_s": first, "ms_per_step": 1e3 * sec / steps,
                     "tokens_per_s": B * steps / sec})
    return rows


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batches", "--batch", default="4",
                   help="batch sizes, comma separated (default 4; --batch N as before)")
    p.add_argument("--old-path-batches", default="",
                   help="batch sizes at which the per-token weight-gradient path runs too")
    p.add_argument("--steps", type=int, default=128, help="decode steps (default 128)")
    p.add_argument("--rollouts", default="256,2048", help="rollout lengths, comma separated")
    p.add_argument("--decode-modes", default="",
                   help="also time steady-state decode steps in these TGAN_DECODE modes, comma "
                        "separated (eager, static, graph), at every batch")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--json", default=None, help="write the figures here too")
    args = p.parse_args(argv)

    from tgan.gan.losses import RSGAN
    from tgan.gan.rollout import generator_adversarial_step
    from tgan.model import BertDiscriminator, TransformerXL, preset

    device = torch.device(args.device)
    torch.manual_seed(0)
    pr = preset(args.preset, vocab_size=310)
    pr.bert.vocab_size = 311
    gen = TransformerXL(pr.generator).to(device)
    disc = BertDiscriminator(pr.bert).to(device)
    out: dict = {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                 "preset": args.preset, "batches": args.batches, "decode_first_ms": [], "adversarial": []}
    batches = [int(b) for b in args.batches.split(",")]
    old_at = {int(b) for b in args.old_path_batches.split(",") if b}
    B = batches[0]

    k0 = _compiled_kernels()
    with torch.no_grad():
        state = gen.init_state(None, batch_size=B, capacity=args.steps + 1)
        x = torch.zeros(B, dtype=torch.long, device=device)
        times = []
        for t in range(args.steps):
            t0 = time.perf_counter()
            logits = gen.step(x, state, max_context=args.steps + 1)
            x = logits.argmax(-1)
            _sync(device)
            times.append(time.perf_counter() - t0)
            if t < 16:
                print(f"decode step {t}: {times[-1] * 1e3:.1f} ms", flush=True)
    rest = times[16:] or times
    out["decode_first_ms"] = [round(s * 1e3, 2) for s in times[:16]]
    out["decode_ms_per_step_after_16"] = 1e3 * sum(rest) / len(rest)
    out["decode_kernels_compiled"] = _compiled_kernels() - k0
    print(f"decode: {out['decode_ms_per_step_after_16']:.2f} ms/step after step 16; "
          f"{out['decode_kernels_compiled']} Triton kernels compiled", flush=True)
    out["decode_tokens_per_s"] = {B: B * 1e3 / out["decode_ms_per_step_after_16"]}
    for Bd in batches[1:]:  # the other batches, warm: tokens/s of the steps after the first 16
        with torch.no_grad():
            state = gen.init_state(None, batch_size=Bd, capacity=args.steps + 1)
            x = torch.zeros(Bd, dtype=torch.long, device=device)
            for t in range(args.steps):
                if t == 16:
                    _sync(device)
                    t0 = time.perf_counter()
                x = gen.step(x, state, max_context=args.steps + 1).argmax(-1)
            _sync(device)
        out["decode_tokens_per_s"][Bd] = Bd * (args.steps - 16) / (time.perf_counter() - t0)
        print(f"decode B={Bd}: {out['decode_tokens_per_s'][Bd]:.0f} tokens/s", flush=True)

    modes = [m for m in args.decode_modes.split(",") if m]
    if modes:
        out["decode_modes"] = []
    for Bd in batches if modes else ():
        for row in decode_modes(gen, Bd, modes, args.steps, device):
            out["decode_modes"].append(row)
            print(f"decode B={Bd} {row['mode']}: {row['tokens_per_s']:.0f} tokens/s at a full window of "
                  f"{row['context']} (first step {row['first_step_s']:.2f} s)", flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1))

    first = True
    for B in batches:
        for R in (int(r) for r in args.rollouts.split(",")):
            real = torch.randint(2, 300, (B, 5 + R), device=device)
            paths = ["segment_sums"] + (["per_token_weight_grads"] if B in old_at else [])
            for path in paths:
                gen.segment_grads = path == "segment_sums"
                for attempt in ((1, 2) if first else (2,)):
                    first = False
                    k0 = _compiled_kernels()
                    if device.type == "cuda":
                        torch.cuda.reset_peak_memory_stats()
                    gen.zero_grad(set_to_none=True)
                    t0 = time.perf_counter()
                    generator_adversarial_step(gen, disc, RSGAN(), real, 5, R, 128, beta=2.0)
                    _sync(device)
                    sec = time.perf_counter() - t0
                    row = {"batch": B, "rollout_len": R, "path": path,
                           "cache": "cold" if attempt == 1 else "warm", "seconds": sec,
                           "tokens_per_s": B * R / sec, "kernels_compiled": _compiled_kernels() - k0}
                    if device.type == "cuda":
                        row["max_memory_allocated"] = torch.cuda.max_memory_allocated()
                    out["adversarial"].append(row)
                    print(f"adversarial B={B} R={R} {path} ({row['cache']}): {sec:.2f} s, "
                          f"{row['tokens_per_s']:.0f} tokens/s, {row['kernels_compiled']} kernels compiled"
                          + (f", peak {row['max_memory_allocated'] / 2**20:.0f} MiB"
                             if "max_memory_allocated" in row else ""), flush=True)
                    if args.json:
                        Path(args.json).write_text(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
