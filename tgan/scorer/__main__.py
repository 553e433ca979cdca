"""python -m tgan.scorer: pre-train the BERT masked-LM that scores CA and PLL for every row of Table 1.

    python -m tgan.scorer --out scorers/bach                          # bundled corpus, tiny preset
    python -m tgan.scorer --data ../maestro --preset small --out scorers/maestro
    python -m tgan.scorer --out scorers/bach --resume                 # continue a stopped one
    python -m tgan.evaluate --scorer scorers/bach --samples RUN/samples --checkpoint RUN

Train it once per data set and vocabulary, then pass it to every evaluation (see
``tgan.scorer.train``). Every ScorerConfig field is a flag (``--help`` lists them).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from tgan.gan.config import add_dataclass_flags, config_from_flags
from tgan.scorer.train import ScorerConfig


def build_parser() -> argparse.ArgumentParser:
    """One flag per ScorerConfig field, plus --out, --resume and --no-progress."""
    p = argparse.ArgumentParser(prog="python -m tgan.scorer",
                                description="Pre-train the scorer (a BERT masked-LM) that computes CA and "
                                            "PLL in python -m tgan.evaluate --scorer.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the scorer (and its checkpoints)")
    add_dataclass_flags(p, ScorerConfig, required=())
    p.add_argument("--resume", action="store_true", help="continue the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_flags(parser, args, ScorerConfig)
    from tgan.data.errors import DataError
    from tgan.scorer.train import train_scorer

    t0 = time.perf_counter()
    try:
        meta = train_scorer(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    b = meta["bert"]
    print(f"scorer: {args.out}")
    print(f"  data: {meta['data']['source']} (vocab {meta['vocab']}, key {meta['data']['key']})")
    print(f"  BERT: {b['n_layer']} layers x {b['d_model']}, {b['n_head']} heads, max_len {b['max_len']}")
    print(f"  validation MLM accuracy: {meta['mlm_accuracy']:.4f} after {meta['steps']} steps "
          f"({meta['validation_chunks']} chunks)")
    print(f"  training time: {meta['train_seconds']:.0f} s (this call {time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
