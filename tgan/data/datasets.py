"""Preparing a data set: every file encoded once, in parallel, into the cache (see cache.py).

``prepare(data)`` resolves the data set (sources.py), reads the cache when it is current and
otherwise encodes every file (a process pool, one task per file) and writes it. Files that cannot
be used (empty, truncated, not MIDI, no notes) are skipped with a warning naming them; a data set
that yields no tokens at all stops with ``DataError``.

Tokens are stored un-augmented; augmentation happens on tokens when training crops are drawn
(loader.py, augment.py), so the cache holds one copy of each piece, not 35.
"""
from __future__ import annotations

import logging
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from tgan.data.cache import (FORMAT_VERSION, cache_key, file_sha1, folder_name, read_index,
                             resolve_cache_dir, write_cache)
from tgan.data.errors import DataError, MidiError
from tgan.data.events import encode
from tgan.data.sources import SPLITS, Item, resolve_source
from tgan.data.vocab import TOKEN_DTYPE, Vocab

logger = logging.getLogger(__name__)


@dataclass
class FileInfo:
    """Metadata of one encoded file, as kept in the cache index."""

    key: str            # path relative to the data folder, or "bach/<name>"
    path: str           # source file
    split: str
    offset: int         # start of its tokens in the split's array
    n_tokens: int
    n_notes: int
    duration: float     # seconds, to the end of the last note
    min_pitch: int
    max_pitch: int
    composer: str = ""
    title: str = ""
    dropped_notes: int = 0  # notes outside the vocab's pitch range, left out
    sha1: str = ""          # of the source file's bytes


def encode_item(item: Item, vocab_name: str, sustain: bool) -> dict:
    """Read or render one file and encode it: {"tokens", "n_notes", ...} or {"error": reason}.

    Runs in worker processes. Only DataError (music21 missing) propagates; any other failure
    of one file is returned as its skip reason.
    """
    from tgan.data.corpus import render_score
    from tgan.data.midi import read_midi

    vocab = Vocab.by_name(vocab_name)
    meta = {}
    try:
        if item.kind == "score":
            perf, meta = render_score(item.path)
        else:
            perf = read_midi(item.path, sustain=sustain)
    except MidiError as e:
        return {"error": e.reason}
    except DataError:
        raise
    except Exception as e:  # a score music21 cannot parse, an unreadable file, ...
        return {"error": f"cannot be read ({type(e).__name__}: {e})"}
    if not perf.notes:
        return {"error": "no notes (after dropping the drum channel)"}
    kept = [n for n in perf.notes if vocab.in_range(n.pitch)]
    if not kept:
        return {"error": f"no notes in the {vocab_name!r} vocab's pitch range "
                         f"{vocab.min_pitch}..{vocab.max_pitch}"}
    tokens = encode(kept, vocab)
    pitches = [n.pitch for n in kept]
    return {"tokens": tokens, "n_notes": len(kept), "duration": round(perf.duration, 4),
            "min_pitch": min(pitches), "max_pitch": max(pitches),
            "dropped_notes": len(perf.notes) - len(kept),
            "title": meta.get("title", item.title), "composer": meta.get("composer", item.composer)}


def _run_all(items: list[Item], vocab_name: str, sustain: bool, workers: int,
             progress: bool) -> list[dict]:
    from tgan.progress import progress as progress_bar

    bar = progress_bar(total=len(items), desc="encoding", unit="file", disable=not progress)
    results: list[dict] = [None] * len(items)
    try:
        if workers <= 1 or len(items) <= 1:
            for i, it in enumerate(items):
                results[i] = encode_item(it, vocab_name, sustain)
                bar.update()
            return results
        # forkserver (spawn where missing): workers start clean, whatever threads the caller
        # (torch, tqdm) already runs, which fork would copy into them half-way.
        method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() \
            else "spawn"
        ctx = multiprocessing.get_context(method)
        with ProcessPoolExecutor(max_workers=min(workers, len(items)), mp_context=ctx) as pool:
            futures = {pool.submit(encode_item, it, vocab_name, sustain): i
                       for i, it in enumerate(items)}
            for fut in as_completed(futures):
                results[futures[fut]] = fut.result()
                bar.update()
        return results
    finally:
        bar.close()


