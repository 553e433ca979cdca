"""Where the time of a rollout goes on a new machine: per-step times from the first step on.

    python benchmarks/rollout_probe.py [--preset small] [--batch 4] [--rollouts 256,2048]

Prints, as it goes (so a run stopped at a time limit still says where it was):
  - decode: the first 16 steps of a no-grad decode one by one (Triton compiles its
    specializations there), then the mean of the next steps, and the Triton kernels compiled;
  - adversarial: ``generator_adversarial_step`` (rollout with gradient, TBPTT segments of 128,
    scored by the BERT discriminator) at each rollout length, twice (the first pays the
    compiles), with tokens/s and the peak device memory (CUDA).
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--preset", default="small")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=128, help="decode steps (default 128)")
    p.add_argument("--rollouts", default="256,2048", help="rollout lengths, comma separated")
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
                 "preset": args.preset, "batch": args.batch, "decode_first_ms": [], "adversarial": []}
    B = args.batch

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

    for R in (int(r) for r in args.rollouts.split(",")):
        real = torch.randint(2, 300, (B, 5 + R), device=device)
        for attempt in (1, 2):
            k0 = _compiled_kernels()
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            gen.zero_grad(set_to_none=True)
            t0 = time.perf_counter()
            generator_adversarial_step(gen, disc, RSGAN(), real, 5, R, 128, beta=2.0)
            _sync(device)
            sec = time.perf_counter() - t0
            row = {"rollout_len": R, "attempt": attempt, "seconds": sec, "tokens_per_s": B * R / sec,
                   "kernels_compiled": _compiled_kernels() - k0}
            if device.type == "cuda":
                row["max_memory_allocated"] = torch.cuda.max_memory_allocated()
            out["adversarial"].append(row)
            print(f"adversarial step R={R} #{attempt}: {sec:.2f} s, {row['tokens_per_s']:.0f} tokens/s, "
                  f"{row['kernels_compiled']} kernels compiled"
                  + (f", peak {row['max_memory_allocated'] / 2**20:.0f} MiB" if "max_memory_allocated" in row else ""),
                  flush=True)
            if args.json:
                Path(args.json).write_text(json.dumps(out, indent=1))
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
