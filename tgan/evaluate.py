"""python -m tgan.evaluate: compare generated MIDI with a data set (Table 1 of the paper).

    python -m tgan.evaluate --data ../maestro --samples runs/x/samples
    python -m tgan.evaluate --data ../maestro --samples A B --checkpoint runs/x --convention both
    python -m tgan.evaluate --samples runs/x/samples --clip-seconds 30 --plot --markdown table.md

Prints a Markdown table (rows: the data split, then each sample folder with its difference to the
data; columns NLL, CA, PLL and the nine note statistics) and writes it with the raw numbers as
JSON: ``--out``, by default ``<samples folder>-evaluation.json`` beside the first samples folder
(not inside it, so a later run does not find it among the samples). NLL, CA and PLL need
``--checkpoint`` (a training run or one of its checkpoints); PLL and CA need its BERT
discriminator. Exit status 2 for bad input (a missing or empty folder, a bad checkpoint).
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

import torch

from tgan.metrics.evaluation import (CA_BLOCK_TOKENS, PLL_BLOCK_TOKENS, PLL_PIECE_TOKENS,
                                     difference, piece_tokens, read_data_split,
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
                      help="statistics on the first S seconds of every piece (default whole pieces)")
    clip.add_argument("--clip-tokens", type=int, default=None, metavar="N",
                      help="statistics on the first N tokens of every piece (encode, cut, decode)")
    p.add_argument("--vocab", default=None, choices=("maestro", "full"),
                   help="event vocabulary for --clip-tokens (default: the checkpoint's, else maestro)")
    p.add_argument("--checkpoint", default=None, help="training run or checkpoint directory: adds "
                   "NLL (its generator), PLL and CA (its BERT discriminator)")
    p.add_argument("--nll-chunks", type=int, default=64, metavar="N",
                   help="validation chunks scored for NLL, 0 = all (default 64)")
    p.add_argument("--pll-pieces", type=int, default=8, metavar="N",
                   help=f"pieces per set scored for PLL ({PLL_PIECE_TOKENS} tokens each), 0 = all "
                        "(default 8)")
    p.add_argument("--ca-blocks", type=int, default=2000, metavar="N",
                   help=f"at most N {CA_BLOCK_TOKENS}-token blocks per side for CA (default 2000)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="sequences per model forward pass (default 64)")
    p.add_argument("--seed", type=int, default=0, help="seed of the CA block draw and split (default 0)")
    p.add_argument("--device", default=None, help="cpu | cuda (default: cuda when available)")
    p.add_argument("--out", default=None, help="JSON file (default: <first samples folder>"
                   "-evaluation.json beside that folder)")
    p.add_argument("--markdown", default=None, metavar="FILE", help="also write the table here")
    p.add_argument("--plot", action="store_true", help="write a piano roll per sample and pitch/IOI "
                   "histograms (needs matplotlib: pip install -e \".[plot]\")")
    p.add_argument("--plot-dir", default=None, help="folder of the figures (default: beside the "
                   "JSON, <json name>-plots)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    return p


def default_out(samples_dir) -> Path:
    """``<samples folder>-evaluation.json`` beside the folder (``evaluation.json`` in the current
    directory when the folder is a filesystem root)."""
    folder = Path(samples_dir).expanduser().resolve()
    if not folder.name:
        return Path.cwd() / "evaluation.json"
    return folder.parent / f"{folder.name}-evaluation.json"


def load_models(path, device) -> tuple:
    """(generator, BERT or None, vocab, checkpoint, notes) from a run or checkpoint directory.

    Raises CheckpointError (a ValueError) naming the path when it is not a checkpoint or holds no
    generator; a CNN discriminator gives bert=None and a note saying PLL and CA are n/a.
    """
    from tgan.data.vocab import Vocab
    from tgan.model import BertConfig, BertDiscriminator, GeneratorConfig, TransformerXL
    from tgan.model.checkpoint import CheckpointError, load_checkpoint

    ck = load_checkpoint(path, map_location="cpu")
    if "gen" not in ck.models or "generator" not in ck.configs:
        raise CheckpointError(f"checkpoint {ck.path} (kind {ck.kind!r}, models "
                              f"{sorted(ck.models) or 'none'}) holds no generator; pass --checkpoint "
                              f"a training run directory or one of its checkpoints")
    vocab = Vocab.by_name(ck.configs.get("vocab", "maestro"))
    try:
        gen = TransformerXL(GeneratorConfig.from_dict(ck.configs["generator"]))
        gen.load_state_dict(ck.models["gen"])
    except (RuntimeError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {ck.path}: the generator does not load ({e})") from None
    notes, bert = [], None
    disc = ck.configs.get("train", {}).get("disc", "bert" if "bert" in ck.configs else None)
    if disc != "bert" or "disc" not in ck.models or "bert" not in ck.configs:
        what = f"a {disc.upper()}" if disc else "no"
        notes.append(f"PLL and CA: n/a, they need a BERT discriminator and the checkpoint holds "
                     f"{what} discriminator.")
    else:
        try:
            bert = BertDiscriminator(BertConfig.from_dict(ck.configs["bert"]))
            bert.load_state_dict(ck.models["disc"])
        except (RuntimeError, TypeError, ValueError) as e:
            raise CheckpointError(f"checkpoint {ck.path}: the BERT discriminator does not load "
                                  f"({e})") from None
        if bert.cfg.vocab_size != vocab.size:
            raise CheckpointError(f"checkpoint {ck.path}: BERT vocab_size {bert.cfg.vocab_size} "
                                  f"does not match the {vocab.preset!r} vocab ({vocab.size} ids)")
        bert = bert.to(device).eval()
    return gen.to(device).eval(), bert, vocab, ck, notes


def generator_nll(gen, ck, data, vocab, max_chunks: int, batch_size: int, device,
                  progress: bool) -> dict:
    """Validation NLL (nats/token) of ``gen`` on ``data``: chunks of the run's ``eval_len`` tokens
    (2048 by default), scored with the generator's ``eval_mem_len`` memory. Falls back to the test,
    then the train split where the data set has no validation pieces."""
    from tqdm.auto import tqdm

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
    with tqdm(total=len(rows), desc="NLL", unit="chunk", leave=False, disable=not progress) as bar:
        nll = evaluate_nll(gen, rows, gen.cfg.tgt_len, gen.cfg.eval_mem_len, batch_size, device,
                           progress=bar)
    return {"value": nll, "split": split, "chunks": len(rows), "chunk_len": length,
            "tgt_len": gen.cfg.tgt_len, "mem_len": gen.cfg.eval_mem_len}


def evaluate(args) -> dict:
    """Run the evaluation the parsed ``args`` describe; returns the result dict (see
    ``tgan.metrics.report``). Raises ValueError / OSError / ImportError on bad input."""
    from tgan.data import resolve_source
    from tgan.data.vocab import Vocab

    progress = not args.no_progress
    conventions = list(CONVENTIONS) if args.convention == "both" else [args.convention]
    if args.plot:
        from tgan.metrics.plots import require_matplotlib

        require_matplotlib()
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    times, notes, t0 = {}, [], time.perf_counter()
    gen = bert = ck = None
    vocab = Vocab.by_name(args.vocab or "maestro")
    if args.checkpoint:
        from tgan.model.checkpoint import CheckpointError

        try:
            gen, bert, ck_vocab, ck, notes = load_models(args.checkpoint, device)
        except CheckpointError as e:
            raise CheckpointError(f"--checkpoint: {e}") from None
        vocab = Vocab.by_name(args.vocab) if args.vocab else ck_vocab
        times["load checkpoint"] = time.perf_counter() - t0
    else:
        notes.append("NLL, CA and PLL: n/a, they need --checkpoint.")

    t = time.perf_counter()
    source = resolve_source(args.data)
    data = read_data_split(source, args.split, args.max_pieces, progress)
    sets = [read_sample_folder(d, progress=progress) for d in args.samples]
    times["read"] = time.perf_counter() - t
    t = time.perf_counter()
    clip = dict(clip_seconds=args.clip_seconds, clip_tokens=args.clip_tokens, vocab=vocab,
                progress=progress)
    d_stats = set_statistics(data.pieces, conventions, desc="statistics: data", **clip)
    result = {
        "conventions": conventions,
        "data": {"name": data.name, "source": source.describe(), "root": data.root,
                 "split": args.split, "pieces": len(data.pieces), "files": data.files,
                 "skipped": data.skipped, "empty": d_stats.pop("empty"), "stats": d_stats,
                 "PLL": None},
        "samples": [], "model": None, "notes": notes,
    }
    for s in sets:
        st = set_statistics(s.pieces, conventions, desc=f"statistics: {s.name}", **clip)
        result["samples"].append({
            "name": s.name, "folder": s.root, "pieces": len(s.pieces), "files": s.files,
            "skipped": s.skipped, "empty": st.pop("empty"), "stats": st,
            "diff": {c: difference(st[c]["mean"], d_stats[c]["mean"]) for c in conventions},
            "PLL": None, "CA": None})
    times["statistics"] = time.perf_counter() - t

    if gen is not None:
        t = time.perf_counter()
        nll = generator_nll(gen, ck, args.data, vocab, args.nll_chunks, args.batch_size, device,
                            progress)
        notes.append(f"NLL: the checkpoint's generator (step {ck.step}) on {nll['chunks']} "
                     f"{nll['split']} chunks of {nll['chunk_len']} tokens, memory "
                     f"{nll['mem_len']}, nats/token; the same for every sample row.")
        if nll["split"] != "validation":
            notes.append(f"NLL on the {nll['split']} split: the data set has no validation pieces.")
        result["model"] = {"checkpoint": str(ck.path), "step": ck.step, "kind": ck.kind,
                           "vocab": vocab.preset, "disc": "bert" if bert is not None else None,
                           "NLL": nll}
        times["NLL"] = time.perf_counter() - t
    if bert is not None:
        t = time.perf_counter()
        _model_scores(bert, vocab, data, sets, result, args, device, progress)
        times["PLL and CA"] = time.perf_counter() - t
    clip_text = (f"the first {args.clip_seconds:g} s of each piece" if args.clip_seconds
                 else f"the first {args.clip_tokens} tokens of each piece" if args.clip_tokens
                 else "whole pieces")
    notes.append(f"Note statistics on {clip_text}; MIDI read with the sustain pedal applied.")
    result["options"] = {k: v for k, v in vars(args).items()}
    result["options"]["device"] = str(device)
    result["timings"] = times
    if args.plot:
        t = time.perf_counter()
        result["plots"] = _plots(data, sets, args)
        times["plots"] = time.perf_counter() - t
    return result


def _model_scores(bert, vocab, data, sets, result, args, device, progress) -> None:
    """PLL of the data and of each set, CA of each set against the data, into ``result``."""
    pll_len = min(PLL_BLOCK_TOKENS, bert.cfg.max_len)
    ca_len = min(CA_BLOCK_TOKENS, bert.cfg.max_len)
    opts = dict(block_len=pll_len, max_pieces=args.pll_pieces or None, batch_size=args.batch_size,
                device=device, progress=progress)
    real = piece_tokens(data.pieces, vocab)
    result["data"]["PLL"] = score_pll(bert, real, vocab.mask_id, desc="PLL: data", **opts)
    if pll_len < PLL_BLOCK_TOKENS:
        result["notes"].append(f"PLL in {pll_len}-token blocks: the BERT's max_len is "
                               f"{bert.cfg.max_len}.")
    for s, row in zip(sets, result["samples"]):
        fake = piece_tokens(s.pieces, vocab)
        row["PLL"] = score_pll(bert, fake, vocab.mask_id, desc=f"PLL: {s.name}", **opts)
        row["CA"] = score_ca(bert, real, fake, ca_len, args.ca_blocks, seed=args.seed,
                             batch_size=args.batch_size, device=device)
        for key in ("PLL", "CA"):
            if "note" in row[key]:
                result["notes"].append(f"{key} of {s.name}: n/a, {row[key]['note']}.")
        if "n_test" in row["CA"]:
            result["notes"].append(f"CA of {s.name}: accuracy on {row['CA']['n_test']} held-out "
                                   f"blocks of {ca_len} tokens (trained on "
                                   f"{row['CA']['n_train']}; 0.5 = indistinguishable).")


def _plots(data, sets, args) -> dict:
    from tgan.metrics.plots import histograms, piano_roll

    out = Path(args.out)
    folder = Path(args.plot_dir) if args.plot_dir else out.parent / f"{out.stem}-plots"
    rolls = []
    for i, s in enumerate(sets):
        sub = folder / f"set{i + 1}-{Path(s.root).name}"
        for perf, f in zip(s.pieces, s.files):
            rel = Path(f).relative_to(s.root).with_suffix("")
            rolls.append(str(piano_roll(perf, sub / ("_".join(rel.parts) + ".png"), title=str(rel))))
    hist = histograms([(f"data: {data.name}", data.pieces)] + [(s.name, s.pieces) for s in sets],
                      folder / "histograms.png")
    return {"folder": str(folder), "piano_rolls": rolls, "histograms": str(hist)}


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("max_pieces", "clip_tokens"):
        if getattr(args, name) is not None and getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if args.clip_seconds is not None and not args.clip_seconds > 0:
        parser.error(f"--clip-seconds must be > 0, got {args.clip_seconds}")
    for name in ("nll_chunks", "pll_pieces", "ca_blocks"):
        if getattr(args, name) < 0:
            parser.error(f"--{name.replace('_', '-')} must be >= 0, got {getattr(args, name)}")
    if args.batch_size < 1:
        parser.error(f"--batch-size must be >= 1, got {args.batch_size}")
    args.out = str(Path(args.out) if args.out else default_out(args.samples[0]))
    from tgan.metrics.report import markdown_report, write_json

    t0 = time.perf_counter()
    try:
        result = evaluate(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    result["timings"]["total"] = time.perf_counter() - t0
    text = markdown_report(result)
    result["markdown"] = text
    print(text)
    try:
        write_json(result, args.out)
        if args.markdown:
            Path(args.markdown).write_text(text, encoding="utf-8")
    except OSError as e:
        print(f"error: cannot write the results: {e}", file=sys.stderr)
        return 2
    print(f"wrote {args.out}" + (f" and {args.markdown}" if args.markdown else ""))
    if "plots" in result:
        print(f"figures in {result['plots']['folder']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
