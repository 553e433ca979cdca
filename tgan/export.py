"""python -m tgan.export: a self-contained model folder from a training run, ready to share.

    python -m tgan.export runs/ppo_gp-20261129-120000 --out models/bach-ppo
    python -m tgan.export RUN/checkpoints/step_00003000 --out models/bach-mle --with-discriminator
    python -m tgan.export RUN --out models/bach-mle --push-to-hub my-org/bach-mle   # pip install "tgan-music[hub]"

The folder follows the Hugging Face Hub's layout for a model repository (``config.json`` +
``model.safetensors`` + ``README.md``), so it can be uploaded as it is:

  config.json                 format, tgan version, generator config, vocabulary, training data,
                              step, validation NLL, and the Table 1 row of --table1 JSON
  model.safetensors           the generator's weights only (no optimizer, no RNG state)
  discriminator.safetensors   with --with-discriminator: the BERT discriminator, its config in
                              config.json["discriminator"]
  critic.safetensors, critic.json
                              with --with-critic DIR: a critic trained against this generator
                              (python -m tgan.critic), for generate(candidates=N)
  README.md                   a model card: data set, its license, training, results, usage

``tgan.load(DIR)`` and ``python -m tgan.generate --checkpoint DIR`` read it. Exit status 2 for bad
input (no run there, an existing non-empty --out without --overwrite).
"""
from __future__ import annotations

import argparse
import json
import logging
import re
import shutil
import sys
import tempfile
from pathlib import Path

from tgan import __version__
from tgan.api import MODEL_FORMAT

logger = logging.getLogger(__name__)

LICENSES = {
    "maestro": ("CC BY-NC-SA 4.0 (inherited from MAESTRO)",
                "Trained on MAESTRO (Hawthorne et al., ICLR 2019; Google LLC), licensed CC BY-NC-SA "
                "4.0. A model trained on it is a derived work: use it non-commercially, credit "
                "MAESTRO, and share models derived from it under the same terms."),
    "bach": ("see music21's corpus statement",
             "Trained on J. S. Bach scores from music21's corpus. music21's own statement "
             "(music21/corpus/license.txt) says the encoded scores are distributed with the "
             "encoders' permission and are to its knowledge out of copyright in the United "
             "States or licensed for use; some encodings may restrict commercial use."),
    "folder": ("the license of the training MIDI files",
               "Trained on a folder of MIDI files: the terms of those files apply to this model."),
}


# Hub card metadata per data kind: license id (with name and link where it is "other") and datasets.
CARD_META = {
    "maestro": {"license": "cc-by-nc-sa-4.0", "datasets": ["maestro"]},
    "bach": {"license": "other", "license_name": "music21-corpus",
             "license_link": "https://github.com/cuthbertLab/music21/blob/master/music21/corpus/license.txt",
             "datasets": ["music21-bach-corpus"]},
    "folder": {"license": "other", "license_name": "training-data-terms",
               "license_link": "LICENSE", "datasets": []},
}
CITATION = """@inproceedings{muhamed2021transformergan,
  title     = {Symbolic Music Generation with Transformer-GANs},
  author    = {Muhamed, Aashiq and Li, Liang and Shi, Xingjian and Yaddanapudi, Suri and Chi, Wayne and
               Jackson, Dylan and Suresh, Rahul and Lipton, Zachary C. and Smola, Alexander J.},
  booktitle = {Proceedings of the AAAI Conference on Artificial Intelligence},
  volume    = {35},
  number    = {1},
  year      = {2021},
  doi       = {10.1609/aaai.v35i1.16117}
}"""


def data_kind(data: str) -> str:
    """"maestro", "bach" or "folder" for a run's --data value."""
    if not data or data == "bach":
        return "bach"
    p = Path(data)
    if p.suffix.lower() == ".csv" and "maestro" in p.name.lower():
        return "maestro"
    if p.is_dir():
        from tgan.data.sources import find_maestro_csv

        if find_maestro_csv(p) is not None:
            return "maestro"
    return "maestro" if "maestro" in p.name.lower() else "folder"


