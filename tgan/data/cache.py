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
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import tempfile
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
    return index


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
