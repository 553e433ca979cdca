"""python -m tgan.experiment: adversarial losses against the MLE baseline at equal compute.

    python -m tgan.experiment --data ../maestro --out experiments/maestro --seeds 3
    python -m tgan.experiment --out experiments/bach --arms mle,rsgan_gp --seeds 2 --gan-steps 2000
    python -m tgan.experiment --out experiments/bach            # again: continues where it stopped
    python -m tgan.experiment --out experiments/bach --arms mle,ppo_gp,ppo_gp@gen-weight=0.1@beta-max=10

Steps, each recorded in ``OUT/experiment.json`` when it finishes, so a killed experiment run again
with the same options continues where it stopped (a training run cut in the middle resumes from
its newest checkpoint):

  1. one shared pre-training (``OUT/pretrain``): MLE of G and masked-LM pre-training of the BERT D
     (``python -m tgan.train`` with ``--gan-steps 0``), and one scorer (``OUT/scorer``,
     ``python -m tgan.scorer``) that scores CA and PLL of every arm;
  2. every arm and seed (``OUT/arms/ARM/seedS``) trained from that pre-training with
     ``--init-from``: the adversarial arms for ``--gan-steps`` iterations (after a D warm-up), the
     ``mle`` arm MLE continued for the same iterations (the same MLE steps, no adversarial ones),
     the ``mle_wall`` arm MLE continued for the wall-clock the adversarial arms of the same seed
     spent on their warm-up and stage (trained after them);
  3. samples of every run with the same seeds and primers: ``--num-samples`` unconditional ones and
     as many continuing the first ``--primer-tokens`` tokens of held-out (test split) pieces;
  4. Table 1 of every run by the same scorer (``tgan.table1.evaluate_samples``), then ``OUT/report.md``,
     ``OUT/report.json`` and the figures in ``OUT/plots`` (mean ± standard deviation over seeds),
     with D's held-out AUC along each adversarial arm's stage beside its CA.

Every ``python -m tgan.train`` flag not named here (``--preset``, ``--mle-steps``, ``--disc-steps``,
``--gan-steps``, ``--rollout-len``, ``--gen-weight``, ``--beta-max``, ``--gan-every``, ``--d-lr``,
``--freeze-layers``, ...) is passed to every training run; ``--loss``, ``--disc``, ``--run-dir``,
``--init-from``, ``--seed`` and ``--resume`` are set by the experiment.

An arm may carry flags of its own, joined by ``@`` (``ppo_gp@gen-weight=0.1``, a boolean as
``@no-disc-prefix``): a variant, trained as its own arm (``OUT/arms/ppo_gp@gen-weight=0.1``) from
the same pre-training, scorer and primers, which is how a setting is swept. Arms added to a
finished experiment run alone. Flags that would change the shared pre-training or the equal
compute (``NOT_PER_ARM``) are refused inside an arm.
"""
from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

# arm name -> (loss, discriminator)
ARMS = {"mle": ("mle", "bert"), "wgan_gp": ("wgan_gp", "bert"), "rsgan": ("rsgan", "bert"),
        "rsgan_gp": ("rsgan_gp", "bert"), "ppo_gp": ("ppo_gp", "bert"), "wgan_gp_cnn": ("wgan_gp", "cnn"),
        "mle_wall": ("mle", "bert")}
# mle_wall: MLE continued for the wall-clock the adversarial arms of the same seed spent on their
# D warm-up and adversarial stage (their mean), where "mle" gets their iteration count
WALL_ARM = "mle_wall"
RESERVED = ("loss", "disc", "run_dir", "init_from", "seed", "resume", "dry_run", "data", "vocab", "device")
# flags an arm variant may not set: they would change the shared pre-training or the equal compute
NOT_PER_ARM = ("preset", "batch_size", "mle_steps", "disc_steps", "disc_lr", "disc_len", "mask", "gan_steps",
               "mle_seconds")
