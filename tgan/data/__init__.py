"""MIDI <-> events, augmentation, data sets and their cache. Never imports the model.

Main entry points::

    read_midi(path, sustain=True) -> Performance        write_midi(notes, path)
    Vocab.maestro() / Vocab.full() / Vocab.by_name(name)
    encode(notes, vocab) -> int16 ids                    decode(ids, vocab) -> (notes, DecodeStats)
    tokens_to_midi(ids, vocab, path)
    prepare(data, vocab_name=...) -> PreparedData        resolve_source(data) -> Source
    TokenCrops(prepared, split, length)                  chunks(prepared, split, length)

``TokenCrops`` and ``chunks`` need torch and load on first use, so worker processes that only
encode files do not import it.
"""
from tgan.data.augment import (STRETCHES, TRANSPOSITIONS, augment_variants, random_augment,
                               stretch_tokens, transpose_tokens)
from tgan.data.cache import CACHE_ENV, default_cache_dir
from tgan.data.datasets import FileInfo, PreparedData, prepare
from tgan.data.errors import DataError, MidiError
from tgan.data.events import DecodeStats, decode, encode, quantize, tokens_to_midi
from tgan.data.midi import read_midi, write_midi
from tgan.data.notes import Note, Performance
from tgan.data.sources import SPLITS, Source, resolve_source
from tgan.data.vocab import Vocab, bin_to_velocity, velocity_to_bin

__all__ = [
    "CACHE_ENV", "DataError", "DecodeStats", "FileInfo", "MidiError", "Note", "Performance",
    "PreparedData", "STRETCHES", "SPLITS", "Source", "TRANSPOSITIONS", "TokenCrops", "Vocab",
    "augment_variants", "bin_to_velocity", "chunks", "decode", "default_cache_dir", "encode",
    "prepare", "quantize", "random_augment", "read_midi", "resolve_source", "stretch_tokens",
    "tokens_to_midi", "transpose_tokens", "velocity_to_bin", "write_midi",
]


def __getattr__(name):
    if name in ("TokenCrops", "chunks"):
        from tgan.data import loader

        return getattr(loader, name)
    raise AttributeError(f"module 'tgan.data' has no attribute {name!r}")
