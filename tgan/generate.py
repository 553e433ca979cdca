"""python -m tgan.generate: sample MIDI from a trained generator.

    python -m tgan.generate --model bach-tiny --seconds 20                   # the bundled model
    python -m tgan.generate --checkpoint runs/ppo_gp-... --num 4 --length 4096
    python -m tgan.generate --checkpoint RUN --primer piece.mid --primer-seconds 10 --seconds 60
    python -m tgan.generate --checkpoint RUN --primer-data ../maestro --primer-split test --primer-index 3
    python -m tgan.generate --checkpoint models/bach-ppo --num 2 --seconds 30   # an exported model
    python -m tgan.generate --checkpoint RUN --candidates 16 --select rerank --critic critics/bach

A command line over ``tgan.load(...).generate(...)`` (tgan.api).
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

from tgan.metrics.evaluation import SAMPLES_SIDECAR as SIDECAR


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tgan.generate", description="Write MIDI samples from a checkpoint.")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--checkpoint", help="a run directory (its newest checkpoint), a checkpoint directory, or a "
                     "model folder written by python -m tgan.export")
    src.add_argument("--model", help="a bundled model (bach-tiny) or a Hugging Face Hub model id (org/name)")
    p.add_argument("--out", default=None, help="output folder (default: <run>/generated, or "
                   "./generated for a model folder); samples.json there records how each file was made")
    p.add_argument("--overwrite", action="store_true", help="replace samples of the same names")
    p.add_argument("--num", type=int, default=1, help="samples (one batch) (default 1)")
    p.add_argument("--length", type=int, default=4096, help="tokens per sample, primer included (default 4096)")
    p.add_argument("--seconds", type=float, default=None, help="stop once every sample spans this many seconds "
                   "(--length still caps the tokens)")
    p.add_argument("--primer", default=None, help="a MIDI file to continue")
    p.add_argument("--primer-data", default=None, help="continue a piece of this data set (folder or 'bach')")
    p.add_argument("--primer-split", default="test", choices=("train", "validation", "test"),
                   help="split of --primer-data (default test)")
    p.add_argument("--primer-index", type=int, default=0, help="piece index within --primer-split (default 0)")
    p.add_argument("--primer-seconds", type=float, default=None, help="use the primer's first N seconds")
    p.add_argument("--primer-tokens", type=int, default=None, help="use the primer's first N tokens (default 50)")
    p.add_argument("--temperature", type=float, default=0.95, help="sampling temperature (default 0.95)")
    p.add_argument("--top-k", type=int, default=32, help="keep the k most likely tokens, 0 = all (default 32)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, 1 = off (default 1.0)")
    p.add_argument("--context", type=int, default=None, help="positions a token attends to (default: eval memory)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    g = p.add_argument_group("selection by a critic (python -m tgan.critic trains one)")
    g.add_argument("--candidates", type=int, default=1, metavar="N",
                   help="candidates drawn per sample, one kept by the critic (default 1: no selection)")
    g.add_argument("--select", default="rerank", choices=("rerank", "sir"),
                   help="rerank: keep the highest critic score; sir: draw in proportion to exp(score / tau) "
                        "(default rerank)")
    g.add_argument("--critic", default=None, metavar="DIR", help="critic folder trained against this generator "
                   "(default: the model folder's own, exported with --with-critic)")
    g.add_argument("--select-every", type=int, default=None, metavar="T",
                   help="choose every T tokens along the piece instead of once per piece")
    g.add_argument("--tau", type=float, default=1.0, help="temperature of --select sir (default 1.0)")
    return p


def primer_tokens(args, vocab) -> np.ndarray | None:
    """The primer as token ids, cut to --primer-seconds or --primer-tokens (ValueError if bad)."""
    from tgan.api import DEFAULT_PRIMER_TOKENS, primer_to_tokens

    if args.primer and args.primer_data:
        raise ValueError("give either --primer or --primer-data, not both")
    if args.primer:
        return primer_to_tokens(args.primer, vocab, args.primer_seconds, args.primer_tokens)
    if not args.primer_data:
        return None
    from tgan.gan.data_feed import DataFeed

    feed = DataFeed(args.primer_data, vocab.preset, progress=True)
    n = feed.num_pieces(args.primer_split)
    if not 0 <= args.primer_index < n:
        raise ValueError(f"--primer-index {args.primer_index} is out of range: split "
                         f"{args.primer_split!r} of {args.primer_data} has {n} pieces")
    toks = feed.piece(args.primer_split, args.primer_index)
    return primer_to_tokens(toks, vocab, args.primer_seconds,
                            args.primer_tokens or (None if args.primer_seconds else DEFAULT_PRIMER_TOKENS))


def _check_args(parser, args) -> None:
    for name in ("num", "length"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}")
    for name in ("seconds", "primer_seconds"):
        value = getattr(args, name)
        if value is not None and not value > 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    for name in ("context", "primer_tokens"):
        value = getattr(args, name)
        if value is not None and value <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {value}")
    if args.primer_index < 0:
        parser.error(f"--primer-index must be >= 0, got {args.primer_index}")
    if args.candidates <= 0:
        parser.error(f"--candidates must be > 0, got {args.candidates}")
    if args.select_every is not None and args.select_every <= 0:
        parser.error(f"--select-every must be > 0, got {args.select_every}")
    if not args.tau > 0:
        parser.error(f"--tau must be > 0, got {args.tau}")
    if not args.temperature > 0:
        parser.error(f"--temperature must be > 0, got {args.temperature}")
    if args.top_k < 0:
        parser.error(f"--top-k must be >= 0 (0 = all tokens), got {args.top_k}")
    if not 0 < args.top_p <= 1:
        parser.error(f"--top-p must be in (0, 1] (1 = off), got {args.top_p}")


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    _check_args(parser, args)
    from tgan.api import Generator, load, resolve_device
    from tgan.ops import backend_name

    if args.out and Path(args.out).exists() and not Path(args.out).is_dir():
        print(f"error: --out {args.out} is a file; give a folder for the samples", file=sys.stderr)
        return 2
    try:
        backend_name()  # a bad TGAN_BACKEND is an error before any work, not a traceback
        device = resolve_device(args.device, "--device")
        model: Generator = load(args.checkpoint or args.model, device)
        primer = primer_tokens(args, model.vocab)
    except (ValueError, OSError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if primer is not None and len(primer) >= args.length:
        print(f"error: the primer has {len(primer)} tokens, not fewer than --length {args.length}",
              file=sys.stderr)
        return 2
    src = model.source
    out = Path(args.out) if args.out else (
        src.parents[1] / "generated" if (src / "meta.json").is_file() else Path("generated"))
    names = [f"sample_{args.seed}_{i:03d}.mid" for i in range(args.num)]
    taken = [n for n in names if (out / n).exists()]
    if taken and not args.overwrite:
        print(f"error: {out} already holds {', '.join(taken[:3])}{' ...' if len(taken) > 3 else ''}"
              " from an earlier run: choose another --seed or --out, or pass --overwrite",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    try:
        samples = model.generate(args.num, args.length, seconds=args.seconds, primer=primer,
                                 temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                                 seed=args.seed, context=args.context, progress=True,
                                 candidates=args.candidates, select=args.select, critic=args.critic,
                                 select_every=args.select_every, tau=args.tau)
    except ValueError as e:  # a critic that is missing or was trained against another generator
        print(f"error: {e}", file=sys.stderr)
        return 2
    dt = time.time() - t0
    record = {}
    for name, sample in zip(names, samples):
        path = sample.save(out / name)
        info = sample.info()
        info["primer"] = args.primer or (f"{args.primer_data}:{args.primer_split}:"
                                         f"{args.primer_index}" if args.primer_data else None)
        record[name] = info
        score = f", critic score {info['critic_score']:+.3f}" if "critic_score" in info else ""
        ended = ", ended by the generator (EOS) before --length" if sample.ended_by_eos else ""
        print(f"wrote {path} ({sample.length} tokens, {sample.seconds:.1f} s{ended}, "
              f"{info['repaired_events']} repaired events{score})")
    write_sidecar(out, record)
    sel = samples[0].settings.get("selection")
    if sel:
        print(f"selection: {sel['select']} of {sel['candidates']} candidates"
              + (f" every {sel['select_every']} tokens" if sel["select_every"] else " per piece")
              + f" by {sel['critic']}: {sel['tokens_per_kept']:.1f} generated tokens per kept token, "
              f"{sel['seconds']:.1f} s ({sel['critic_seconds']:.1f} s scoring)")
    total = sum(len(s.tokens) for s in samples)
    print(f"{total / dt:.0f} tokens/s ({args.num} x {len(samples[0].tokens)} tokens in {dt:.1f} s "
          f"on {device}); how each file was made: {out / SIDECAR}")
    return 0




def write_sidecar(folder: Path, record: dict) -> Path:
    """Merge ``record`` (file name -> how it was made) into the folder's samples.json."""
    path = folder / SIDECAR
    try:
        old = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        old = {}
    old.update(record)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(old, indent=1, sort_keys=True) + "\n")
    tmp.replace(path)
    return path


if __name__ == "__main__":
    sys.exit(main())
