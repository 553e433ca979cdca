"""Philox4x32-10 in PyTorch: the kernels' random bits, for references and tests (int64 tensors)."""
from __future__ import annotations

import contextlib
import threading

import torch

from tgan.ops.philox import MASK32, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1


def draw_seed(generator=None) -> int:
    """A seed in [0, 2^63) from a CPU generator (torch's default one when None): no device sync.

    Inside ``seed_stream`` (for its generator, or for None) the seed is the stream's next one
    instead: no draw.
    """
    stream = getattr(_ACTIVE, "stream", None)
    if stream is not None and (generator is None or generator is stream.generator):
        return stream.next()
    return _host_draw(generator)


def _host_draw(generator) -> int:
    """One seed from the CPU generator (a CPU randint and its read-back)."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64).item())


_ACTIVE = threading.local()
_WEYL64 = 0x9E3779B97F4A7C15  # odd: consecutive seeds of a stream land far apart


class SeedStream:
    """Seeds from one host draw: ``next()`` gives base + i·W mod 2^63 for i = 0, 1, ...

    Philox keys every kernel's stream by its seed, so distinct seeds give independent noise; a
    stream makes them without drawing, so a token loop that launches several kernels per token
    draws once (``seed_stream``) instead of once per launch.
    """

    def __init__(self, generator=None):
        self.generator = generator
        self.base = draw_seed(generator)
        self.count = 0

    def next(self) -> int:
        seed = (self.base + self.count * _WEYL64) & (2**63 - 1)
        self.count += 1
        return seed


@contextlib.contextmanager
def seed_stream(generator=None):
    """Within it, ``draw_seed()`` (and ``draw_seed(generator)``) return a ``SeedStream``'s seeds,
    drawn once from ``generator`` (torch's default CPU generator when None) on entry: the same
    seed sequence for the same generator state, one host draw for the whole block. Per thread;
    blocks nest (the innermost serves)."""
    stream = SeedStream(generator)
    saved = getattr(_ACTIVE, "stream", None)
    _ACTIVE.stream = stream
    try:
        yield stream
    finally:
        _ACTIVE.stream = saved


def _mulhilo32(a: int, b: torch.Tensor):
    """(high, low) 32-bit words of a * b for a uint32 constant and int64 tensor b in [0, 2^32).

    Split b in 16-bit halves so that no product leaves int64.
    """
    p_hi, p_lo = a * (b >> 16), a * (b & 0xFFFF)  # each < 2^48
    return (p_hi + (p_lo >> 16)) >> 16, (((p_hi & 0xFFFF) << 16) + p_lo) & MASK32


def philox4x32(c0, c1, c2, c3, k0: int, k1: int):
    """Philox4x32-10 of counter words c0..c3 (int64 tensors in [0, 2^32)) under key (k0, k1)."""
    for _ in range(10):
        hi0, lo0 = _mulhilo32(PHILOX_M0, c0)
        hi1, lo1 = _mulhilo32(PHILOX_M1, c2)
        c0, c1, c2, c3 = hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0
        k0, k1 = (k0 + PHILOX_W0) & MASK32, (k1 + PHILOX_W1) & MASK32
    return c0, c1, c2, c3


def philox_bits(rows: int, V: int, seed, offset, device=None) -> torch.Tensor:
    """The kernels' 32 random bits of every element of a [rows, V] problem, int64 in [0, 2^32).

    ``seed`` and ``offset``: Python ints, or int64 tensors of one element on ``device`` (values
    in [0, 2^63)), so that a captured or compiled step can advance them on the device."""
    G = (V + 3) // 4
    c0 = torch.arange(rows, dtype=torch.int64, device=device)[:, None].expand(rows, G)
    c1 = torch.arange(G, dtype=torch.int64, device=device)[None, :].expand(rows, G)
    zeros = torch.zeros((rows, G), dtype=torch.int64, device=device)
    c2 = zeros + (offset & MASK32)
    c3 = zeros + ((offset >> 32) & MASK32)
    words = philox4x32(c0, c1, c2, c3, seed & MASK32, (seed >> 32) & MASK32)
    return torch.stack(words, dim=-1).reshape(rows, 4 * G)[:, :V]
