"""Philox4x32-10 in PyTorch: the kernels' random bits, for references and tests (int64 tensors)."""
from __future__ import annotations

import contextlib
import threading
from typing import NamedTuple

import torch

from tgan.ops.philox import MASK32, PHILOX_M0, PHILOX_M1, PHILOX_W0, PHILOX_W1


def draw_seed(generator=None) -> int:
    """A seed in [0, 2^63) from a CPU generator (torch's default one when None): no device sync.

    Inside ``seed_stream`` (for its generator, or for None) the seed is the stream's next one
    instead: no draw. A stream on a device serves ``draw_op_seed`` only; here it draws.
    """
    stream = _serving(generator)
    if stream is not None and stream.device is None:
        return stream.next()
    return _host_draw(generator)


def draw_op_seed(generator=None):
    """The seed an op draws when none is given: ``draw_seed``'s int, or inside a ``seed_stream``
    on a device, the stream's next ``DeviceSeed`` (no host draw, and a value the kernels read on
    the device). The ops that take a ``DeviceSeed`` (attention dropout, Gumbel noise) draw here."""
    stream = _serving(generator)
    if stream is not None:
        return stream.next()
    return _host_draw(generator)


def _serving(generator):
    """The innermost ``seed_stream`` of this thread if it serves ``generator``, else None."""
    stream = getattr(_ACTIVE, "stream", None)
    if stream is not None and (generator is None or generator is stream.generator):
        return stream
    return None


def _host_draw(generator) -> int:
    """One seed from the CPU generator (a CPU randint and its read-back)."""
    return int(torch.randint(0, 2**63 - 1, (1,), generator=generator, dtype=torch.int64).item())


class DeviceSeed(NamedTuple):
    """A seed that the kernels read from device memory: ``base[0] + add`` (mod 2^64).

    ``base`` is an int64 tensor of one element on the device of the op's tensors; ``add`` an int
    in [0, 2^63). Where an int seed is a kernel argument, fixed when a launch is recorded in a
    CUDA graph, a ``DeviceSeed``'s base is read by the kernel at every launch, so a captured step
    replays with new noise after ``base`` is refilled (in place, on the device). The torch paths
    take the same value as a tensor (``as_tensor``): the same bits on either backend.

    The op reads ``base`` again in its backward (which regenerates the noise): refill it only after
    the backward of every op that used it has run.
    """

    base: torch.Tensor
    add: int = 0

    def as_tensor(self) -> torch.Tensor:
        """The seed as a 0-d int64 tensor on base's device (two's complement of the 64-bit value)."""
        add = self.add - 2**64 if self.add >= 2**63 else self.add
        return self.base.reshape(()) + add

    def value(self) -> int:
        """The seed as a Python int in [0, 2^64): reads ``base`` back (a device sync; tests, logs)."""
        return (int(self.base.reshape(()).item()) + self.add) % 2**64

    def split(self, n: int) -> "DeviceSeed":
        """The stream's n-th seed: ``add`` advanced by n Weyl steps (``SeedStream``'s spacing), the
        same base tensor: distinct launches of a step draw independent noise from one refill."""
        return DeviceSeed(self.base, (self.add + n * _WEYL64) & (2**63 - 1))


def check_device_seed(op: str, seed: DeviceSeed, device: torch.device) -> DeviceSeed:
    """``seed`` checked for an op whose tensors live on ``device``: an int64 base of one element
    there, an int add in [0, 2^63). Raises naming the op otherwise."""
    base, add = seed
    if not isinstance(base, torch.Tensor) or base.dtype != torch.int64 or base.numel() != 1:
        raise TypeError(f"{op}: a DeviceSeed's base must be an int64 tensor of one element, got "
                        f"{getattr(base, 'dtype', type(base).__name__)} of "
                        f"{getattr(base, 'numel', lambda: '?')()} elements")
    if _device(base.device) != _device(device):
        raise ValueError(f"{op}: the DeviceSeed's base is on {base.device}, the op's tensors on "
                         f"{device}")
    if isinstance(add, bool) or not isinstance(add, int) or not 0 <= add < 2**63:
        raise ValueError(f"{op}: a DeviceSeed's add must be an int in [0, 2**63), got {add!r}")
    return seed


def _device(device) -> torch.device:
    """``device`` with its index: "cuda" is the current CUDA device (so it equals "cuda:0" there)."""
    device = torch.device(device)
    if device.type == "cuda" and device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def same_device(a, b) -> bool:
    """Whether devices ``a`` and ``b`` are one ("cuda" and "cuda:0" are, on device 0)."""
    return _device(a) == _device(b)


def device_seed(device, generator=None) -> DeviceSeed:
    """A fresh ``DeviceSeed`` on ``device``: its base drawn there by ``torch.randint`` (from
    ``generator``, or the device's default generator, so ``torch.manual_seed`` repeats it), with
    no host draw and no sync. Refill it in place (``seed.base.random_(0, 2**63 - 1)``) for new noise."""
    base = torch.randint(0, 2**63 - 1, (1,), dtype=torch.int64, device=device, generator=generator)
    return DeviceSeed(base)


_ACTIVE = threading.local()
_WEYL64 = 0x9E3779B97F4A7C15  # odd: consecutive seeds of a stream land far apart


class SeedStream:
    """Seeds from one draw: ``next()`` gives base + i·W mod 2^63 for i = 0, 1, ...

    Philox keys every kernel's stream by its seed, so distinct seeds give independent noise; a
    stream makes them without drawing, so a token loop that launches several kernels per token
    draws once (``seed_stream``) instead of once per launch. With ``device`` the base is an int64
    tensor drawn there (``device_seed``) and ``next()`` gives ``DeviceSeed``s over it, base + i·W
    computed by the kernels: no host draw, no Python int that a captured graph would freeze.
    """

    def __init__(self, generator=None, device=None):
        self.generator = generator
        self.device = None if device is None else _device(device)
        if self.device is None:
            self.base = draw_seed(generator)
        elif generator is not None and _device(generator.device) != self.device:
            # a host generator for a device stream: its one draw, copied over
            self.base = DeviceSeed(torch.tensor([_host_draw(generator)]).to(self.device,
                                                                          non_blocking=True))
        else:
            self.base = device_seed(self.device, generator)
        self.count = 0

    def next(self):
        """The stream's next seed: an int, or on a device a ``DeviceSeed``."""
        n, self.count = self.count, self.count + 1
        if self.device is not None:
            return self.base.split(n)
        return (self.base + n * _WEYL64) & (2**63 - 1)


@contextlib.contextmanager
def seed_stream(generator=None, device=None):
    """Within it, ``draw_seed()`` (and ``draw_seed(generator)``) return a ``SeedStream``'s seeds,
    drawn once from ``generator`` (torch's default CPU generator when None) on entry: the same
    seed sequence for the same generator state, one host draw for the whole block. Per thread;
    blocks nest (the innermost serves).

    With ``device``, the ops' own draws (``draw_op_seed``) get ``DeviceSeed``s over one base drawn
    on that device (from its default generator, or ``generator``): no host draw at all, and
    seeds that a CUDA graph of the block reads afresh at each replay. ``draw_seed`` is not served
    there (it returns an int: it draws)."""
    stream = SeedStream(generator, device)
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
