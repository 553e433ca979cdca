"""Table 1 of the paper for folders of generated MIDI: the library behind ``python -m tgan.evaluate``.

``evaluate_samples(samples, data, **options)`` (also ``tgan.evaluate_samples``) returns the dict the
command writes; ``table1(args)`` computes it from the command's parsed flags (``build_parser``,
checked by ``check_options``). Rows: the data split, then each samples folder with its difference
to the data; columns NLL (needs the generator's checkpoint), CA and PLL (one scorer for every row,
``python -m tgan.scorer``) and the nine note statistics. See ``python -m tgan.evaluate --help``.
"""
from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

import numpy as np
import torch

from tgan.metrics.ca import CLASSIFIERS
from tgan.metrics.evaluation import (CA_BLOCK_TOKENS, PLL_BLOCK_TOKENS, PLL_PIECE_TOKENS,
                                     difference, piece_tokens, pll_blocks, read_data_split,
                                     read_sample_folder, score_ca, score_pll, set_statistics)
from tgan.metrics.notes_stats import CONVENTIONS

logger = logging.getLogger(__name__)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tgan.evaluate",
                                description="Note statistics, NLL, PLL and CA of generated MIDI "
                                            "against a data set, as a Markdown table and JSON.")
    p.add_argument("--data", default="bach", help="MAESTRO folder, folder of MIDI files, or 'bach' "
                   "for the bundled corpus (default bach)")
    p.add_argument("--samples", nargs="+", required=True, metavar="DIR",
                   help="one or more folders of generated .mid/.midi files, one table row each")
    p.add_argument("--split", default="train", choices=("train", "validation", "test"),
                   help="data split the samples are compared with (default train, as the paper)")
    p.add_argument("--max-pieces", type=int, default=None, metavar="N",
                   help="read at most N pieces of the split (default all)")
    p.add_argument("--convention", default="correct", choices=CONVENTIONS + ("both",),
                   help="definitions of the note statistics: correct (what the names mean), "
                        "paper (pypianoroll/mgeval as published) or both (default correct)")
    clip = p.add_mutually_exclusive_group()
    clip.add_argument("--clip-seconds", type=float, default=None, metavar="S",
                      help="statistics on the first S seconds of every piece, data and samples")
    clip.add_argument("--clip-tokens", type=int, default=None, metavar="N",
                      help="statistics on the first N tokens of every piece (encode, cut, decode)")
    clip.add_argument("--whole-pieces", action="store_true",
                      help="compare whole data pieces (default: data pieces cut to the samples' "
                           "length in tokens, since NPU, TUP and PR grow with length)")
    p.add_argument("--vocab", default=None, choices=("maestro", "full"),
                   help="event vocabulary (default: the checkpoint's, else maestro)")
    p.add_argument("--checkpoint", nargs="+", default=None, metavar="RUN",
                   help="training run or checkpoint directory: NLL of its generator; one for every "
                        "samples folder, or one per folder in the same order")
    p.add_argument("--scorer", default=None, metavar="DIR",
                   help="scorer folder (python -m tgan.scorer) that computes CA and PLL of every row")
    p.add_argument("--nll-only", action="store_true", help="no PLL and no CA (NLL and statistics)")
    p.add_argument("--nll-chunks", type=int, default=64, metavar="N",
                   help="validation chunks scored for NLL, 0 = all (default 64)")
    p.add_argument("--pll-pieces", type=int, default=8, metavar="N",
                   help=f"pieces per set scored for PLL (their first {PLL_PIECE_TOKENS} tokens), 0 = "
                        "all (default 8)")
    p.add_argument("--ca-blocks", type=int, default=2000, metavar="N",
                   help=f"at most N {CA_BLOCK_TOKENS}-token blocks per side for CA (default 2000)")
    p.add_argument("--ca-folds", type=int, default=5, metavar="K",
                   help="CA folds, pieces held out whole (default 5; fewer when fewer pieces)")
    p.add_argument("--ca-classifier", default="linear", choices=CLASSIFIERS,
                   help="linear: logistic regression on the per-block max of the scorer's MLM logits "
                        "(the paper's probe, default); finetune: the scorer fine-tuned as a classifier")
    p.add_argument("--ca-finetune-steps", type=int, default=200, metavar="N",
                   help="steps of each fold's fine-tuning with --ca-classifier finetune (default 200)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="sequences per model forward pass (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CA block draw and folds (default 0)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help="JSON file (default: <first samples folder>"
                   "-evaluation.json beside that folder)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table here")
    p.add_argument("--plot", action="store_true", help="write a piano roll per sample, pitch/IOI "
                   "histograms and CA along the piece (needs matplotlib: pip install -e \".[plot]\")")
    p.add_argument("--plot-dir", default=None, help="folder of the figures (default: beside the "
                   "JSON, <json name>-plots)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def load_generator(path, device) -> tuple:
    """(generator in eval mode, vocab, checkpoint) from a run or checkpoint directory, through the
    API's loader (``tgan.api.generator_from_checkpoint``). Raises CheckpointError (a ValueError)
    naming the path when it is not a checkpoint or holds no generator."""
    from tgan.api import generator_from_checkpoint

    gen, vocab, ck = generator_from_checkpoint(path)
    return gen.to(device).eval(), vocab, ck


def generator_nll(gen, ck, data, vocab, max_chunks: int, batch_size: int, device,
                  progress: bool) -> dict:
    """Validation NLL (nats/token) of ``gen`` on ``data``: chunks of the run's ``eval_len`` tokens
    (2048 by default), scored with the generator's ``eval_mem_len`` memory. Falls back to the test,
    then the train split where the data set has no validation pieces."""

    from tgan.data import chunks, prepare
    from tgan.gan.mle import evaluate_nll

    prepared = prepare(data, vocab_name=vocab.preset, progress=progress)
    split = next((s for s in ("validation", "test", "train") if prepared.files[s]), None)
    length = int(ck.configs.get("train", {}).get("eval_len", PLL_PIECE_TOKENS))
    rows = []
    for c in chunks(prepared, split, length, pad_last=True):
        if int((c != vocab.pad_id).sum()) >= 2:
            rows.append(c)
        if max_chunks and len(rows) >= max_chunks:
            break
    from tgan.progress import progress as progress_bar

    with progress_bar(total=len(rows), desc="NLL", unit="chunk", leave=False,
                      disable=not progress) as bar:
        nll = evaluate_nll(gen, rows, gen.cfg.tgt_len, gen.cfg.eval_mem_len, batch_size, device,
                           progress=bar)
    return {"value": nll, "split": split, "chunks": len(rows), "chunk_len": length,
            "tgt_len": gen.cfg.tgt_len, "mem_len": gen.cfg.eval_mem_len}


def _load(args, device) -> tuple:
    """(generators with their checkpoints, vocab, scorer bert, scorer info, notes)."""
    from tgan.data.vocab import Vocab
    from tgan.scorer.train import checkpoint_scorer, scorer_for
    from tgan.model.checkpoint import CheckpointError

    gens, notes, vocab = [], [], None
    for path in args.checkpoint or []:
        try:
            gen, ck_vocab, ck = load_generator(path, device)
        except CheckpointError as e:
            raise CheckpointError(f"--checkpoint: {e}") from None
        if vocab is not None and ck_vocab.preset != vocab.preset:
            raise CheckpointError(f"--checkpoint {path}: vocabulary {ck_vocab.preset!r}, the first "
                                  f"checkpoint's is {vocab.preset!r}")
        vocab = vocab or ck_vocab
        gens.append((gen, ck))
    vocab = Vocab.by_name(args.vocab) if args.vocab else (vocab or Vocab.maestro())
    if not gens:
        notes.append("NLL: n/a, it needs --checkpoint.")
    bert = info = None
    if args.nll_only:
        notes.append("PLL and CA: off (--nll-only).")
    elif args.scorer:
        try:
            bert, info, more = scorer_for(args.scorer, vocab, args.data, device)
        except CheckpointError as e:
            raise CheckpointError(f"--scorer: {e}") from None
        notes += more
    elif gens:
        try:
            bert, info, note = checkpoint_scorer(gens[0][1], vocab, device)
        except CheckpointError as e:
            raise CheckpointError(f"--checkpoint: {e}") from None
        notes.append(note)
    else:
        notes.append("PLL and CA: n/a, they need --scorer (python -m tgan.scorer).")
    return gens, vocab, bert, info, notes


def evaluate(args) -> dict:
    """Run the evaluation the parsed ``args`` describe; returns the result dict (see
    ``tgan.metrics.report``). Raises ValueError / OSError / ImportError on bad input."""
    from tgan.data import resolve_source

    progress = not args.no_progress
    conventions = list(CONVENTIONS) if args.convention == "both" else [args.convention]
    if args.plot:
        from tgan.metrics.plots import require_matplotlib

        require_matplotlib()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    times, t0 = {}, time.perf_counter()
    gens, vocab, bert, scorer, notes = _load(args, device)
    times["load models"] = time.perf_counter() - t0

    t = time.perf_counter()
    source = resolve_source(args.data)
    data = read_data_split(source, args.split, args.max_pieces, progress)
    sets = [read_sample_folder(d, progress=progress) for d in args.samples]
    fake_tokens = [piece_tokens(s.pieces, vocab) for s in sets]
    times["read"] = time.perf_counter() - t
    t = time.perf_counter()
    # Like with like: NPU, TUP and PR grow with length, so the data pieces are cut to the samples'
    # length unless a clip was asked for (both sides) or --whole-pieces.
    sample_len = max(len(x) for toks in fake_tokens for x in toks)
    data_clip = dict(clip_seconds=args.clip_seconds, clip_tokens=args.clip_tokens)
    if args.clip_seconds is None and args.clip_tokens is None and not args.whole_pieces:
        data_clip["clip_tokens"] = sample_len
    d_stats = set_statistics(data.pieces, conventions, desc="statistics: data", vocab=vocab,
                             progress=progress, **data_clip)
    result = {
        "conventions": conventions,
        "data": {"name": data.name, "source": source.describe(), "root": data.root,
                 "split": args.split, "pieces": len(data.pieces), "files": data.files,
                 "skipped": data.skipped, "empty": d_stats.pop("empty"), "stats": d_stats,
                 "clip_tokens": data_clip["clip_tokens"], "PLL": None},
        "samples": [], "model": None, "scorer": None, "notes": notes,
    }
    for s in sets:
        st = set_statistics(s.pieces, conventions, desc=f"statistics: {s.name}",
                            clip_seconds=args.clip_seconds, clip_tokens=args.clip_tokens,
                            vocab=vocab, progress=progress)
        result["samples"].append({
            "name": s.name, "folder": s.root, "pieces": len(s.pieces), "files": s.files,
            "skipped": s.skipped, "empty": st.pop("empty"), "stats": st,
            "diff": {c: difference(st[c]["mean"], d_stats[c]["mean"]) for c in conventions},
            "NLL": None, "checkpoint": None, "PLL": None, "CA": None, "CA_by_position": []})
    times["statistics"] = time.perf_counter() - t

    if gens:
        t = time.perf_counter()
        _nll_rows(gens, args, vocab, device, progress, result)
        times["NLL"] = time.perf_counter() - t
    real_tokens = piece_tokens(data.pieces, vocab)
    if data_clip["clip_tokens"] is not None:
        real_tokens = [x[: data_clip["clip_tokens"]] for x in real_tokens]
    if bert is not None:
        t = time.perf_counter()
        result["scorer"] = scorer
        _model_scores(bert, scorer, vocab, real_tokens, sets, fake_tokens, result, args, device,
                      progress)
        times["PLL and CA"] = time.perf_counter() - t
    if args.clip_seconds or args.clip_tokens:
        what = f"{args.clip_seconds:g} s" if args.clip_seconds else f"{args.clip_tokens} tokens"
        notes.append(f"Note statistics on the first {what} of each piece, data and samples; MIDI "
                     "read with the sustain pedal applied.")
    elif args.whole_pieces:
        notes.append("Note statistics on whole pieces (--whole-pieces); MIDI read with the sustain "
                     "pedal applied.")
    else:
        notes.append(f"Like with like: data pieces cut to their first {sample_len} tokens, the "
                     "longest sample's length (statistics, PLL and CA; --whole-pieces keeps them "
                     "whole); MIDI read with the sustain pedal applied.")
    result["options"] = {k: v for k, v in vars(args).items()}
    result["options"]["device"] = str(device)
    result["timings"] = times
    if args.plot:
        t = time.perf_counter()
        result["plots"] = _plots(data, sets, args, result)
        times["plots"] = time.perf_counter() - t
    return result


def _nll_rows(gens, args, vocab, device, progress, result) -> None:
    """NLL of each checkpoint's generator, into the sample rows it belongs to."""
    per_row = gens if len(gens) == len(result["samples"]) else [gens[0]] * len(result["samples"])
    done = {}
    for (gen, ck), row in zip(per_row, result["samples"]):
        key = str(ck.path)
        if key not in done:
            done[key] = generator_nll(gen, ck, args.data, vocab, args.nll_chunks, args.batch_size,
                                      device, progress)
            nll = done[key]
            result["notes"].append(
                f"NLL of {ck.path}: its generator (step {ck.step}) on {nll['chunks']} "
                f"{nll['split']} chunks of {nll['chunk_len']} tokens, memory {nll['mem_len']}, "
                "nats/token.")
            if nll["split"] != "validation":
                result["notes"].append(f"NLL on the {nll['split']} split: the data set has no "
                                       "validation pieces.")
        row["NLL"], row["checkpoint"] = done[key], key
    gen, ck = gens[0]
    result["model"] = {"checkpoint": str(ck.path), "step": ck.step, "kind": ck.kind,
                       "vocab": vocab.preset, "NLL": done[str(ck.path)]}


# The data's PLL by a scorer, kept for the life of the process: an experiment evaluates every arm
# and seed against the same data with the same scorer, and the data's PLL (a third of the PLL and
# CA time with two sample sets) would otherwise be recomputed each time.
_DATA_PLL: dict = {}


def _data_pll(bert, real, mask_id: int, opts: dict) -> dict:
    """score_pll of the data pieces ``real``, memoised on the scorer's weights and the blocks of
    tokens it scores (everything the value depends on)."""
    import hashlib

    h = hashlib.sha1()
    for name, t in sorted(bert.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    # the blocks score_pll reads: runs whose samples differ in length cut the data differently,
    # but past the PLL's first PLL_PIECE_TOKENS tokens per piece that changes nothing
    blocks = pll_blocks(real, PLL_PIECE_TOKENS, opts["block_len"], opts["max_pieces"])
    h.update(np.ascontiguousarray(blocks, dtype=np.int64).tobytes())
    key = (h.hexdigest(), blocks.shape, mask_id, str(opts["device"]))
    if key not in _DATA_PLL:
        _DATA_PLL[key] = score_pll(bert, real, mask_id, desc="PLL: data", **opts)
    return dict(_DATA_PLL[key])


def _model_scores(bert, scorer, vocab, real, sets, fake_tokens, result, args, device,
                  progress) -> None:
    """PLL of the data and of each set, CA of each set against the data (held out by piece),
    all with the one scorer ``bert``, into ``result``."""
    limit = scorer["trained_len"]
    pll_len, ca_len = min(PLL_BLOCK_TOKENS, limit), min(CA_BLOCK_TOKENS, limit)
    opts = dict(block_len=pll_len, max_pieces=args.pll_pieces or None, batch_size=args.batch_size,
                device=device, progress=progress)
    result["data"]["PLL"] = _data_pll(bert, real, vocab.mask_id, opts)
    if pll_len < PLL_BLOCK_TOKENS:
        result["notes"].append(f"PLL in {pll_len}-token blocks: the scorer's positions stop at "
                               f"{limit}.")
    for s, fake, row in zip(sets, fake_tokens, result["samples"]):
        row["PLL"] = score_pll(bert, fake, vocab.mask_id, desc=f"PLL: {s.name}", **opts)
        ca = score_ca(bert, real, fake, ca_len, args.ca_blocks, folds=args.ca_folds,
                      classifier=args.ca_classifier, seed=args.seed, batch_size=args.batch_size,
                      device=device, finetune_steps=args.ca_finetune_steps, progress=progress,
                      desc=f"CA: {s.name}")
        row["CA_by_position"] = ca.pop("by_position")
        row["CA"] = ca
        for key in ("PLL", "CA"):
            if "note" in row[key]:
                result["notes"].append(f"{key} of {s.name}: n/a, {row[key]['note']}.")
        if ca.get("k"):
            result["notes"].append(
                f"CA of {s.name}: {ca['classifier']} classifier, {ca['k']} folds holding out whole "
                f"pieces, {ca['real_blocks']} real and {ca['generated_blocks']} generated blocks of "
                f"{ca_len} tokens each predicted once; balanced accuracy (0.5 = indistinguishable) "
                "with a 95% bootstrap interval over pieces.")
        if "flag" in ca:
            result["notes"].append(f"CA of {s.name}: {ca['flag']}; the value means little.")


def _sidecar(folder: Path) -> dict:
    """The samples.json ``python -m tgan.generate`` writes beside its samples ({} if none)."""
    import json

    try:
        made = json.loads((folder / "samples.json").read_text())
    except (OSError, ValueError):
        return {}
    return made if isinstance(made, dict) else {}


def _plots(data, sets, args, result) -> dict:
    from tgan.metrics.plots import ca_by_position_plot, histograms, piano_roll

    out = Path(args.out)
    folder = Path(args.plot_dir) if args.plot_dir else out.parent / f"{out.stem}-plots"
    rolls = []
    for i, s in enumerate(sets):
        sub = folder / f"set{i + 1}-{Path(s.root).name}"
        made = _sidecar(Path(s.root))
        for perf, f in zip(s.pieces, s.files):
            rel = Path(f).relative_to(s.root)
            primer = made.get(rel.as_posix(), {})
            end = primer.get("primer_seconds") if primer.get("primer_tokens") else None
            rel = rel.with_suffix("")
            rolls.append(str(piano_roll(perf, sub / ("_".join(rel.parts) + ".png"), title=str(rel),
                                        primer_end=end)))
    hist = histograms([(f"data: {data.name}", data.pieces)] + [(s.name, s.pieces) for s in sets],
                      folder / "histograms.png")
    out = {"folder": str(folder), "piano_rolls": rolls, "histograms": str(hist)}
    curves = [(row["name"], row["CA_by_position"]) for row in result["samples"]
              if row.get("CA_by_position")]
    if curves:
        out["ca_by_position"] = str(ca_by_position_plot(curves, folder / "ca_by_position.png"))
    return out


def check_options(parser, args) -> None:
    """The checks argparse cannot express; ``parser.error`` names the flag."""
    for name in ("max_pieces", "clip_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.clip_seconds is not None and not args.clip_seconds > 0:
        parser.error(f"--clip-seconds must be > 0, got {args.clip_seconds}")
    if args.checkpoint and len(args.checkpoint) not in (1, len(args.samples)):
        parser.error(f"--checkpoint takes one directory or one per --samples folder "
                     f"({len(args.samples)}), got {len(args.checkpoint)}")
    if args.scorer and args.nll_only:
        parser.error("--scorer and --nll-only exclude each other")
    if args.ca_folds < 2:
        parser.error(f"--ca-folds must be >= 2, got {args.ca_folds}")
    if args.ca_finetune_steps < 1:
        parser.error(f"--ca-finetune-steps must be >= 1, got {args.ca_finetune_steps}")
    for name in ("nll_chunks", "pll_pieces", "ca_blocks"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")


def table1(args) -> dict:
    """Evaluate, then add the total time and the Markdown table (``result["markdown"]``)."""
    from tgan.metrics.report import markdown_report

    t0 = time.perf_counter()
    result = evaluate(args)
    result["timings"]["total"] = time.perf_counter() - t0
    result["markdown"] = markdown_report(result)
    return result


def evaluate_samples(samples, data: str = "bach", **options) -> dict:
    """Table 1 for folders of generated MIDI, as the dict ``python -m tgan.evaluate`` writes.

    ``samples``: a folder or a list of folders (one row each); ``data``: a MAESTRO folder, a folder
    of MIDI files or "bach". ``options``: the command's flags by their Python names, e.g.
    ``scorer="scorers/bach"``, ``checkpoint="runs/x"`` (or one per folder), ``convention="both"``,
    ``max_pieces=64``, ``nll_only=True``, ``device="cpu"``, ``plot=True``, ``progress=False``;
    ``out="F"`` also writes the JSON. The table the command prints is ``result["markdown"]``.
    Raises ValueError naming a bad option or value. Also ``tgan.evaluate_samples(...)``.
    """
    from tgan.metrics.report import write_json

    parser = build_parser()

    def error(message):
        raise ValueError(f"tgan.evaluate_samples: {message}")

    parser.error = error
    known = {a.dest: a for a in parser._actions if a.dest != "help"}
    progress = options.pop("progress", False)
    argv = ["--samples", *([str(samples)] if isinstance(samples, (str, Path)) else map(str, samples)),
            "--data", str(data)]
    for key, value in options.items():
        if key not in known or key in ("samples", "data", "no_progress"):
            raise ValueError(f"tgan.evaluate_samples: unknown option {key!r}; the options are "
                             + ", ".join(sorted(k for k in known if k not in ("samples", "no_progress"))))
        flag = known[key].option_strings[0]
        if known[key].nargs == 0:  # a switch
            if value:
                argv.append(flag)
        elif value is not None:
            values = value if isinstance(value, (list, tuple)) else [value]
            argv += [flag, *map(str, values)]
    if not progress:
        argv.append("--no-progress")
    args = parser.parse_args(argv)
    check_options(parser, args)
    result = table1(args)
    if args.out:
        write_json(result, args.out)
    return result