class PreparedData:
    """An encoded data set read from its cache folder.

    Attributes: ``path`` (the cache folder), ``vocab``, ``index`` (the raw index dict),
    ``files`` (split -> list of FileInfo, in key order), ``skipped`` (list of {"path",
    "reason"}), ``from_cache`` (True when no file was encoded this time), ``build_seconds``.
    """

    def __init__(self, path: Path, index: dict, from_cache: bool, build_seconds: float = 0.0):
        self.path = Path(path)
        self.index = index
        self.vocab = Vocab.by_name(index["options"]["vocab"])
        self.files = {s: [FileInfo(**f) for f in index["splits"].get(s, [])] for s in SPLITS}
        self.skipped = index.get("skipped", [])
        self.from_cache = from_cache
        self.build_seconds = build_seconds
        self._arrays: dict[str, np.ndarray] = {}

    def __getstate__(self):
        # DataLoader workers get a copy of this object: send the path, not the mapped arrays.
        state = dict(self.__dict__)
        state["_arrays"] = {}
        return state

    @classmethod
    def load(cls, path) -> "PreparedData":
        """Open a cache folder written by ``prepare``."""
        import json

        path = Path(path)
        try:
            with open(path / "index.json", encoding="utf-8") as f:
                index = json.load(f)
        except (OSError, ValueError) as e:
            raise DataError(f"{path} is not a prepared data set ({e})") from None
        return cls(path, index, from_cache=True)

    def _check_split(self, split: str) -> None:
        if split not in SPLITS:
            raise ValueError(f"split must be one of {', '.join(SPLITS)}, got {split!r}")

    def tokens(self, split: str) -> np.ndarray:
        """All tokens of a split, files concatenated (int16, memory-mapped)."""
        self._check_split(split)
        if split not in self._arrays:
            self._arrays[split] = np.load(self.path / f"{split}.npy", mmap_mode="r")
        return self._arrays[split]

    def file_tokens(self, split: str, i: int) -> np.ndarray:
        """The tokens of the i-th file of a split (int16 view, no EOS)."""
        self._check_split(split)
        files = self.files[split]
        if not 0 <= i < len(files):
            raise IndexError(f"file index must be in 0..{len(files) - 1} for split {split!r}, "
                             f"got {i}")
        f = files[i]
        return self.tokens(split)[f.offset:f.offset + f.n_tokens]

    def num_tokens(self, split: str) -> int:
        return sum(f.n_tokens for f in self.files[split])

    def hours(self, split: str) -> float:
        return sum(f.duration for f in self.files[split]) / 3600.0

    def summary(self) -> str:
        """A few lines: the data set, files / tokens / hours per split, skipped files."""
        o = self.index["options"]
        lines = [f"data: {self.index['source']}",
                 f"vocab: {o['vocab']} ({self.vocab.size} ids), sustain "
                 f"{'on' if o['sustain'] else 'off'}" + (f", limit {o['limit']}"
                                                         if o.get("limit") else ""),
                 f"cache: {self.path} ("
                 + ("read from cache" if self.from_cache else
                    f"built in {self.build_seconds:.1f} s") + ")",
                 f"{'split':<11}{'files':>7}{'tokens':>13}{'hours':>9}"]
        for s in SPLITS:
            lines.append(f"{s:<11}{len(self.files[s]):>7}{self.num_tokens(s):>13,}"
                         f"{self.hours(s):>9.2f}")
        lines.append(f"skipped: {len(self.skipped)} file(s)")
        lines += [f"  {d['path']}: {d['reason']}" for d in self.skipped]
        return "\n".join(lines)


def _keyed(source, vocab_name: str, sustain: bool, limit: int | None):
    """(items, options, per-file hashes, cache key) of a resolved data set: the key changes with
    any file's bytes, split or the encoding options."""
    items = source.items[:limit] if limit else source.items
    # The pedal means nothing to rendered scores; leaving it out of their key shares the cache.
    options = {"vocab": vocab_name, "sustain": bool(sustain) if source.kind != "corpus" else False,
               "limit": limit, "kind": source.kind, "fingerprint": source.fingerprint}
    try:
        hashes = [(it.key, it.split, file_sha1(it.path)) for it in items]
    except OSError as e:
        raise DataError(f"cannot read {e.filename}: {e.strerror}") from None
    return items, options, hashes, cache_key(options, hashes)


