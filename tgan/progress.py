"""Progress reporting that suits where the output goes.

On a terminal: a tqdm bar. Anywhere else (a log file, a pipe, a job scheduler's capture) tqdm's
carriage returns pile up into one huge line (a 5-minute training run wrote a 100 kB one), so
there a plain line is written every ``every`` seconds and at the end instead:

    stage 1/3 MLE: 1200/3000 (40%) 31.2 it/s, 58 s left; loss=2.310 tok_s=16012

``progress(...)`` takes tqdm's common arguments and returns an object with tqdm's ``update``,
``set_postfix``, ``close``, iteration and context-manager protocol.
"""
from __future__ import annotations

import sys
import time


class LineProgress:
    """tqdm's interface, printed as one plain line per ``every`` seconds (and one at the end)."""

    def __init__(self, iterable=None, total=None, desc: str = "", unit: str = "it",
                 initial: int = 0, disable: bool = False, every: float = 30.0, stream=None,
                 clock=time.monotonic):
        self.iterable, self.desc, self.unit = iterable, desc, unit
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)
        self.total, self.n, self.disable, self.every = total, initial, disable, every
        self.stream = stream if stream is not None else sys.stderr
        self.clock = clock
        self._start_n, self._t0 = initial, clock()
        self._last = self._t0
        self._postfix = ""
        self._closed = False

    def __iter__(self):
        for item in self.iterable:
            yield item
            self.update(1)
        self.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def __len__(self):
        return self.total or 0

    def update(self, n: int = 1) -> None:
        self.n += n
        now = self.clock()
        if now - self._last >= self.every:
            self._last = now
            self._print(now)

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kwargs) -> None:
        items = dict(ordered_dict or {}, **kwargs)
        self._postfix = " ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str, refresh: bool = True) -> None:
        self.desc = desc

    def refresh(self) -> None:
        pass

    def write(self, text: str) -> None:
        if not self.disable:
            print(text, file=self.stream, flush=True)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._print(self.clock(), final=True)

    def _print(self, now: float, final: bool = False) -> None:
        if self.disable:
            return
        elapsed = max(now - self._t0, 1e-9)
        rate = (self.n - self._start_n) / elapsed
        done = f"{self.n}" if not self.total else f"{self.n}/{self.total} ({100 * self.n / self.total:.0f}%)"
        line = f"{self.desc}: {done} {rate:.1f} {self.unit}/s"
        if final:
            line += f", {elapsed:.0f} s"
        elif self.total and rate > 0:
            line += f", {max(self.total - self.n, 0) / rate:.0f} s left"
        if self._postfix:
            line += f"; {self._postfix}"
        print(line, file=self.stream, flush=True)


def progress(iterable=None, total=None, desc: str = "", unit: str = "it", initial: int = 0,
             disable: bool = False, leave: bool = True, every: float = 30.0, stream=None, **tqdm_kw):
    """A tqdm bar when ``stream`` (default stderr) is a terminal, else a ``LineProgress``."""
    stream = stream if stream is not None else sys.stderr
    isatty = getattr(stream, "isatty", None)
    if isatty is not None and isatty():
        from tqdm import tqdm

        return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, disable=disable,
                    leave=leave, file=stream, **tqdm_kw)
    return LineProgress(iterable, total=total, desc=desc, unit=unit, initial=initial,
                        disable=disable, every=every, stream=stream)