def table1_row(path, checkpoint: Path) -> dict:
    """The row of an evaluation JSON (``python -m tgan.evaluate``) for ``checkpoint``'s samples:
    the row whose checkpoint is it (the same path, else the same step folder), else the only row;
    ValueError naming the file otherwise."""
    try:
        result = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"--table1 {path}: not an evaluation JSON ({e})") from None
    rows = result.get("samples") or []
    mine = [r for r in rows if r.get("checkpoint") and Path(r["checkpoint"]).resolve()
            in (checkpoint.resolve(), checkpoint.parents[1].resolve())]
    if not mine:  # paths relative to where evaluate ran: match the checkpoint's step folder
        mine = [r for r in rows if r.get("checkpoint") and Path(r["checkpoint"]).name == checkpoint.name]
    if not mine and len(rows) == 1:
        mine = rows
    if len(mine) != 1:
        raise ValueError(f"--table1 {path}: no single row for {checkpoint} among {len(rows)}")
    row = mine[0]
    keep = ("name", "NLL", "CA", "PLL", "stats", "diff", "files")
    out = {k: row[k] for k in keep if k in row}
    scorer = result.get("scorer") or {}
    out["scorer"] = {k: scorer.get(k) for k in ("path", "data", "mlm_accuracy")}
    out["data"] = (result.get("data") or {}).get("name")
    return out


