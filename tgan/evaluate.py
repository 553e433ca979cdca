"""python -m tgan.evaluate: compare generated MIDI with a data set (Table 1 of the paper).

    python -m tgan.scorer --out scorers/bach                         # once per data set
    python -m tgan.evaluate --samples runs/x/samples --checkpoint runs/x --scorer scorers/bach
    python -m tgan.evaluate --data ../maestro --samples A B --checkpoint runA runB --scorer S --plot
    python -m tgan.evaluate --samples runs/x/samples --checkpoint runs/x --nll-only

Prints a Markdown table (rows: the data split, then each sample folder with its difference to the
data; columns NLL, CA, PLL and the nine note statistics), a line per sample folder with CA along
the piece, and writes it all with the raw numbers as JSON: ``--out``, by default
``<samples folder>-evaluation.json`` beside the first samples folder (not inside it, so a later
run does not find it among the samples).

NLL needs ``--checkpoint`` (one for every folder, or one per folder). CA and PLL come from one
scorer for every row: ``--scorer`` (``python -m tgan.scorer``); without it, from the first
checkpoint's BERT discriminator only when that finished pre-training and was not adversarially
trained (a BERT that never finished pre-training is refused). By default the data pieces are cut to
the samples' length in tokens (``--whole-pieces`` keeps them whole). Exit status 2 for bad input.
"""
from __future__ import annotations

import logging
import sys
from pathlib import Path

from tgan.table1 import build_parser, check_options, table1


def default_out(samples_dir) -> Path:
    """``<samples folder>-evaluation.json`` beside the folder (``evaluation.json`` in the current
    directory when the folder is a filesystem root)."""
    folder = Path(samples_dir).expanduser().resolve()
    if not folder.name:
        return Path.cwd() / "evaluation.json"
    return folder.parent / f"{folder.name}-evaluation.json"


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    check_options(parser, args)
    args.out = str(Path(args.out) if args.out else default_out(args.samples[0]))
    from tgan.metrics.report import write_json

    try:
        result = table1(args)
    except (ValueError, OSError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    text = result["markdown"]
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
