"""``python -m tgan.data prepare --data PATH_OR_NAME``: encode a data set into the cache alone
and print a summary (files, tokens and hours per split, skipped files, throughput).

``python -m tgan.data cache [--prune-days N]``: list the cache's folders (what each holds, size,
last use); with ``--prune-days`` remove those unused for N days."""
from __future__ import annotations

import argparse
import logging
import sys

from tgan.data.errors import DataError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m tgan.data",
                                     description="Prepare symbolic-music data sets.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    p = sub.add_parser("prepare", help="encode a data set into the cache and print a summary")
    p.add_argument("--data", default=None,
                   help="a MAESTRO folder, a folder of MIDI files, or 'bach' (the bundled "
                        "music21 corpus; the default)")
    p.add_argument("--vocab", choices=("maestro", "full"), default="maestro",
                   help="pitch range: maestro 21..108 (default) or full 0..127")
    p.add_argument("--no-sustain", dest="sustain", action="store_false",
                   help="do not extend notes held by the sustain pedal")
    p.add_argument("--cache-dir", default=None,
                   help="cache folder (default $TGAN_CACHE_DIR or ~/.cache/tgan)")
    p.add_argument("--workers", type=int, default=None,
                   help="encoding processes (default: the number of CPUs)")
    p.add_argument("--limit", type=int, default=None, help="encode only the first N files")
    p.add_argument("--rebuild", action="store_true", help="encode even if the cache is current")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    c = sub.add_parser("cache", help="list the cache folders; --prune-days removes unused ones")
    c.add_argument("--cache-dir", default=None,
                   help="cache folder (default $TGAN_CACHE_DIR or ~/.cache/tgan)")
    c.add_argument("--prune-days", type=float, default=None, metavar="N",
                   help="remove folders unused for N days (0: every folder), and interrupted builds")
    c.add_argument("--dry-run", action="store_true", help="with --prune-days: list, remove nothing")
    return parser


def _cache_command(args) -> int:
    import time

    from tgan.data.cache import list_cache, prune_cache, resolve_cache_dir

    root = resolve_cache_dir(args.cache_dir)
    if args.prune_days is not None:
        try:
            gone = prune_cache(args.prune_days, root, dry_run=args.dry_run)
        except ValueError as e:
            print(f"error: --prune-days: {e}", file=sys.stderr)
            return 2
        verb = "would remove" if args.dry_run else "removed"
        for e in gone:
            print(f"{verb} {e.path} ({e.source}, {e.n_bytes / 2**20:.1f} MiB)")
        print(f"{verb} {len(gone)} folder(s), {sum(e.n_bytes for e in gone) / 2**20:.1f} MiB, from {root}")
        return 0
    entries = list_cache(root)
    now = time.time()
    for e in entries:
        state = "" if e.complete else " [incomplete]"
        print(f"{e.n_bytes / 2**20:8.1f} MiB  used {(now - e.last_used) / 86400:6.1f} days ago  "
              f"{e.path.name}  {e.source}{state}")
    print(f"{len(entries)} folder(s), {sum(e.n_bytes for e in entries) / 2**20:.1f} MiB in {root}")
    return 0


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 for a data error, no traceback)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s: %(message)s")
    if args.command == "cache":
        return _cache_command(args)
    from tgan.data.datasets import prepare

    try:
        data = prepare(args.data, vocab_name=args.vocab, cache_dir=args.cache_dir,
                       sustain=args.sustain, workers=args.workers, progress=not args.quiet,
                       limit=args.limit, rebuild=args.rebuild)
    except (DataError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(data.summary())
    if not data.from_cache and data.build_seconds > 0:
        n_files = sum(len(f) for f in data.files.values()) + len(data.skipped)
        n_tokens = sum(data.num_tokens(s) for s in data.files)
        print(f"throughput: {n_files / data.build_seconds:.1f} files/s, "
              f"{n_tokens / data.build_seconds:,.0f} tokens/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