STATE = "experiment.json"
OPTION_DEFAULTS = {"critic_steps": 0, "critic_bert": ""}
UNCOND_SEED, PRIMED_SEED = 1000, 2000  # sampling seeds, the same for every arm and training seed


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tgan.experiment", allow_abbrev=False,  # a training flag is never read as a prefix of ours
        description="Train the MLE baseline and adversarial arms from one shared pre-training at equal "
                    "compute, sample and score them all with one scorer, and write report.md, report.json "
                    "and plots. Any other python -m tgan.train flag (--preset, --mle-steps, --gan-steps, "
                    "...) is passed to every training run.")
    p.add_argument("--out", required=True, metavar="DIR", help="experiment folder (run again to continue)")
    p.add_argument("--data", default="", help="MAESTRO folder, folder of MIDI files, or '' for the bundled "
                   "Bach corpus (default '')")
    p.add_argument("--vocab", default="maestro", choices=("maestro", "full"), help="event vocabulary (default maestro)")
    p.add_argument("--device", default="", help="cpu | cuda ('' = cuda when available)")
    p.add_argument("--arms", default=",".join(ARMS), help=f"comma-separated arms out of {', '.join(ARMS)} "
                   "(default all); an arm may carry its own training flags, joined by @: ppo_gp@gen-weight=0.1"
                   "@beta-max=10 (a variant: its own runs, from the same pre-training; --no-disc-prefix is "
                   "written @no-disc-prefix). Arms added to a finished experiment run with its pre-training")
    p.add_argument("--seeds", type=int, default=1, metavar="S", help="training seeds 0..S-1 per arm (default 1)")
    p.add_argument("--num-samples", type=int, default=4, metavar="N",
                   help="samples per run and kind (unconditional, primed) (default 4)")
    p.add_argument("--sample-tokens", type=int, default=2048, metavar="T",
                   help="tokens per sample, primer included (default 2048)")
    p.add_argument("--primer-tokens", type=int, default=50, metavar="P",
                   help="real tokens a primed sample continues (default 50, the paper's)")
    p.add_argument("--scorer-preset", default="tiny", choices=("tiny", "small", "paper"),
                   help="size of the scorer's BERT (default tiny)")
    p.add_argument("--scorer-steps", type=int, default=0, help="scorer training steps (0 = its preset's)")
    p.add_argument("--eval-pieces", type=int, default=None, metavar="N",
                   help="data pieces the samples are compared with (default all of the train split)")
    p.add_argument("--nll-chunks", type=int, default=64, help="validation chunks scored for NLL, 0 = all (default 64)")
    p.add_argument("--critic-steps", type=int, default=0, help="training steps of each selection arm's critic "
                   "(python -m tgan.critic; 0 = its preset's)")
    p.add_argument("--critic-bert", default="", metavar="DIR", help="the BERT the critics start from ('' = the "
                   "shared pre-training's masked-LM BERT); never the scorer")
    p.add_argument("--no-plots", action="store_true", help="no figures (they need matplotlib)")
    return p


def selection_spec(spec: str) -> tuple[str, dict | None]:
    """(the trained arm, its selection or None) of an --arms entry: ``mle+rerank@16`` ->
    ``("mle", {"select": "rerank", "candidates": 16, "select_every": None, "tau": 1.0})``;
    ``mle+sir@16/tau2`` and ``mle+rerank@8/every256`` set tau and select_every. Raises ValueError
    naming the entry when the selection part is not of that form."""
    from tgan.critic.select import SELECTIONS

    trained, plus, sel = spec.partition("+")
    if not plus:
        return spec, None
    how, at, rest = sel.partition("@")
    count, *opts = rest.split("/")
    out = {"select": how, "candidates": None, "select_every": None, "tau": 1.0}
    try:
        if how not in SELECTIONS or not at:
            raise ValueError
        out["candidates"] = int(count)
        for o in opts:
            if o.startswith("every"):
                out["select_every"] = int(o[5:])
            elif o.startswith("tau"):
                out["tau"] = float(o[3:])
            else:
                raise ValueError
    except ValueError:
        raise ValueError(f"--arms: {spec!r}: a selection arm is ARM+SELECT@N[/everyT][/tauX] with SELECT one of "
                         f"{', '.join(SELECTIONS)} (mle+rerank@16, mle+sir@16/tau2, mle+rerank@8/every256)") from None
    if out["candidates"] < 2 or (out["select_every"] is not None and out["select_every"] <= 0) or not out["tau"] > 0:
        raise ValueError(f"--arms: {spec!r}: N must be >= 2, every > 0 and tau > 0")
    return trained, out


