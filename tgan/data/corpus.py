"""The bundled default corpus: J. S. Bach's scores from music21's corpus (chorales, about 400,
and a few others), rendered to notes.

Rendering choices: every part is one track (soprano, alto, ...); tied notes are merged; grace
notes (no duration) are skipped; repeats are not expanded (each score is played as written);
the score's own metronome marks set the tempo, quarter = 100 bpm where it has none (before its
first mark); every note has velocity 80, as the scores carry no dynamics worth reading; there is
no sustain pedal. Where a score exists in several formats (.mxl and .krn) the MusicXML one is
used; the Roman-numeral analyses (.rntxt) in the same folder are not scores and are left out.
"""
from __future__ import annotations

import bisect
import os
from pathlib import Path

from tgan.data.errors import DataError
from tgan.data.notes import Note, Performance

CORPUS_NAMES = ("bach", "default")
DEFAULT_BPM = 100.0
CORPUS_VELOCITY = 80
COMPOSER = "Johann Sebastian Bach"
# Bump when the rendering changes, so cached corpora are rebuilt.
RENDER_VERSION = 1
_FORMATS = (".mxl", ".musicxml", ".xml", ".krn")  # preference order among copies of one score


def import_music21():
    """The music21 module, or DataError telling how to install it."""
    try:
        import music21
    except ImportError:
        raise DataError('the bundled corpus needs music21: pip install -e ".[corpus]" '
                        '(or pip install music21)') from None
    return music21


def corpus_files() -> list[Path]:
    """The Bach score files of music21's corpus, one per score, sorted by name."""
    m21 = import_music21()
    by_stem: dict[str, Path] = {}
    for p in m21.corpus.getComposer("bach"):
        p = Path(p)
        ext = p.suffix.lower()
        if ext not in _FORMATS:
            continue
        old = by_stem.get(p.stem)
        if old is None or _FORMATS.index(ext) < _FORMATS.index(old.suffix.lower()):
            by_stem[p.stem] = p
    if not by_stem:
        raise DataError("music21 is installed without its corpus (no Bach scores found); "
                        "install the full package: pip install music21")
    return [by_stem[k] for k in sorted(by_stem)]


def _seconds_map(marks: list[tuple[float, float]]):
    """offset in quarter lengths -> seconds, for (offset, quarter bpm) marks sorted by offset."""
    segments = []  # (start offset, start seconds, seconds per quarter)
    off, sec, spq = 0.0, 0.0, 60.0 / DEFAULT_BPM
    for m_off, bpm in marks:
        if m_off < off:
            continue
        sec += (m_off - off) * spq
        off, spq = m_off, 60.0 / bpm
        if segments and segments[-1][0] == off:
            segments[-1] = (off, sec, spq)
        else:
            segments.append((off, sec, spq))
    if not segments or segments[0][0] > 0:
        segments.insert(0, (0.0, 0.0, 60.0 / DEFAULT_BPM))
    starts = [s[0] for s in segments]

    def to_seconds(q: float) -> float:
        o, s, spq_ = segments[bisect.bisect_right(starts, q) - 1]
        return s + (q - o) * spq_

    return to_seconds, segments


def render_score(path) -> tuple[Performance, dict]:
    """Render one score file to a ``Performance`` (see the module docstring for the choices).

    Returns:
        (performance, metadata dict with "title" and "composer").
    """
    m21 = import_music21()
    score = m21.converter.parse(os.fspath(path), forceSource=True)
    score.stripTies(inPlace=True)
    marks = []
    for mm in score.recurse().getElementsByClass(m21.tempo.MetronomeMark):
        bpm = mm.getQuarterBPM()
        if bpm:
            marks.append((float(mm.getOffsetInHierarchy(score)), float(bpm)))
    marks.sort()
    to_seconds, segments = _seconds_map(marks)
    parts = list(score.parts) or [score]
    rows = []
    for track, part in enumerate(parts):
        for k, el in enumerate(part.flatten().notes):
            ql = float(el.quarterLength)
            if ql <= 0 or not hasattr(el, "pitches"):
                continue
            start_q = float(el.offset)
            start, end = to_seconds(start_q), to_seconds(start_q + ql)
            for p in el.pitches:
                rows.append((start, track, k, Note(int(p.midi), CORPUS_VELOCITY, start, end,
                                                   track)))
    rows.sort(key=lambda r: (r[0], r[1], r[2]))
    tempos = [(sec, int(round(spq * 1e6))) for _, sec, spq in segments]
    md = score.metadata
    name = Path(path).name
    title = Path(path).stem
    if md is not None and md.title:
        title = md.title
    elif md is not None and md.movementName and md.movementName != name:
        title = md.movementName
    composer = md.composer if md is not None and md.composer else COMPOSER
    perf = Performance(notes=[r[3] for r in rows], tempos=tempos, ticks_per_beat=480,
                       source=os.fspath(path))
    return perf, {"title": str(title), "composer": str(composer)}
