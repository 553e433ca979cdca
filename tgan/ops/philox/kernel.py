"""Philox4x32-10 in Triton, for the kernels (constants in ``tgan.ops.philox``, torch twin in ``naive.py``).

A kernel that needs four random values per call (four vocabulary columns of Gumbel noise, four
keys of an attention dropout mask) pays one call for them.
"""
import triton
import triton.language as tl

from tgan.ops import philox

# Globals a @triton.jit function reads must be constexpr.
PHILOX_M0 = tl.constexpr(philox.PHILOX_M0)
PHILOX_M1 = tl.constexpr(philox.PHILOX_M1)
PHILOX_W0 = tl.constexpr(philox.PHILOX_W0)
PHILOX_W1 = tl.constexpr(philox.PHILOX_W1)


@triton.jit
def philox4x32(k0, k1, c0, c1, c2, c3):
    """Philox4x32-10 of counters (c0..c3, uint32 tensors) under key (k0, k1) (uint32 scalars)."""
    for _ in tl.static_range(10):
        # One 32 x 32 -> 64-bit product gives both halves: a single IMAD.WIDE.U32 on sm_90 where
        # umulhi and a wrapping multiply compile to two instructions.
        p1 = c2.to(tl.uint64) * PHILOX_M1
        p0 = c0.to(tl.uint64) * PHILOX_M0
        c0 = (p1 >> 32).to(tl.uint32) ^ c1 ^ k0
        c2 = (p0 >> 32).to(tl.uint32) ^ c3 ^ k1
        c1 = p1.to(tl.uint32)
        c3 = p0.to(tl.uint32)
        # Wrapping uint32 arithmetic is the point here: no overflow checks (debug / interpreter).
        k0 = tl.add(k0, PHILOX_W0, sanitize_overflow=False)
        k1 = tl.add(k1, PHILOX_W1, sanitize_overflow=False)
    return c0, c1, c2, c3


@triton.jit
def interleave4(r0, r1, r2, r3, ROWS: tl.constexpr, COLS: tl.constexpr):
    """Four [ROWS, COLS / 4] words -> [ROWS, COLS], column 4n + w taken from word w of group n."""
    return tl.reshape(tl.join(tl.join(r0, r2), tl.join(r1, r3)), [ROWS, COLS])


@triton.jit
def device_seed(SEED, add_lo, add_hi):
    """The seed SEED[0] + add (mod 2^64) as (lo, hi) int32 bit patterns, the form the kernels take
    their int seeds in: SEED an int64 pointer (``tgan.ops.philox.DeviceSeed``'s base), add's halves
    (add_lo, add_hi) int32 bit patterns. One 8-byte load per program."""
    base = tl.load(SEED).to(tl.uint64, bitcast=True)
    add = ((add_hi.to(tl.uint32, bitcast=True).to(tl.uint64) << 32)
           | add_lo.to(tl.uint32, bitcast=True).to(tl.uint64))
    s = tl.add(base, add, sanitize_overflow=False)  # wraps mod 2^64
    return (s.to(tl.uint32).to(tl.int32, bitcast=True),
            (s >> 32).to(tl.uint32).to(tl.int32, bitcast=True))
