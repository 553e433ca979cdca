"""Where the music comes from: a MAESTRO folder, any folder of MIDI files, or the bundled corpus.

``resolve_source(data)`` decides which (see its docstring) and lists the files with their split:
- MAESTRO (v1, v2, v3): the csv's ``split`` column (train / validation / test) by recording.
- A folder of .mid/.midi files (searched recursively) and the bundled corpus: a stable hash of
  each file's key (its path relative to the folder, or ``bach/<name>``): the first 8 hex digits of
  its sha1 read as a fraction of 2^32 put it in train below 0.90, validation below 0.95, else
  test. Adding or removing other files never moves a file to another split.
"""
from __future__ import annotations

import csv
import hashlib
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from tgan.data.errors import DataError

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
SPLIT_RATIOS = (0.90, 0.05, 0.05)
MAESTRO_COLUMNS = ("midi_filename", "split")
MIDI_SUFFIXES = (".mid", ".midi")


@dataclass(frozen=True)
class Item:
    """One piece of music to encode."""

    key: str         # stable name: path relative to the data folder, or "bach/<stem>"
    path: str        # absolute path of the file
    split: str       # "train", "validation" or "test"
    kind: str        # "midi" (read with read_midi) or "score" (rendered with music21)
    composer: str = ""
    title: str = ""


@dataclass
class Source:
    """A resolved data set: its kind, where it is, and its files."""

    kind: str                        # "maestro", "midi" or "corpus"
    root: str                        # the folder (or the corpus name)
    items: list[Item]
    # Files a MAESTRO csv lists but the folder lacks: (path, reason); reported as skipped.
    missing: list[tuple[str, str]] = field(default_factory=list)
    # What else decides the encoded result (music21's version for the corpus).
    fingerprint: str = ""

    def describe(self) -> str:
        return f"{self.kind} {self.root} ({len(self.items)} files)"


def hash_split(key: str) -> str:
    """The split of a file from a stable hash of its key (see the module docstring)."""
    frac = int(hashlib.sha1(key.encode("utf-8")).hexdigest()[:8], 16) / 2 ** 32
    if frac < SPLIT_RATIOS[0]:
        return "train"
    if frac < SPLIT_RATIOS[0] + SPLIT_RATIOS[1]:
        return "validation"
    return "test"


def find_maestro_csv(folder: Path) -> Path | None:
    """The MAESTRO csv at the top of ``folder``: a csv named like ``maestro*.csv`` or one with a
    ``midi_filename`` column; None when there is none (then the folder is plain MIDI)."""
    csvs = sorted(p for p in folder.glob("*.csv") if p.is_file())
    named = [p for p in csvs if "maestro" in p.name.lower()]
    if named:
        return named[0]
    for p in csvs:
        if "midi_filename" in _header(p):
            return p
    return None


def _header(path: Path) -> list[str]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            return [c.strip() for c in next(csv.reader(f), [])]
    except (OSError, UnicodeDecodeError) as e:
        raise DataError(f"cannot read csv {path}: {e}") from None


def maestro_source(csv_path: Path) -> Source:
    """A MAESTRO data set from its csv; DataError naming missing columns or bad split values."""
    root = csv_path.parent
    header = _header(csv_path)
    missing_cols = [c for c in MAESTRO_COLUMNS if c not in header]
    if missing_cols:
        raise DataError(f"MAESTRO csv {csv_path} lacks the column(s) {', '.join(missing_cols)} "
                        f"(expected at least {', '.join(MAESTRO_COLUMNS)}; found "
                        f"{', '.join(header) or 'no header'})")
    items, missing = [], []
    with open(csv_path, newline="", encoding="utf-8") as f:
        for line, row in enumerate(csv.DictReader(f), start=2):
            rel = (row.get("midi_filename") or "").strip()
            split = (row.get("split") or "").strip()
            if split not in SPLITS:
                raise DataError(f"{csv_path} line {line}: split must be one of "
                                f"{', '.join(SPLITS)}, got {split!r}")
            path = root / rel
            if not rel or not path.is_file():
                missing.append((str(path), f"listed in {csv_path.name} but missing"))
                continue
            items.append(Item(rel, str(path.resolve()), split, "midi",
                              (row.get("canonical_composer") or "").strip(),
                              (row.get("canonical_title") or "").strip()))
    items.sort(key=lambda it: it.key)
    return Source("maestro", str(root), items, missing)


def midi_folder_source(folder: Path) -> Source:
    """Every .mid/.midi file under ``folder``, split by ``hash_split`` of its relative path."""
    items = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames.sort()
        for name in sorted(filenames):
            if name.lower().endswith(MIDI_SUFFIXES):
                path = Path(dirpath) / name
                key = path.relative_to(folder).as_posix()
                items.append(Item(key, str(path.resolve()), hash_split(key), "midi"))
    if not items:
        raise DataError(f"no MIDI files (.mid, .midi) found under {folder}")
    items.sort(key=lambda it: it.key)
    return Source("midi", str(folder), items)


def corpus_source() -> Source:
    """The bundled corpus (Bach scores from music21), split by ``hash_split`` of "bach/<name>"."""
    from tgan.data.corpus import RENDER_VERSION, corpus_files, import_music21

    m21 = import_music21()
    items = []
    for path in corpus_files():
        key = f"bach/{path.stem}"
        items.append(Item(key, str(path), hash_split(key), "score", "Johann Sebastian Bach",
                          path.stem))
    return Source("corpus", "bach (music21 corpus)", items,
                  fingerprint=f"music21 {m21.__version__} render {RENDER_VERSION}")


def resolve_source(data: str | os.PathLike | None) -> Source:
    """Resolve a ``--data`` value to a data set.

    - None, "bach" or "default": the bundled corpus (needs music21).
    - A folder with a MAESTRO csv at its top (or the csv itself): MAESTRO.
    - Any other folder: every MIDI file under it.

    Raises:
        DataError: the path does not exist or cannot be read, the csv lacks columns, the folder
            has no MIDI files, or music21 is missing for the corpus.
    """
    if data is None or str(data) in ("bach", "default"):
        return corpus_source()
    path = Path(os.fspath(data)).expanduser()
    if not path.exists():
        raise DataError(f"data path {path} does not exist (expected a MAESTRO folder, a folder "
                        f"of MIDI files, or 'bach' for the bundled corpus)")
    if path.is_file():
        if path.suffix.lower() == ".csv":
            return maestro_source(path)
        raise DataError(f"data path {path} is a file; expected a folder (MAESTRO or MIDI files)")
    if not os.access(path, os.R_OK | os.X_OK):
        raise DataError(f"data path {path} cannot be read (permission denied)")
    csv_path = find_maestro_csv(path)
    if csv_path is not None:
        return maestro_source(csv_path)
    return midi_folder_source(path)