def arm_folder(spec: str) -> str:
    """The folder name of an arm under OUT/arms (a selection arm's '/' becomes '_')."""
    return spec.replace("/", "_")


def arm_flags(spec: str) -> tuple[str, list[str]]:
    """(base arm, its training flags) of an --arms entry: ``ppo_gp@gen-weight=0.1@beta-max=10`` ->
    ``("ppo_gp", ["--gen-weight", "0.1", "--beta-max", "10"])``; a selection arm's are those of
    the arm it selects from (``mle+rerank@16`` -> ``("mle", [])``)."""
    base, *parts = spec.partition("+")[0].split("@")
    flags = []
    for part in parts:
        name, eq, value = part.partition("=")
        flags += ["--" + name] + ([value] if eq else [])
    return base, flags


def adversarial_arms(arms) -> list[str]:
    """The arms of ``arms`` that train adversarially (not mle, not mle_wall, not a selection arm)."""
    return [a for a in arms if ARMS[arm_flags(a)[0]][0] != "mle" and "+" not in a]


def parse(argv=None) -> tuple[argparse.Namespace, list[str]]:
    """(experiment options, the flags passed to every training run); exits 2 on a bad flag."""
    from tgan.gan.config import build_parser as train_parser, config_from_args

    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    arms = [a.strip() for a in args.arms.split(",") if a.strip()]
    for a in arms:
        try:
            selection_spec(a)
        except ValueError as e:
            parser.error(str(e))
    bad = [a for a in arms if arm_flags(a)[0] not in ARMS]
    if bad or not arms:
        parser.error(f"--arms: unknown arm(s) {', '.join(bad) or '(none given)'}; choose from {', '.join(ARMS)}")
    args.arms = list(dict.fromkeys(arms))
    if any(arm_flags(a)[0] == WALL_ARM for a in args.arms) and not adversarial_arms(args.arms):
        parser.error(f"--arms: {WALL_ARM} gets the wall-clock of the adversarial arms; name at least one")
    for name in ("seeds", "num_samples", "sample_tokens", "primer_tokens"):
        if getattr(args, name) <= 0:
            parser.error(f"--{name.replace('_', '-')} must be > 0, got {getattr(args, name)}")
    if args.primer_tokens >= args.sample_tokens:
        parser.error(f"--primer-tokens ({args.primer_tokens}) must be smaller than --sample-tokens "
                     f"({args.sample_tokens})")
    if args.critic_bert and Path(args.critic_bert).resolve() == (Path(args.out) / "scorer").resolve():
        parser.error(f"--critic-bert {args.critic_bert} is the experiment's scorer: the critic that selects must "
                     "not be the scorer that measures the selection (its CA would reward its own choice)")
    if args.critic_steps < 0:
        parser.error(f"--critic-steps must be >= 0, got {args.critic_steps}")
    if args.scorer_steps < 0 or args.nll_chunks < 0 or (args.eval_pieces is not None and args.eval_pieces <= 0):
        parser.error("--scorer-steps and --nll-chunks must be >= 0, --eval-pieces > 0")
    tp = train_parser(prog="python -m tgan.experiment (training flags)")
    targs = tp.parse_args(extra)  # exits 2 naming an unknown training flag
    given = [n for n in RESERVED if getattr(targs, n) not in (None, False)]
    if given:
        parser.error(f"--{given[0].replace('_', '-')} is set by the experiment for every run "
                     f"({', '.join('--' + n.replace('_', '-') for n in RESERVED)}); use the experiment's "
                     "own --data, --vocab, --device")
    try:
        config_from_args(tp.parse_args(extra + _common(args)), on_gpu=False)
    except ValueError as e:
        parser.error(str(e))
    for spec in args.arms:
        _check_variant(parser, tp, spec, extra + _common(args))
    return args, extra