def export(run, out, with_discriminator: bool = False, overwrite: bool = False,
           table1: str | None = None, with_critic: str | None = None, hub_id: str | None = None) -> Path:
    """Write the model folder ``out`` for the run or checkpoint ``run``; returns ``out``.
    ``table1``: an evaluation JSON whose row for this checkpoint goes into the card.
    ``with_critic``: a critic folder (``python -m tgan.critic``) trained against this checkpoint's
    generator, copied in as ``critic.safetensors`` + ``critic.json`` (``tgan.load`` picks it up).
    ``hub_id``: the Hub id the folder will be uploaded as; the card's usage snippet loads that
    (else the folder's path as given).

    Raises ValueError naming the path for a run without a generator, a missing discriminator
    with ``with_discriminator``, a critic trained against another generator, or a non-empty
    ``out`` without ``overwrite``.
    """
    from safetensors.torch import save_file

    from tgan.model.checkpoint import CheckpointError, load_checkpoint

    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; the model folder must be a folder (a new or empty one)")
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ValueError(f"--out {out} exists and is not empty (pass --overwrite to replace it)")
    try:
        ck = load_checkpoint(run, kind=("run", "generator"), map_location="cpu")
    except CheckpointError as e:
        raise ValueError(str(e)) from None
    if "gen" not in ck.models or "generator" not in ck.configs:
        raise ValueError(f"checkpoint {ck.path} holds no generator")
    train = ck.configs.get("train", {})
    data = train.get("data") or "bach"
    kind = data_kind(data)
    history = ck.extra.get("history", {}).get("val_nll") or []
    val_nll = history[-1][1] if history else None
    cfg = {
        "format": MODEL_FORMAT, "tgan_version": __version__, "model_type": "tgan-transformer-xl",
        "generator": ck.configs["generator"], "vocab": ck.configs.get("vocab", "maestro"),
        "training": {"data": Path(data).name if kind != "bach" else "bach", "data_kind": kind,
                     "loss": train.get("loss"), "preset": train.get("preset"),
                     "step": ck.step, "stage": ck.extra.get("stage"),
                     "validation_nll": val_nll},
        "license": LICENSES[kind][0],
    }
    if table1:
        cfg["table1_row"] = table1_row(table1, ck.path)
    tensors = {"model": {k: v.contiguous() for k, v in ck.models["gen"].items()}}
    if with_discriminator:
        # run checkpoints keep D under "disc"; its kind is the run's --disc
        if train.get("disc", "bert") != "bert" or "disc" not in ck.models or "bert" not in ck.configs:
            raise ValueError(f"checkpoint {ck.path} holds no BERT discriminator (--disc "
                             f"{train.get('disc', 'bert')}, models: {', '.join(sorted(ck.models))})")
        cfg["discriminator"] = ck.configs["bert"]
        tensors["discriminator"] = {k: v.contiguous() for k, v in ck.models["disc"].items()}
    critic = None
    if with_critic:
        from tgan.critic.model import load_critic, state_fingerprint

        critic = load_critic(with_critic)
        critic.check(state_fingerprint(ck.models["gen"]))
        cfg["critic"] = {"window": critic.window, "generator": critic.meta["generator"],
                         "auc": {k: (critic.meta.get("auc") or {}).get(k) for k in ("held_out", "train")},
                         "sampling": critic.meta.get("sampling")}
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for name, sd in tensors.items():
            save_file(sd, str(tmp / f"{name}.safetensors"), metadata={"format": "pt"})
        if critic is not None:
            critic.save(tmp)
        (tmp / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
        (tmp / "README.md").write_text(model_card(cfg, kind, with_discriminator, where=hub_id or str(out)))
        tmp.chmod(0o755)  # mkdtemp makes it private; a model folder is for sharing
        for f in tmp.iterdir():
            f.chmod(0o644)
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)  # complete or absent: a crash leaves no half-written folder
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_card(cfg: dict, kind: str, with_discriminator: bool, where: str = "THIS_FOLDER") -> str:
    """The folder's README.md: Hub model-card metadata (license, datasets, tags, library), then
    what the model is, its training data and preset, results, intended use and limitations, a
    usage snippet that loads ``where`` (the folder's path or its Hub id) as written, the license
    and the citation."""
    import json as _json

    g, t = cfg["generator"], cfg["training"]
    nll = "not recorded" if t["validation_nll"] is None else f"{t['validation_nll']:.4f} nats/token"
    meta = dict(CARD_META[kind])
    meta.update(library_name="tgan",
                tags=["symbolic-music", "music-generation", "midi", "transformer-xl", "gan", "tgan"])
    if not meta["datasets"]:
        del meta["datasets"]
    def yaml(v):  # a plain scalar where it is safe, else JSON (which YAML reads)
        return v if isinstance(v, str) and re.fullmatch(r"[A-Za-z0-9][\w.:/-]*", v) else _json.dumps(v)

    front = ["---"] + [f"{k}: {yaml(v)}" for k, v in meta.items()] + ["---", ""]
    lines = front + [
        f"# tgan Transformer-XL music generator ({t['data']}, {t['loss']})", "",
        f"A Transformer-XL ({g['n_layer']} layers, d_model {g['d_model']}, {g['n_head']} heads of "
        f"{g['d_head']}) over {cfg['vocab']} performance events ({g['vocab_size']} ids: NOTE_ON, NOTE_OFF, "
        f"TIME_SHIFT, VELOCITY), trained with tgan {cfg['tgan_version']} (`pip install tgan-music`, imported "
        "as `tgan`).", "",
        "## Training", "",
        f"- data: {t['data']} ({kind})",
        f"- loss: {t['loss']}, preset {t['preset']}, {t['step']} steps (stage {t['stage']})",
        f"- validation NLL: {nll}", "",
    ]
    if cfg.get("table1_row"):
        lines += ["## Results (Table 1 row)", ""] + _row_lines(cfg["table1_row"]) + [""]
    lines += [
        "## Use", "", "```python", "import tgan", "", f"model = tgan.load({where!r})",
        "for i, s in enumerate(model.generate(num=2, seconds=30, seed=0)):",
        '    s.save(f"sample_{i}.mid")', "```", "",
        f"or `python -m tgan.generate --checkpoint {where} --num 2 --seconds 30`.",
        "Files: `config.json`, `model.safetensors` (generator weights)"
        + (", `discriminator.safetensors` (BERT discriminator)" if with_discriminator else "")
        + (", `critic.safetensors` + `critic.json` (a critic trained against this generator)"
           if cfg.get("critic") else "")
        + ". Loading reads JSON and safetensors only; no code is executed.", "",
    ]
    if cfg.get("critic"):
        auc = cfg["critic"]["auc"]["held_out"]
        lines += ["## Selection by the critic", "",
                  f"The folder holds a critic (held-out AUC {_fmt(auc)} against this generator's samples). "
                  "Draw N candidates per sample and keep the one it finds most real:", "",
                  "```python", f'samples = tgan.load({where!r}).generate(num=2, seconds=30, seed=0, '
                  'candidates=16, select="rerank")', "```", ""]
    lines += [
        "## Intended use and limitations", "",
        "For research on symbolic (MIDI) music generation and for making piano music to listen to, "
        "continue or edit. It generates performance events for a single piano-like instrument: no "
        "lyrics, no audio, no other instruments. Its samples imitate its training data"
        + (f" ({t['data']})" if t["data"] else "") + ", and a small preset or a small data set "
        "gives short-range coherence only; samples may end early (EOS) or drift in longer pieces. "
        "It is not a measure of musical quality and should not be used to pass generated music off "
        "as human work.", "",
        "## License", "", f"{cfg['license']}. {LICENSES[kind][1]}", "",
        "## Citation", "", "The training method follows:", "", "```bibtex", CITATION, "```", "",
    ]
    return "\n".join(lines)


