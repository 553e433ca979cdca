"""python -m tgan.critic: train a critic against one generator's samples, for selection when sampling.

    python -m tgan.critic --generator runs/mle-... --out critics/bach-mle        # bundled corpus, tiny
    python -m tgan.critic --generator models/maestro-mle --data ../maestro --out critics/maestro
    python -m tgan.critic --generator RUN --out critics/bach-mle --resume          # continue a stopped one
    python -m tgan.generate --checkpoint RUN --candidates 16 --select rerank --critic critics/bach-mle
    python -m tgan.export RUN --out models/bach-mle --with-critic critics/bach-mle

Every CriticConfig field is a flag (``--help`` lists them); see ``tgan.critic.train``.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time

from tgan.critic.train import CriticConfig
from tgan.gan.config import add_dataclass_flags, config_from_flags


def build_parser() -> argparse.ArgumentParser:
    """One flag per CriticConfig field, plus --out, --resume and --no-progress."""
    p = argparse.ArgumentParser(prog="python -m tgan.critic",
                                description="Train a BERT critic of real music against one generator's "
                                            "samples (its logit estimates log p_data / p_G), for "
                                            "python -m tgan.generate --candidates N --critic DIR.")
    p.add_argument("--out", required=True, metavar="DIR", help="folder of the critic (and its checkpoints)")
    add_dataclass_flags(p, CriticConfig, required=("generator",))
    p.add_argument("--resume", action="store_true", help="continue the newest checkpoint in --out")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    return p


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = config_from_flags(parser, args, CriticConfig)
    from tgan.critic.train import critic_summary, train_critic
    from tgan.data.errors import DataError

    t0 = time.perf_counter()
    try:
        meta = train_critic(cfg, args.out, resume=args.resume, progress=not args.no_progress)
    except (ValueError, DataError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"critic: {args.out}")
    print("  " + critic_summary(meta))
    print(f"  this call: {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