def _check_variant(parser, tp, spec: str, common: list[str]) -> None:
    """Exit 2 naming the arm when a variant's flags are unknown, reserved, bad, or would change the
    shared pre-training or the equal compute."""
    from tgan.gan.config import config_from_args

    base, flags = arm_flags(spec)
    if not flags:
        return
    try:
        vargs = tp.parse_args(flags)
    except SystemExit:
        parser.error(f"--arms: arm {spec!r}: {' '.join(flags)} is not a training flag (write flag=value)")
    given = [n for n in RESERVED + NOT_PER_ARM if getattr(vargs, n) not in (None, False)]
    if given:
        parser.error(f"--arms: arm {spec!r} sets --{given[0].replace('_', '-')}, which is the experiment's for "
                     "every arm (pre-training and equal compute stay shared); pass it once, outside --arms")
    try:
        config_from_args(tp.parse_args(common + flags + ["--loss", ARMS[base][0]]), on_gpu=False)
    except (ValueError, SystemExit) as e:
        parser.error(f"--arms: arm {spec!r}: {e}")


def refuse_scorer_as_critic(critic_meta: dict, scorer_folder, critic_folder="the critic") -> None:
    """ValueError when a critic started from the scorer's weights: the critic that selects must not
    be the scorer that measures the selection (its CA would reward its own choice)."""
    from tgan.critic.model import state_fingerprint
    from tgan.scorer.train import load_scorer

    scorer, _ = load_scorer(scorer_folder)
    if critic_meta["init"]["fingerprint"] == state_fingerprint(scorer.state_dict()):
        raise ValueError(f"{critic_folder} started from the scorer's weights ({critic_meta['init']['path']} is "
                         f"{scorer_folder}): the critic that selects must not be the scorer that measures the "
                         "selection")


def _common(args) -> list[str]:
    out = ["--vocab", args.vocab] + (["--data", args.data] if args.data else [])
    return out + (["--device", args.device] if args.device else [])