def _fmt(x) -> str:
    return f"{x:.3f}" if isinstance(x, (int, float)) else str(x)


def _row_lines(row: dict) -> list[str]:
    """A Table 1 row in a few readable lines (config.json keeps all of it)."""
    def value(key, fmt="{:.3f}"):
        v = row.get(key) or {}
        return "n/a" if v.get("value", v.get("mean")) is None else fmt.format(v.get("value", v.get("mean")))

    ca = row.get("CA") or {}
    ca_text = value("CA") + (f" [{ca['low']:.2f}, {ca['high']:.2f}]" if "low" in ca else "")
    scorer = row.get("scorer") or {}
    lines = [f"Samples {row.get('name')}, against {row.get('data')}; scorer {scorer.get('path')} "
             f"(MLM accuracy {_fmt(scorer.get('mlm_accuracy'))}).", "",
             "| NLL | CA | PLL |", "| --- | --- | --- |",
             f"| {value('NLL')} | {ca_text} | {value('PLL')} |"]
    stats = ((row.get("stats") or {}).get("correct") or {}).get("mean")
    if stats:
        lines += ["", "| " + " | ".join(stats) + " |", "|" + " --- |" * len(stats),
                  "| " + " | ".join(f"{v:.3f}" for v in stats.values()) + " |"]
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m tgan.export", description=__doc__.splitlines()[0])
    p.add_argument("run", help="a run directory (its newest checkpoint) or a checkpoint directory")
    p.add_argument("--out", required=True, help="the model folder to write")
    p.add_argument("--with-discriminator", action="store_true",
                   help="also write the BERT discriminator (discriminator.safetensors)")
    p.add_argument("--with-critic", default=None, metavar="DIR",
                   help="a critic folder (python -m tgan.critic) trained against this checkpoint's generator: "
                        "copied in, used by generate --candidates N")
    p.add_argument("--push-to-hub", default=None, metavar="ORG/NAME",
                   help="then upload the folder to this Hugging Face Hub model repository (created if missing; "
                        "needs pip install \"tgan-music[hub]\" and a login or HF_TOKEN)")
    p.add_argument("--private", action="store_true", help="with --push-to-hub: create the repository private")
    p.add_argument("--name", default=None, help="what the model card's snippet loads (default: the --push-to-hub "
                   "id, else the --out path)")
    p.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    p.add_argument("--table1", default=None, metavar="JSON",
                   help="an evaluation JSON (python -m tgan.evaluate): its row for this "
                        "checkpoint's samples goes into config.json and the model card")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        out = export(args.run, args.out, args.with_discriminator, args.overwrite, args.table1, args.with_critic,
                     hub_id=args.name or args.push_to_hub)
    except (ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {out}: " + ", ".join(sorted(f.name for f in out.iterdir())))
    if args.push_to_hub:
        from tgan.hub import push_to_hub

        try:
            url = push_to_hub(out, args.push_to_hub, private=args.private)
        except Exception as e:  # huggingface_hub's errors: no login, no network, no permission
            print(f"error: --push-to-hub {args.push_to_hub}: {type(e).__name__}: {e}", file=sys.stderr)
            return 1
        print(f"uploaded to {url}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
