"""python -m tgan.generate: sample MIDI from a trained generator.

    python -m tgan.generate --checkpoint runs/ppo_gp-... --num 4 --length 4096
    python -m tgan.generate --checkpoint RUN --primer piece.mid --primer-seconds 10 --seconds 60
    python -m tgan.generate --checkpoint RUN --primer-data ../maestro --primer-split test --primer-index 3
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tgan.generate", description="Write MIDI samples from a checkpoint.")
    p.add_argument("--checkpoint", required=True, help="a run directory (its newest checkpoint) or a checkpoint directory")
    p.add_argument("--out", default=None, help="output folder (default: <run>/generated)")
    p.add_argument("--num", type=int, default=1, help="samples (one batch) (default 1)")
    p.add_argument("--length", type=int, default=4096, help="tokens per sample, primer included (default 4096)")
    p.add_argument("--seconds", type=float, default=None, help="stop once every sample spans this many seconds "
                   "(--length still caps the tokens)")
    p.add_argument("--primer", default=None, help="a MIDI file to continue")
    p.add_argument("--primer-data", default=None, help="continue a piece of this data set (folder or 'bach')")
    p.add_argument("--primer-split", default="test", help="split of --primer-data (default test)")
    p.add_argument("--primer-index", type=int, default=0, help="piece index within --primer-split (default 0)")
    p.add_argument("--primer-seconds", type=float, default=None, help="use the primer's first N seconds")
    p.add_argument("--primer-tokens", type=int, default=None, help="use the primer's first N tokens (default 50)")
    p.add_argument("--temperature", type=float, default=0.95, help="sampling temperature (default 0.95)")
    p.add_argument("--top-k", type=int, default=32, help="keep the k most likely tokens, 0 = all (default 32)")
    p.add_argument("--top-p", type=float, default=1.0, help="nucleus sampling mass, 1 = off (default 1.0)")
    p.add_argument("--context", type=int, default=None, help="positions a token attends to (default: eval memory)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default 0)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    return p


def load_generator(path, device):
    """(generator in eval mode, vocab, checkpoint) from a run or checkpoint directory."""
    from tgan.data.vocab import Vocab
    from tgan.model import GeneratorConfig, TransformerXL
    from tgan.model.checkpoint import load_checkpoint

    ck = load_checkpoint(path, kind=("run", "generator"), map_location="cpu")
    if "gen" not in ck.models or "generator" not in ck.configs:
        raise ValueError(f"checkpoint {ck.path} holds no generator")
    gen = TransformerXL(GeneratorConfig.from_dict(ck.configs["generator"]))
    gen.load_state_dict(ck.models["gen"])
    return gen.to(device).eval(), Vocab.by_name(ck.configs.get("vocab", "maestro")), ck


def primer_tokens(args, vocab) -> np.ndarray | None:
    """The primer as token ids, cut to --primer-seconds or --primer-tokens."""
    from tgan.data.events import encode
    from tgan.data.midi import read_midi
    from tgan.data.notes import Performance

    if args.primer and args.primer_data:
        raise ValueError("give either --primer or --primer-data, not both")
    if args.primer:
        perf = read_midi(args.primer)
        if args.primer_seconds is not None:
            perf = Performance([n for n in perf.notes if n.start < args.primer_seconds], perf.tempos)
            perf.notes = [n if n.end <= args.primer_seconds else type(n)(n.pitch, n.velocity, n.start,
                          args.primer_seconds, n.track) for n in perf.notes]
        toks = encode(perf, vocab, out_of_range="drop")
    elif args.primer_data:
        from tgan.gan.data_feed import DataFeed

        feed = DataFeed(args.primer_data, vocab.preset, progress=True)
        toks = feed.piece(args.primer_split, args.primer_index)
        if args.primer_seconds is not None:
            t = np.cumsum(np.where(vocab.kinds[toks] == 3, vocab.values[toks], 0)) / 100.0
            toks = toks[: int(np.searchsorted(t, args.primer_seconds, side="right"))]
    else:
        return None
    if args.primer_seconds is None:
        toks = toks[: args.primer_tokens or 50]
    elif args.primer_tokens:
        toks = toks[: args.primer_tokens]
    if len(toks) == 0:
        raise ValueError(f"the primer {args.primer or args.primer_data} yields no tokens")
    return np.asarray(toks, dtype=np.int64)


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("num", "length"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name} must be > 0, got {getattr(args, name)}")
    if args.top_k < 0 or not 0 < args.top_p <= 1 or args.temperature <= 0:
        parser.error("--top-k must be >= 0, --top-p in (0, 1], --temperature > 0")
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    from tgan.data.events import tokens_to_midi
    from tgan.gan.sampling import generate_tokens

    try:
        gen, vocab, ck = load_generator(args.checkpoint, device)
        primer = primer_tokens(args, vocab)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if primer is not None and len(primer) >= args.length:
        print(f"error: the primer has {len(primer)} tokens, not fewer than --length {args.length}", file=sys.stderr)
        return 2
    token_seconds = torch.tensor(np.where(vocab.kinds[: vocab.lm_size] == 3, vocab.values[: vocab.lm_size], 0) / 100.0,
                                 dtype=torch.float32)
    out = Path(args.out) if args.out else Path(ck.path).parents[1] / "generated"
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tqdm(total=args.length, desc="tokens", unit="tok") as bar:
        toks = generate_tokens(gen, args.num, args.length, primer=None if primer is None else torch.from_numpy(primer),
                               temperature=args.temperature, top_k=args.top_k, top_p=args.top_p,
                               context=args.context, eos_id=vocab.eos_id, seed=args.seed, device=device,
                               progress=bar, max_seconds=args.seconds, token_seconds=token_seconds)
    dt = time.time() - t0
    for i, row in enumerate(toks.cpu().numpy()):
        path = out / f"sample_{args.seed}_{i:03d}.mid"
        stats = tokens_to_midi(row, vocab, path)
        print(f"wrote {path} ({len(row)} tokens, {stats.repaired} repaired events)")
    print(f"{toks.numel() / dt:.0f} tokens/s ({args.num} x {toks.shape[1]} tokens in {dt:.1f} s on {device})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