class Experiment:
    """The steps of one experiment folder, each done once (see the module docstring)."""

    def __init__(self, args: argparse.Namespace, train_flags: list[str]):
        self.args, self.train_flags = args, list(train_flags)
        self.out = Path(args.out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.state_path = self.out / STATE
        options = {"data": args.data, "vocab": args.vocab, "train_flags": self.train_flags,
                   "num_samples": args.num_samples, "sample_tokens": args.sample_tokens,
                   "primer_tokens": args.primer_tokens, "scorer_preset": args.scorer_preset,
                   "scorer_steps": args.scorer_steps, "critic_steps": args.critic_steps,
                   "critic_bert": args.critic_bert}
        self.state = {"options": options, "done": {}}
        if self.state_path.is_file():
            old = json.loads(self.state_path.read_text())
            # options added since an experiment was started count as their defaults there
            diff = [k for k in options if old["options"].get(k, OPTION_DEFAULTS.get(k)) != options[k]]
            if diff:
                raise ValueError(f"--out {self.out} holds an experiment with other options ({', '.join(diff)}: "
                                 f"{old['options'][diff[0]]!r} there, {options[diff[0]]!r} now); rerun with "
                                 "its options, or choose another --out")
            self.state["done"], self.state["started"] = old["done"], old.get("started", {})

    # -- bookkeeping ----------------------------------------------------------------------------
    def _save_state(self) -> None:
        tmp = self.state_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.state, indent=1))
        tmp.replace(self.state_path)

    def _step(self, key: str, fn, run_dir: Path | None = None) -> dict:
        """Run ``fn()`` (returning a dict) unless ``key`` is done; record its result and seconds.

        For a training step (``run_dir``) that an earlier, stopped attempt began, the seconds from
        that attempt's start to the run's newest checkpoint (the work the resumed run keeps) are
        added (``carried_seconds``), so a resumed arm's wall time counts its whole training.
        """
        from tgan.model.checkpoint import latest_checkpoint

        if key in self.state["done"]:
            logger.info("%s: done before, skipped", key)
            return self.state["done"][key]
        started = self.state.setdefault("started", {})
        carried = 0.0
        if run_dir is not None and key in started and latest_checkpoint(run_dir) is not None:
            carried = max(0.0, (latest_checkpoint(run_dir) / "meta.json").stat().st_mtime - started[key])
        started[key] = time.time() - carried
        self._save_state()
        t0 = time.perf_counter()
        info = dict(fn() or {})
        info["seconds"] = time.perf_counter() - t0 + carried
        info["carried_seconds"] = carried
        del started[key]
        self.state["done"][key] = info
        self._save_state()
        return info

    def runs(self) -> list[tuple[str, int]]:
        """(arm, seed) in order; mle_wall last, once the wall-clock it is given is known; selection
        arms after the arm they select from."""
        arms = sorted(self.args.arms, key=lambda a: (arm_flags(a)[0] == WALL_ARM, "+" in a))
        return [(arm, s) for arm in arms for s in range(self.args.seeds)]

    def wall_budget(self, seed: int) -> float:
        """Seconds of the D warm-up and adversarial stage, mean over the adversarial arms of ``seed``."""
        from tgan.experiment_report import after_pretraining_seconds

        return float(np.mean([after_pretraining_seconds(self.state["done"][f"{arm}/seed{seed}/train"])
                              for arm in adversarial_arms(self.args.arms)]))

    # -- steps ----------------------------------------------------------------------------------
    def _train(self, run_dir: Path, flags: list[str]) -> dict:
        """Train one run in ``run_dir`` (continued when it holds a checkpoint): the experiment's
        training flags, then the step's own ``flags``, resolved as ``python -m tgan.train`` does."""
        import torch

        from tgan.gan.config import build_parser as train_parser, config_from_args, describe
        from tgan.gan.run_state import inherited_stages
        from tgan.gan.trainer import train
        from tgan.model.checkpoint import latest_checkpoint

        device = self.args.device or ""
        on_gpu = torch.cuda.is_available() and not device.startswith("cpu")
        flags = self.train_flags + _common(self.args) + flags + ["--run-dir", str(run_dir)]
        cfg = config_from_args(train_parser().parse_args(flags), on_gpu)
        resume = latest_checkpoint(run_dir) is not None  # a run cut in the middle continues
        logger.info("training %s:\n%s", run_dir, describe(cfg, device or ("cuda" if on_gpu else "cpu"),
                                                           inherited_stages(cfg)))
        train(cfg, resume=resume)
        summary = json.loads((run_dir / "summary.json").read_text())
        return {"run_dir": str(run_dir), "resumed": resume,
                "val_nll_last": summary.get("val_nll_last"), "stage_seconds": summary.get("stage_seconds"),
                **{k: summary[k] for k in ("disc_auc", "ppo_auc", "disc_auc_points") if k in summary}}

    def pretrain(self) -> dict:
        return self._train(self.out / "pretrain", ["--loss", "wgan_gp", "--disc", "bert", "--gan-steps", "0",
                                                   "--sample-count", "1", "--seed", "0"])

    def scorer(self) -> dict:
        from tgan.scorer.train import SCORER_META, ScorerConfig, train_scorer
        from tgan.model.checkpoint import latest_checkpoint

        a, out = self.args, self.out / "scorer"
        cfg = ScorerConfig(data=a.data, vocab=a.vocab, preset=a.scorer_preset, steps=a.scorer_steps,
                           device=a.device)
        if (out / SCORER_META).is_file():  # finished before the experiment recorded it
            return {"folder": str(out)}
        meta = train_scorer(cfg, out, resume=latest_checkpoint(out) is not None, progress=True)
        return {"folder": str(out), "mlm_accuracy": meta["mlm_accuracy"]}

    def primers(self) -> dict:
        """The primers, recorded once so every arm (and a resumed experiment) continues the same:
        the first --primer-tokens tokens of held-out pieces (the test split; validation, then
        train where it is empty)."""
        from tgan.gan.data_feed import DataFeed

        feed = DataFeed(self.args.data or None, self.args.vocab, progress=False)
        split = feed.resolve_split("test")
        if split != "test":
            logger.warning("the data set has no test pieces: the primers come from the %s split", split)
        n = feed.num_pieces(split)
        tokens = [feed.piece(split, i % n)[: self.args.primer_tokens].tolist() for i in range(self.args.num_samples)]
        return {"split": split, "pieces": [i % n for i in range(self.args.num_samples)], "tokens": tokens}

    def critic(self, run_dir: Path, folder: Path) -> dict:
        """The critic of a trained run (for its selection arms), from the shared pre-training's BERT
        (or --critic-bert); refused when it would start from the scorer."""
        from tgan.critic.model import is_critic
        from tgan.critic.train import CriticConfig, read_meta, train_critic
        from tgan.model.checkpoint import latest_checkpoint

        a = self.args
        cfg = CriticConfig(generator=str(run_dir), data=a.data or "bach",
                           bert=a.critic_bert or str(self.out / "pretrain"), steps=a.critic_steps, device=a.device)
        meta = read_meta(folder) if is_critic(folder) else train_critic(
            cfg, folder, resume=latest_checkpoint(folder) is not None, progress=True)
        refuse_scorer_as_critic(meta, self.out / "scorer", folder)
        return {"folder": str(folder), "auc": meta["auc"]["held_out"], "auc_train": meta["auc"]["train"],
                "train_seconds": meta["train_seconds"]}

    def sample(self, run_dir: Path, primers: dict, out_dir: Path | None = None, selection: dict | None = None,
               critic: str | None = None) -> dict:
        """Unconditional and primed samples of a run into {out_dir or run_dir}/eval_samples/{unconditional,
        primed}; with ``selection`` (``selection_spec``), each kept out of N candidates by ``critic``."""
        import tgan
        from tgan.generate import write_sidecar

        a = self.args
        model = tgan.load(run_dir, a.device or None)
        sel = {} if selection is None else dict(selection, critic=critic)
        counts, cost = {}, {"generated_tokens": 0, "kept_tokens": 0, "seconds": 0.0}
        for kind in ("unconditional", "primed"):
            folder = (out_dir or run_dir) / "eval_samples" / kind
            folder.mkdir(parents=True, exist_ok=True)
            if kind == "unconditional":
                samples = model.generate(a.num_samples, a.sample_tokens, seed=UNCOND_SEED, **sel)
            else:  # one primer each, its own seed: the same primer and seed in every arm
                samples = [model.generate(1, a.sample_tokens, primer=np.asarray(p, dtype=np.int64),
                                          seed=PRIMED_SEED + i, **sel)[0]
                           for i, p in enumerate(primers["tokens"])]
            made = {id(s.settings.get("selection")): s.settings["selection"] for s in samples
                    if s.settings.get("selection")}
            for c in made.values():  # one record per generate call
                for k in cost:
                    cost[k] += c[k]
            record = {}
            for i, s in enumerate(samples):
                name = f"{kind}_{i:03d}.mid"
                s.save(folder / name)
                record[name] = s.info()
                if kind == "primed":
                    record[name]["primer"] = f"{a.data or 'bach'}:{primers['split']}:{primers['pieces'][i]}"
            write_sidecar(folder, record)
            counts[kind] = len(samples)
        if selection is None:
            return {"samples": counts}
        cost["tokens_per_kept"] = cost["generated_tokens"] / max(cost["kept_tokens"], 1)
        return {"samples": counts, "selection": {**selection, "critic": critic, **cost}}

    def evaluate(self, run_dir: Path, out_dir: Path | None = None) -> dict:
        """Table 1 of the two sample folders in ``out_dir`` (default ``run_dir``) by the shared scorer
        ({out_dir}/evaluation.json); NLL is the trained run's, ``run_dir``."""
        from tgan.table1 import evaluate_samples

        a = self.args
        where = out_dir or run_dir
        folders = [where / "eval_samples" / "unconditional", where / "eval_samples" / "primed"]
        out = where / "evaluation.json"
        evaluate_samples(folders, data=a.data or "bach", scorer=str(self.out / "scorer"),
                         checkpoint=[str(run_dir)] * 2, convention="both", vocab=a.vocab,
                         max_pieces=a.eval_pieces, nll_chunks=a.nll_chunks, device=a.device or None,
                         out=str(out))
        return {"evaluation": str(out)}

    def run(self) -> Path:
        """Every step not done yet, then the report; returns the path of report.md."""
        from tgan.experiment_report import write_report
        from tgan.progress import progress

        runs = self.runs()
        bar = progress(total=2 + len(runs), desc="experiment", unit="step", mininterval=1.0)
        self._step("pretrain", self.pretrain, self.out / "pretrain")
        bar.update(1)
        self._step("scorer", self.scorer)
        primers = self._step("primers", self.primers)
        bar.update(1)
        for i, (arm, seed) in enumerate(runs):
            trained, selection = selection_spec(arm)
            base, variant = arm_flags(trained)
            loss, disc = ARMS[base]
            run_dir = self.out / "arms" / arm_folder(trained) / f"seed{seed}"
            key, tkey = f"{arm}/seed{seed}", f"{trained}/seed{seed}"
            bar.set_postfix(arm=key)
            logger.info("arm %s (%d/%d): train, sample, evaluate", key, i + 1, len(runs))
            if base == WALL_ARM:
                variant = ["--mle-seconds", f"{self.wall_budget(seed):.1f}", *variant]
            self._step(tkey + "/train", lambda: self._train(
                run_dir, ["--loss", loss, "--disc", disc, "--seed", str(seed), "--sample-count", "1",
                          "--init-from", str(self.out / "pretrain"), *variant]), run_dir)
            if selection is None:
                self._step(key + "/sample", lambda: self.sample(run_dir, primers))
                self._step(key + "/evaluate", lambda: self.evaluate(run_dir))
            else:  # samples of the trained run, each kept out of N by a critic trained against it
                sel_dir = self.out / "arms" / arm_folder(arm) / f"seed{seed}"
                critic = self._step(tkey + "/critic", lambda: self.critic(run_dir, run_dir / "critic"))
                self._step(key + "/sample", lambda: self.sample(run_dir, primers, sel_dir, selection,
                                                                critic["folder"]))
                self._step(key + "/evaluate", lambda: self.evaluate(run_dir, sel_dir))
            bar.update(1)
        bar.close()
        return write_report(self.out, self.state, self.args, figures=not self.args.no_plots)


def main(argv=None) -> int:
    args, train_flags = parse(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    from tgan.data.errors import DataError
    from tgan.model.checkpoint import CheckpointError

    try:
        report = Experiment(args, train_flags).run()
    except (ValueError, RuntimeError, DataError, CheckpointError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(f"report: {report} (and {report.with_suffix('.json')}, figures in {report.parent / 'plots'})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
