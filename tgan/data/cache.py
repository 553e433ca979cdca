"""The on-disk cache of encoded data sets.

One folder per (data set content, encoding options) under the cache directory:
``$TGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/tgan``, else ``~/.cache/tgan``. The folder name ends
in a key: the sha1 of the cache format version, the options, and every file's key, split and
sha1 of its bytes (for the corpus also music21's version), so a changed option or a changed
file leads to another folder and a rebuild, while an unchanged data set is read back.

A folder holds ``index.json`` (options, per-file metadata, skipped files) and per split one
``<split>.npy``: the split's files' tokens concatenated (int16), each file's ``offset`` and
``n_tokens`` in the index. It is written in a temporary folder and renamed into place, so a
reader never sees half a cache and two processes building the same one do not clash.

Every read touches ``index.json``, so its modification time is the folder's last use:
``python -m tgan.data cache --prune-days N`` removes folders unused for N days (a changed data set
or option leaves its old folder behind) and the temporary folders of interrupted builds.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

logger = logging.getLogger(__name__)

CACHE_ENV = "TGAN_CACHE_DIR"
FORMAT_VERSION = 1
INDEX_NAME = "index.json"


def default_cache_dir() -> Path:
    """``$TGAN_CACHE_DIR``, else ``$XDG_CACHE_HOME/tgan``, else ``~/.cache/tgan``."""
    env = os.environ.get(CACHE_ENV)
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "tgan"


def resolve_cache_dir(cache_dir=None) -> Path:
    """``cache_dir`` (user-expanded) if given, else ``default_cache_dir()``."""
    return Path(cache_dir).expanduser() if cache_dir is not None else default_cache_dir()


def file_sha1(path: str, chunk: int = 1 << 20) -> str:
    """sha1 of a file's bytes."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


def cache_key(options: dict, files: list[tuple[str, str, str]]) -> str:
    """sha1 over the format version, the options and (key, split, content sha1) per file."""
    blob = json.dumps({"format": FORMAT_VERSION, "options": options, "files": files},
                      sort_keys=True, separators=(",", ":"))
    return hashlib.sha1(blob.encode("utf-8")).hexdigest()


def folder_name(kind: str, root: str, key: str) -> str:
    """A readable, filesystem-safe folder name: ``<kind>-<last path part>-<key[:16]>``."""
    stem = Path(root.rstrip("/\\")).name or kind
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", stem)[:40]
    return f"{kind}-{stem}-{key[:16]}"


def read_index(folder: Path, key: str) -> dict | None:
    """The index of a finished cache folder whose key matches, else None (missing or stale)."""
    try:
        with open(folder / INDEX_NAME, encoding="utf-8") as f:
            index = json.load(f)
    except (OSError, ValueError):
        return None
    if index.get("format") != FORMAT_VERSION or index.get("key") != key:
        return None
    for split in index.get("splits", {}):
        if not (folder / f"{split}.npy").is_file():
            return None
    try:
        os.utime(folder / INDEX_NAME)  # last use, for pruning; a read-only cache still reads
    except OSError:
        pass
    return index


@dataclass
class CacheEntry:
    """One folder under the cache directory."""

    path: Path
    source: str  # what was encoded ('?' for a temporary or broken folder)
    n_bytes: int
    last_used: float  # seconds since the epoch
    complete: bool  # False: the temporary folder of a build, or a folder without a valid index


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in folder.rglob("*") if f.is_file())


def list_cache(cache_dir=None) -> list[CacheEntry]:
    """The folders of a cache directory, least recently used first."""
    root = resolve_cache_dir(cache_dir)
    if not root.is_dir():
        return []
    entries = []
    for folder in root.iterdir():
        if not folder.is_dir():
            continue
        index_file = folder / INDEX_NAME
        try:
            index = json.loads(index_file.read_text(encoding="utf-8"))
            complete = not folder.name.startswith(".tmp-") and index.get("format") == FORMAT_VERSION
            source, used = index.get("source", "?"), index_file.stat().st_mtime
        except (OSError, ValueError):
            complete, source, used = False, "?", folder.stat().st_mtime
        entries.append(CacheEntry(folder, source, _folder_bytes(folder), used, complete))
    return sorted(entries, key=lambda e: e.last_used)


def prune_cache(days: float, cache_dir=None, dry_run: bool = False) -> list[CacheEntry]:
    """Remove folders unused for ``days`` days, and incomplete ones older than an hour.

    Returns the entries removed (or that would be, with ``dry_run``). A build in progress writes
    its temporary folder continuously, so it is never an hour old.
    """
    if days < 0:
        raise ValueError(f"days must be >= 0, got {days}")
    now = time.time()
    gone = [e for e in list_cache(cache_dir)
            if now - e.last_used > days * 86400 or (not e.complete and now - e.last_used > 3600)]
    if not dry_run:
        for e in gone:
            shutil.rmtree(e.path, ignore_errors=True)
    return gone


def write_cache(folder: Path, index: dict, arrays: dict[str, np.ndarray]) -> None:
    """Write ``arrays`` (split -> tokens) and ``index`` into ``folder`` atomically.

    Written into a temporary sibling folder that is renamed into place; if another process
    finished the same folder first, its copy is kept and ours discarded.
    """
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{folder.name}-", dir=folder.parent))
    try:
        # mkdtemp makes the folder private (0700); a cache is shared like any other folder.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        for split, arr in arrays.items():
            np.save(tmp / f"{split}.npy", arr)
        with open(tmp / INDEX_NAME, "w", encoding="utf-8") as f:
            json.dump(index, f, indent=1)
        if folder.exists():
            # A stale or broken folder of the same name (same key, so the same content):
            # replace it unless it is now complete.
            if read_index(folder, index["key"]) is not None:
                logger.info("cache %s was written by another process meanwhile", folder)
                return
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.rename(tmp, folder)
        except OSError:
            if read_index(folder, index["key"]) is None:
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