def data_identity(data=None, vocab_name: str = "maestro", sustain: bool = True) -> dict:
    """What identifies a data set without encoding it: {"source", "kind", "root", "key"}, where
    "key" is the cache key ``prepare`` would use (it hashes every file's bytes and split)."""
    source = resolve_source(data)
    key = _keyed(source, vocab_name, sustain, None)[3]
    return {"source": source.describe(), "kind": source.kind, "root": source.root, "key": key}


def prepare(data=None, vocab_name: str = "maestro", cache_dir=None, sustain: bool = True,
            workers: int | None = None, progress: bool = True, limit: int | None = None,
            rebuild: bool = False) -> PreparedData:
    """Encode a data set once into the cache and return it (read back when current).

    Args:
        data: None / "bach" / "default" (bundled corpus), a MAESTRO folder, or a MIDI folder.
        vocab_name: "maestro" (pitches 21..108) or "full" (0..127); notes outside are dropped.
        cache_dir: default ``$TGAN_CACHE_DIR`` or ``~/.cache/tgan``.
        sustain: apply the sustain pedal when reading MIDI (no effect on the corpus).
        workers: processes for encoding; default ``os.cpu_count()``; 1 encodes in-process.
        progress: show a tqdm bar.
        limit: encode only the first ``limit`` files (in key order), for quick runs and tests.
        rebuild: encode even when the cache is current.

    Raises:
        DataError: see ``resolve_source``; also when no file yields tokens.
    """
    Vocab.by_name(vocab_name)  # validates the name before any work
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be a positive number of files or None, got {limit}")
    if workers is not None and workers < 1:
        raise ValueError(f"workers must be >= 1 or None, got {workers}")
    source = resolve_source(data)
    items, options, hashes, key = _keyed(source, vocab_name, sustain, limit)
    cache_root = resolve_cache_dir(cache_dir)
    folder = cache_root / folder_name(source.kind, source.root, key)

    index = None if rebuild else read_index(folder, key)
    if index is not None:
        logger.info("data set %s read from cache %s", source.describe(), folder)
        return PreparedData(folder, index, from_cache=True)

    t0 = time.perf_counter()
    workers = workers or os.cpu_count() or 1
    results = _run_all(items, vocab_name, options["sustain"], workers, progress)
    skipped = [{"path": p, "reason": r} for p, r in source.missing]
    per_split: dict[str, list[dict]] = {s: [] for s in SPLITS}
    arrays: dict[str, list[np.ndarray]] = {s: [] for s in SPLITS}
    offsets = dict.fromkeys(SPLITS, 0)
    for it, (_, _, sha), res in zip(items, hashes, results):
        if "error" in res:
            logger.warning("skipping %s: %s", it.path, res["error"])
            skipped.append({"path": it.path, "reason": res["error"]})
            continue
        toks = res.pop("tokens")
        info = FileInfo(key=it.key, path=it.path, split=it.split, offset=offsets[it.split],
                        n_tokens=len(toks), sha1=sha, **res)
        per_split[it.split].append(asdict(info))
        arrays[it.split].append(toks)
        offsets[it.split] += len(toks)
    for p, r in source.missing:
        logger.warning("skipping %s: %s", p, r)
    if not any(offsets.values()):
        raise DataError(f"data set {source.describe()} yields no tokens: all "
                        f"{len(items) + len(source.missing)} file(s) skipped "
                        f"(first: {skipped[0]['path']}: {skipped[0]['reason']})" if skipped
                        else f"data set {source.describe()} yields no tokens")
    for s in SPLITS:
        if not per_split[s]:
            logger.warning("split %r of %s has no files", s, source.describe())
    index = {"format": FORMAT_VERSION, "key": key, "source": source.describe(),
             "options": options, "splits": per_split, "skipped": skipped}
    concat = {s: (np.concatenate(arrays[s]) if arrays[s] else np.zeros(0, TOKEN_DTYPE))
              .astype(TOKEN_DTYPE) for s in SPLITS}
    write_cache(folder, index, concat)
    seconds = time.perf_counter() - t0
    logger.info("data set %s encoded in %.1f s into %s", source.describe(), seconds, folder)
    return PreparedData(folder, index, from_cache=False, build_seconds=seconds)
