"""python -m tgan.train: MLE pre-training, discriminator pre-training, adversarial training.

    python -m tgan.train --loss ppo_gp                      # bundled Bach corpus, all stages
    python -m tgan.train --loss rsgan_gp --data /path/to/maestro-v3.0.0 --preset paper
    torchrun --nproc_per_node 8 -m tgan.train --loss ppo_gp --data ...
    python -m tgan.train --loss wgan_gp --init-from runs/ppo_gp-...  # reuse that run's pre-training

Every TrainConfig field is a flag (``--help`` lists them with each preset's defaults). With no
flags the preset is ``tiny`` on a CPU and ``small`` on a GPU, whose schedule is the paper's
(100k MLE + 20k D pre-training + 100k adversarial steps); ``--dry-run`` prints the resolved
configuration and the estimated duration and trains nothing.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time

import torch

from tgan.gan import distributed as D
from tgan.gan.config import build_parser, config_from_args, describe


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    info = D.init_distributed(args.device or "")
    logging.basicConfig(level=logging.INFO if info.is_main else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    on_gpu = torch.cuda.is_available() and not (args.device or "").startswith("cpu")
    from tgan.data.errors import DataError
    from tgan.data.sources import resolve_source
    try:
        cfg = config_from_args(args, on_gpu)
    except ValueError as e:
        parser.error(str(e))
    try:  # the data path is checked (not read) before anything is printed or trained
        source = resolve_source(cfg.data or None)
    except DataError as e:
        parser.error(f"--data {cfg.data!r}: {e}")
    device = cfg.device or ("cuda" if on_gpu else "cpu")
    from tgan.gan.run_state import inherited_stages

    skipped = inherited_stages(cfg)
    if not cfg.run_dir:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        if info.enabled:  # every rank must agree on the directory
            obj = [stamp]
            torch.distributed.broadcast_object_list(obj, src=0)
            stamp = obj[0]
        cfg.run_dir = f"runs/{cfg.loss}-{stamp}"
    if args.dry_run:  # everything a run resolves and checks, short of reading the data
        print(describe(cfg, device, skipped))
        print(json.dumps({**dataclasses.asdict(cfg), "device": device, "data": source.describe()}, indent=1))
        D.cleanup(info)
        return 0
    if info.is_main:
        logging.getLogger("tgan.train").info("configuration:\n%s", describe(cfg, device, skipped))
    from tgan.model.checkpoint import latest_checkpoint

    if not args.resume and latest_checkpoint(cfg.run_dir) is not None:
        parser.error(f"--run-dir {cfg.run_dir} already holds checkpoints: pass --resume to continue that run, "
                     "or choose another --run-dir")
    from tgan.gan.trainer import TrainingDiverged, train
    from tgan.model.checkpoint import CheckpointError

    try:
        summary = train(cfg, resume=args.resume, info=info)
    except (TrainingDiverged, DataError, FileNotFoundError, CheckpointError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    finally:
        D.cleanup(info)
    if info.is_main:
        print(f"run directory: {cfg.run_dir}")
        for k, v in summary.get("printable", {}).items():
            print(f"  {k}: {v}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
