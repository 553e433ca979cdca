"""Gumbel-max sampling with a straight-through softmax backward, and top-k / top-p sampling.

@triton.jit code only; launchers and autograd live in ``tgan.ops.gumbel_softmax``.

Tiles. The one-hot passes (forward and backward) work on word tiles: a row's
G = cdiv(V, 4) Philox groups are covered by chunks of NG_A (NUM_CHUNKS of them), NG_B and NG_C
groups, powers of two chosen by the launcher (V = 390: 64 + 32 + 2, V = 310: 64 + 8 + 8 for 78),
and each chunk is four [BLOCK_R, NG] tiles, tile w holding columns 4 * group + w: the layout the
Philox words come out in, so they are never interleaved into column order (that compiled to a
round trip through shared memory with barriers), and only the last chunk's group count is padded,
not V to a power of two (512-lane tiles left 24% of the lanes idle at V = 390, 39% at 310). The
forward reduces the four words element by element and then once per chunk (a max and a min, not
a reduction over (value, column) pairs); it writes the one-hot as zeros everywhere, a barrier,
then the ones. The backward holds a row of up to 4096 in registers; wider rows take two passes
(online max / normaliser / <gin, p>, then the noise regenerated and the gradient written). The
other kernels (the fused embedding backward, sampling, the noise kernel) work on
[BLOCK_R, BLOCK_V] tiles: BLOCK_V = next_power_of_2(V) columns, or NUM_CHUNKS chunks of the
launcher's largest tile looped over (online max / argmax / sums).
All arithmetic is fp32 whatever the storage dtype.

Noise. Element (r, c) of the flattened [R, V] problem draws its Gumbel noise from a counter-based
Philox4x32-10: key = the 64-bit seed, counter = (r, c // 4, offset_lo, offset_hi), output word
c % 4. So the noise of an element depends on (seed, offset, r, c) only, never on the tiling, and
the forward, the backward and ``gumbel_noise_kernel`` regenerate identical values; one Philox call
serves four columns. Different offsets are different counters: disjoint streams, not shifted copies.
The 32 random bits x become u = (x + 0.5) * 2^-32 clamped to <= 1 - 2^-24, so 2^-33 <= u < 1, and
g = -ln(E) with E = -ln(1 - u) = -log1p(-u) (`_gumbel_from_bits`): g lies in about [-2.8, 22.9],
within 1e-6 plus an ulp of g of the exact value. The logarithms are polynomials on the float's
exponent and mantissa (`_ln_parts`, `_ln_poly`, `_ln`), without tl.log's special-value handling.

Bytes and FLOPs the ops must move and do (b = bytes per logit, be = per embedding element, R rows):
  forward, one-hot out, seeded:   read R*V*b logits, write R*V*b one-hot, write R*8 indices.
  forward, embedding out:         read R*V*b logits + R*E*be rows of E, write R*E*be, R*8 indices.
  backward, one-hot:              read R*V*b logits + R*V*b grad of y, write R*V*b grad of logits.
  backward, embedding:            read R*V*b logits + R*E*be grad of e + V*E*be E (once from DRAM,
                                  re-read from L2 by every row block), write R*V*b grad of logits;
                                  grad of E: R*E*4 scattered adds into a V*E*4 fp32 buffer.
  explicit noise adds a R*V*4 read to each pass (the tests use it; training uses seeds).
  Example R = 131072 (B*T), V = 390, bf16: R*V = 51,118,080; forward 205.5 MB, backward 306.7 MB
  (fp32: 410.0 MB and 613.4 MB).
  Per element: Philox 10 rounds x (2 32x32->64-bit multiplies + 2 three-input xors) / 4 columns
  = 10 integer ops; noise 1 int->float, two polynomial logs (degree 7 and 6: 15 FFMA), ~12 other
  ops; forward +1 add, 3 to keep the larger of the four words, 1 store of the one-hot; backward
  1 exp2 + ~7 flops and two row reductions.
  The fused embedding backward adds 2*V*E FLOPs per row (grad_e @ E^T), which dominates: 51.1
  GFLOP for the example with E = 500.
  The one-hot passes are not memory-bound: the per-element arithmetic above sets their time
  (the timings against the byte floor are in benchmarks/RESULTS.md).
  The compile report's issue model puts the word-tile forward at 1.6x its floor for V = 390, bf16
  (3.2x before), the backward at 1.5x (2.4x) (estimates; not timed on a GPU yet). Loads are in
  word order (a warp reads 2 bytes every 8; the other words of a sector hit L1); stores are in
  column order (zeros written so, gradients interleaved first), one write per sector at L2.
"""
import triton
import triton.language as tl

from tgan.ops.philox.kernel import device_seed, interleave4, philox4x32

_LOG2E = tl.constexpr(1.4426950408889634)

# Seeds, offsets and top_k change every call: specialising on them (== 1, divisible by 16) would
# compile new variants as the values change.
_RNG_ARGS = ["seed_lo", "seed_hi", "off_lo", "off_hi"]


@triton.jit
def _finite_or_zero(m):
    """A row max made safe as a softmax reference point: rows that are all -inf (padding past R,
    or a chunk of masked tokens) use 0, so exp(-inf - 0) = 0 instead of NaN from -inf - (-inf)."""
    return tl.where(m == float("-inf"), 0.0, m)


@triton.jit
def _group_words(seed_lo, seed_hi, off_lo, off_hi, rows, groups,
                 BLOCK_R: tl.constexpr, NG: tl.constexpr):
    """The four Philox words [BLOCK_R, NG] of rows ``rows`` and groups ``groups``: counter
    (row, group, off_lo, off_hi) under key (seed_lo, seed_hi); word w serves column 4 group + w."""
    zero = tl.zeros([BLOCK_R, NG], dtype=tl.uint32)
    return philox4x32(seed_lo.to(tl.uint32, bitcast=True), seed_hi.to(tl.uint32, bitcast=True),
                      zero + rows[:, None].to(tl.uint32), zero + groups[None, :].to(tl.uint32),
                      zero + off_lo.to(tl.uint32, bitcast=True),
                      zero + off_hi.to(tl.uint32, bitcast=True))


@triton.jit
def _gumbel_tile(seed_lo, seed_hi, off_lo, off_hi, rows, col0,
                 BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """fp32 Gumbel noise [BLOCK_R, BLOCK_V] of rows `rows` [BLOCK_R] and columns col0 + [0, BLOCK_V).

    col0 is a multiple of 4 (a multiple of BLOCK_V >= 16).
    """
    r0, r1, r2, r3 = _group_words(seed_lo, seed_hi, off_lo, off_hi, rows,
                                  col0 // 4 + tl.arange(0, BLOCK_V // 4), BLOCK_R, BLOCK_V // 4)
    bits = interleave4(r0, r1, r2, r3, BLOCK_R, BLOCK_V)  # column 4n + j: word j of group n
    return _gumbel_from_bits(bits)


@triton.jit
def _ln_parts(y):
    """y = 2^k (1 + t) with 1 + t in [sqrt(1/2), sqrt(2)): (e = k << 23 as int32, t fp32), for
    `_ln_poly`. e is kept shifted: it is masked out of y's bits, and converts exactly to fp32."""
    bits = y.to(tl.int32, bitcast=True)
    e = (bits - 0x3F3504F3) & -8388608  # 0x3F3504F3 = sqrt(1/2); -8388608 = 0xFF800000, k << 23
    t = (bits - e).to(tl.float32, bitcast=True) - 1.0
    return e, t


@triton.jit
def _ln_join(e, t, q):
    """k ln 2 + t q, with e = k << 23 and q a fit of ln(1 + t) / t."""
    return t * q + e.to(tl.float32) * 8.262958294867817e-08  # ln 2 / 2^23


@triton.jit
def _ln_poly(e, t):
    """k ln 2 + ln(1 + t) for t in [sqrt(1/2) - 1, sqrt(2) - 1] and e = k << 23: t q(t) with q a
    degree-7 least-squares fit of ln(1+t)/t there, |relative error| < 2e-7 in fp32."""
    q = -0.10134056955575943
    q = q * t + 0.1623418927192688
    q = q * t - 0.17247013747692108
    q = q * t + 0.19898565113544464
    q = q * t - 0.24970071017742157
    q = q * t + 0.33335113525390625
    q = q * t - 0.5000036358833313
    q = q * t + 0.9999999403953552
    return _ln_join(e, t, q)


@triton.jit
def _ln(y):
    """Natural log of positive, normal fp32 ``y`` (no 0, inf, NaN or subnormal inputs: the noise
    never makes them), with about a third of the instructions of tl.log (which handles every
    special value in software): `_ln_poly`'s reduction with a degree-6 fit, |absolute error| of
    ln(1 + t) < 5e-7, enough for g = -ln(E), whose error is absolute."""
    e, t = _ln_parts(y)
    q = 0.11891981959342957
    q = q * t - 0.1866038292646408
    q = q * t + 0.20494942367076874
    q = q * t - 0.24910476803779602
    q = q * t + 0.333146333694458
    q = q * t - 0.5000109672546387
    q = q * t + 1.0000009536743164
    return _ln_join(e, t, q)


@triton.jit
def _gumbel_from_bits(bits):
    """Gumbel noise g = -ln(-ln(1 - u)) of uint32 ``bits``, u = (bits + 0.5) 2^-32.

    E = -ln(1 - u) goes through `_ln` of w = 1 - u, except that where w lands in the polynomial's
    own interval (k = 0: u <= 1 - sqrt(1/2)) its argument t = w - 1 is replaced by the exact -u,
    so E = log1p's value to the polynomial's relative accuracy even where 1 - u rounds (the top
    tail of g, up to 22.9, lives at tiny u); above, 1 - u is exact or within 2^-25. The noise's
    error is below 1e-6 plus an ulp of g over the whole range (tests/ops: the tails, the switch).
    """
    # (bits + 0.5) 2^-32 as one fma: the scaling is exact, so it rounds like the add
    u = bits.to(tl.float32) * 2.3283064365386963e-10 + 1.1641532182693481e-10
    u = tl.minimum(u, 0.99999994)  # 1 - 2^-24: uint32 -> fp32 rounds 2^32 - 1 up to 2^32
    e, t = _ln_parts(1.0 - u)
    t = tl.where(e == 0, -u, t)
    return -_ln(-_ln_poly(e, t))


@triton.jit
def gumbel_from_bits_kernel(bits_ptr, out_ptr, N, BLOCK: tl.constexpr):
    """out[i] = the Gumbel noise of 32 random bits bits[i] (int32 storage of uint32): the
    transform every kernel applies to its Philox words, exposed so tests can feed it the tails."""
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < N
    bits = tl.load(bits_ptr + i, mask=m, other=0).to(tl.uint32, bitcast=True)
    tl.store(out_ptr + i, _gumbel_from_bits(bits), mask=m)


@triton.jit
def _noise_tile(noise_ptr, stride_n, rows, cols, mask, col0, seed_lo, seed_hi, off_lo, off_hi,
                HAS_NOISE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """The noise of a tile: loaded (explicit noise, tests) or regenerated from (seed, offset)."""
    if HAS_NOISE:
        ptrs = noise_ptr + rows.to(tl.int64)[:, None] * stride_n + cols[None, :]
        return tl.load(ptrs, mask=mask, other=0.0).to(tl.float32)
    else:
        return _gumbel_tile(seed_lo, seed_hi, off_lo, off_hi, rows, col0, BLOCK_R, BLOCK_V)


@triton.jit
def _z_tile(logits_ptr, noise_ptr, stride_l, stride_n, rows, row_ok, col0, V,
            seed_lo, seed_hi, off_lo, off_hi,
            HAS_NOISE: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """z = logits + g over one tile, fp32, -inf outside [0, V) and past the last row."""
    cols = col0 + tl.arange(0, BLOCK_V)
    mask = row_ok[:, None] & (cols < V)[None, :]
    o = tl.load(logits_ptr + rows.to(tl.int64)[:, None] * stride_l + cols[None, :],
                mask=mask, other=float("-inf")).to(tl.float32)
    g = _noise_tile(noise_ptr, stride_n, rows, cols, mask, col0, seed_lo, seed_hi, off_lo, off_hi,
                    HAS_NOISE, BLOCK_R, BLOCK_V)
    return o + g


@triton.jit
def _device_rng(SEED, OFFSET, seed_lo, seed_hi, off_lo, off_hi):
    """The Philox key and offset words: with SEED (a DeviceSeed's base) the seed SEED[0] + the
    ints, with OFFSET (an offset tensor) the offset OFFSET[0] + the ints, read on the device."""
    if SEED is not None:
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    if OFFSET is not None:
        off_lo, off_hi = device_seed(OFFSET, off_lo, off_hi)
    return seed_lo, seed_hi, off_lo, off_hi


@triton.jit(do_not_specialize=_RNG_ARGS)
def gumbel_noise_kernel(out_ptr, R, V, stride_o, seed_lo, seed_hi, off_lo, off_hi,
                        BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, SEED=None, OFFSET=None):
    """out [R, V] fp32 = the Gumbel noise the other kernels draw for (seed, offset).

    Grid (cdiv(R, BLOCK_R), cdiv(V, BLOCK_V)).
    """
    seed_lo, seed_hi, off_lo, off_hi = _device_rng(SEED, OFFSET, seed_lo, seed_hi, off_lo, off_hi)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    col0 = tl.program_id(1) * BLOCK_V
    cols = col0 + tl.arange(0, BLOCK_V)
    g = _gumbel_tile(seed_lo, seed_hi, off_lo, off_hi, rows, col0, BLOCK_R, BLOCK_V)
    mask = (rows < R)[:, None] & (cols < V)[None, :]
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * stride_o + cols[None, :], g, mask=mask)


@triton.jit
def _load_word(ptr, stride, rows64, cols, V, other, FULL: tl.constexpr):
    """fp32 [len(rows64), len(cols)] of a row-major [R, V] tensor, ``other`` at columns >= V.

    The rows are in bounds (the callers clamp them); FULL: so are the columns, no mask at all.
    """
    ptrs = ptr + rows64[:, None] * stride + cols[None, :]
    if FULL:
        return tl.load(ptrs).to(tl.float32)
    else:
        return tl.load(ptrs, mask=(cols < V)[None, :], other=other).to(tl.float32)


@triton.jit
def _word_z(logits_ptr, noise_ptr, stride_l, stride_n, rows64, cols, V, bits,
            HAS_NOISE: tl.constexpr, FULL: tl.constexpr):
    """z = logits + g over the columns ``cols`` [NG] of the rows, fp32, -inf outside [0, V)."""
    x = _load_word(logits_ptr, stride_l, rows64, cols, V, float("-inf"), FULL)
    if HAS_NOISE:
        return x + _load_word(noise_ptr, stride_n, rows64, cols, V, 0.0, FULL)
    else:
        return x + _gumbel_from_bits(bits)


@triton.jit
def _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V, n0,
             seed_lo, seed_hi, off_lo, off_hi,
             HAS_NOISE: tl.constexpr, BLOCK_R: tl.constexpr, NG: tl.constexpr, FULL: tl.constexpr):
    """z = logits + g of the columns of Philox groups n0 + [0, NG), as four [BLOCK_R, NG] tiles:
    tile w holds column 4 * group + w, the column that word w of the group's Philox call serves.

    The word tiles are used as they come out of Philox: no interleaving into column order (which
    compiles to a round trip through shared memory), and no padding of V to a power of two, only
    of the group count of this chunk. Rows past R read row R - 1 (their results are not stored),
    so a chunk inside [0, V) (FULL) loads without a mask.
    """
    groups = n0 + tl.arange(0, NG)
    cols = 4 * groups
    rows64 = tl.minimum(rows, R - 1).to(tl.int64)
    if HAS_NOISE:
        b0, b1, b2, b3 = 0, 0, 0, 0
    else:
        b0, b1, b2, b3 = _group_words(seed_lo, seed_hi, off_lo, off_hi, rows, groups, BLOCK_R, NG)
    z0 = _word_z(logits_ptr, noise_ptr, stride_l, stride_n, rows64, cols, V, b0, HAS_NOISE, FULL)
    z1 = _word_z(logits_ptr, noise_ptr, stride_l, stride_n, rows64, cols + 1, V, b1, HAS_NOISE,
                 FULL)
    z2 = _word_z(logits_ptr, noise_ptr, stride_l, stride_n, rows64, cols + 2, V, b2, HAS_NOISE,
                 FULL)
    z3 = _word_z(logits_ptr, noise_ptr, stride_l, stride_n, rows64, cols + 3, V, b3, HAS_NOISE,
                 FULL)
    return z0, z1, z2, z3, cols


@triton.jit
def _argmax_words(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V, n0,
                  seed_lo, seed_hi, off_lo, off_hi, best, best_idx,
                  HAS_NOISE: tl.constexpr, BLOCK_R: tl.constexpr, NG: tl.constexpr,
                  FULL: tl.constexpr):
    """The running per-row (max z, its column) updated with the groups n0 + [0, NG).

    The four words are combined element by element first (strict >: the smaller column keeps a
    tie; NaN never wins), then one reduction per row: a reduction costs shuffles, an element-wise
    step three instructions.
    """
    z0, z1, z2, z3, cols = _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V, n0,
                                    seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, NG, FULL)
    # NaN logits (unchecked on CUDA, see the op) must still give an index inside [0, V).
    b = tl.where(z0 == z0, z0, float("-inf"))
    c = tl.zeros([BLOCK_R, NG], dtype=tl.int32) + cols[None, :]
    take = z1 > b
    b = tl.where(take, z1, b)
    c = tl.where(take, cols[None, :] + 1, c)
    take = z2 > b
    b = tl.where(take, z2, b)
    c = tl.where(take, cols[None, :] + 2, c)
    take = z3 > b
    b = tl.where(take, z3, b)
    c = tl.where(take, cols[None, :] + 3, c)
    # Two plain reductions (max, then the smallest column holding it) instead of one over
    # (value, column) pairs: a max or min step is one instruction, a pair step six.
    cmax = tl.max(b, axis=1)
    carg = tl.min(tl.where(b == cmax[:, None], c, 2147483647), axis=1)
    take = cmax > best  # strict: earlier columns win ties, like torch.argmax
    return tl.where(take, cmax, best), tl.where(take, carg, best_idx)


@triton.jit
def _zero_words(out_ptr, stride_o, rows, R, V, n0, NG: tl.constexpr, FULL: tl.constexpr):
    """Writes zeros over the columns of groups n0 + [0, NG) of the rows, in column order (zeros
    need no word layout, and a warp's store then covers contiguous bytes). Rows past R write
    row R - 1's zeros again (before its one, see the caller), so a chunk inside [0, V) (FULL)
    stores without a mask."""
    cols = 4 * n0 + tl.arange(0, 4 * NG)
    rows64 = tl.minimum(rows, R - 1).to(tl.int64)
    zero = tl.zeros([4 * NG], dtype=out_ptr.dtype.element_ty)[None, :]
    ptrs = out_ptr + rows64[:, None] * stride_o + cols[None, :]
    if FULL:
        tl.store(ptrs, zero)
    else:
        tl.store(ptrs, zero, mask=(cols < V)[None, :])


@triton.jit(do_not_specialize=_RNG_ARGS)
def gumbel_st_fwd_kernel(
    logits_ptr, noise_ptr, index_ptr, out_ptr, emb_ptr,
    R, V, E: tl.constexpr, stride_l, stride_n, stride_o, stride_emb,
    seed_lo, seed_hi, off_lo, off_hi,
    HAS_NOISE: tl.constexpr, OUT_EMB: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_E: tl.constexpr,
    NG_A: tl.constexpr, NUM_CHUNKS: tl.constexpr, NG_B: tl.constexpr, NG_C: tl.constexpr,
    FULL_A: tl.constexpr, FULL_B: tl.constexpr, SEED=None, OFFSET=None,
):
    """index[r] = argmax_c(logits[r, c] + g[r, c]); out[r] = one_hot(index[r]) [V] or emb[index[r]] [E].

    Grid (cdiv(R, BLOCK_R),). A row's G = cdiv(V, 4) Philox groups are covered by NUM_CHUNKS
    chunks of NG_A groups, then one of NG_B and one of NG_C (0: none), all powers of two chosen
    by the launcher so that little is padded (V = 390: 64 + 32 + 2 groups, exactly 98); FULL_A,
    FULL_B: those chunks lie inside [0, V), no column mask. The soft
    sample is not needed here: argmax(beta*z) = argmax(z). E (0 for the one-hot output) is a
    compile-time constant: fixed per model, and a loop bound the triton 3.6 interpreter cannot
    take from a runtime argument.
    """
    seed_lo, seed_hi, off_lo, off_hi = _device_rng(SEED, OFFSET, seed_lo, seed_hi, off_lo, off_hi)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    rows64 = rows.to(tl.int64)
    best = tl.full([BLOCK_R], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_R], tl.int32)
    for c in range(NUM_CHUNKS):
        best, best_idx = _argmax_words(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V,
                                       c * NG_A, seed_lo, seed_hi, off_lo, off_hi, best, best_idx,
                                       HAS_NOISE, BLOCK_R, NG_A, FULL_A)
    if NG_B > 0:
        best, best_idx = _argmax_words(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V,
                                       NUM_CHUNKS * NG_A, seed_lo, seed_hi, off_lo, off_hi, best,
                                       best_idx, HAS_NOISE, BLOCK_R, NG_B, FULL_B)
    if NG_C > 0:
        best, best_idx = _argmax_words(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V,
                                       NUM_CHUNKS * NG_A + NG_B, seed_lo, seed_hi, off_lo, off_hi,
                                       best, best_idx, HAS_NOISE, BLOCK_R, NG_C, False)
    tl.store(index_ptr + rows64, best_idx.to(tl.int64), mask=row_ok)
    if OUT_EMB:
        # The embedding lookup fused: the [R, V] one-hot is never written.
        src = emb_ptr + best_idx.to(tl.int64)[:, None] * stride_emb
        for e0 in range(0, E, BLOCK_E):
            es = e0 + tl.arange(0, BLOCK_E)
            m = row_ok[:, None] & (es < E)[None, :]
            row = tl.load(src + es[None, :], mask=m)
            tl.store(out_ptr + rows64[:, None] * stride_o + es[None, :], row, mask=m)
    else:
        # Zeros everywhere, then the ones: a barrier orders one thread's zero before another
        # thread's one at the same address (bar.sync orders the block's global stores), and
        # saves a compare and a select per element.
        for c in range(NUM_CHUNKS):
            _zero_words(out_ptr, stride_o, rows, R, V, c * NG_A, NG_A, FULL_A)
        if NG_B > 0:
            _zero_words(out_ptr, stride_o, rows, R, V, NUM_CHUNKS * NG_A, NG_B, FULL_B)
        if NG_C > 0:
            _zero_words(out_ptr, stride_o, rows, R, V, NUM_CHUNKS * NG_A + NG_B, NG_C, False)
        tl.debug_barrier()
        tl.store(out_ptr + rows64 * stride_o + best_idx, tl.full([BLOCK_R], 1.0, tl.float32).to(
            out_ptr.dtype.element_ty), mask=row_ok)


@triton.jit
def _grad_in_tile(gout_ptr, emb_ptr, stride_g, stride_emb, rows, row_ok, col0, V, E: tl.constexpr,
                  DOT_FP32: tl.constexpr, DOT_PRECISION: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_E: tl.constexpr):
    """The incoming gradient w.r.t. the soft sample s over one tile, fp32 [BLOCK_R, BLOCK_V], of
    the embedding variant: grad_e [R, E] @ E^T, never materialised."""
    cols = col0 + tl.arange(0, BLOCK_V)
    col_ok = cols < V
    rows64 = rows.to(tl.int64)
    acc = tl.zeros([BLOCK_R, BLOCK_V], dtype=tl.float32)
    for e0 in range(0, E, BLOCK_E):
        es = e0 + tl.arange(0, BLOCK_E)
        e_ok = es < E
        ge = tl.load(gout_ptr + rows64[:, None] * stride_g + es[None, :],
                     mask=row_ok[:, None] & e_ok[None, :], other=0.0)  # [BLOCK_R, BLOCK_E]
        et = tl.load(emb_ptr + cols.to(tl.int64)[None, :] * stride_emb + es[:, None],
                     mask=e_ok[:, None] & col_ok[None, :], other=0.0)  # [BLOCK_E, BLOCK_V]
        if DOT_FP32:
            # The interpreter's bf16 tl.dot returns garbage (triton 3.9); fp32 operands instead.
            ge = ge.to(tl.float32)
            et = et.to(tl.float32)
        acc = tl.dot(ge, et, acc, input_precision=DOT_PRECISION)
    return acc


@triton.jit
def _max_words(z0, z1, z2, z3, m):
    """The running row max m updated with four word tiles."""
    return tl.maximum(m, tl.max(tl.maximum(tl.maximum(z0, z1), tl.maximum(z2, z3)), axis=1))


@triton.jit
def _exp_words(z0, z1, z2, z3, ref, scale):
    """p = exp(beta (z - max)) of four word tiles (scale = beta log2 e)."""
    return (tl.exp2((z0 - ref[:, None]) * scale), tl.exp2((z1 - ref[:, None]) * scale),
            tl.exp2((z2 - ref[:, None]) * scale), tl.exp2((z3 - ref[:, None]) * scale))


@triton.jit
def _sum_words(p0, p1, p2, p3):
    return tl.sum((p0 + p1) + (p2 + p3), axis=1)


@triton.jit
def _gin_words(gout_ptr, stride_g, rows, R, V, cols, FULL: tl.constexpr):
    """The incoming gradient at the four word columns ``cols + w``: four fp32 tiles (rows past R
    read row R - 1, unused)."""
    rows64 = tl.minimum(rows, R - 1).to(tl.int64)
    return (_load_word(gout_ptr, stride_g, rows64, cols, V, 0.0, FULL),
            _load_word(gout_ptr, stride_g, rows64, cols + 1, V, 0.0, FULL),
            _load_word(gout_ptr, stride_g, rows64, cols + 2, V, 0.0, FULL),
            _load_word(gout_ptr, stride_g, rows64, cols + 3, V, 0.0, FULL))


@triton.jit
def _dot_words(p0, p1, p2, p3, g0, g1, g2, g3):
    return tl.sum((p0 * g0 + p1 * g1) + (p2 * g2 + p3 * g3), axis=1)


@triton.jit
def _store_d_words(d_ptr, stride_d, rows64, row_ok, V, n0, p0, p1, p2, p3, g0, g1, g2, g3,
                   binv, dot, BLOCK_R: tl.constexpr, NG: tl.constexpr):
    """d = beta s (gin - <gin, s>) with s = p / sum(p) (binv = beta / sum) at the word columns,
    stored in column order (interleaved in registers first)."""
    ty = d_ptr.dtype.element_ty
    b = binv[:, None]
    c = dot[:, None]
    d = interleave4((p0 * b * (g0 - c)).to(ty), (p1 * b * (g1 - c)).to(ty),
                    (p2 * b * (g2 - c)).to(ty), (p3 * b * (g3 - c)).to(ty), BLOCK_R, 4 * NG)
    oc = 4 * n0 + tl.arange(0, 4 * NG)
    tl.store(d_ptr + rows64[:, None] * stride_d + oc[None, :], d,
             mask=row_ok[:, None] & (oc < V)[None, :])


@triton.jit
def _online_words(logits_ptr, noise_ptr, gout_ptr, stride_l, stride_n, stride_g, rows, R, V, n0,
                  seed_lo, seed_hi, off_lo, off_hi, scale, m, lsum, gsum,
                  HAS_NOISE: tl.constexpr, BLOCK_R: tl.constexpr, NG: tl.constexpr,
                  FULL: tl.constexpr):
    """The running row max m, normaliser lsum and <gin, p> gsum updated with groups n0 + [0, NG)
    (online softmax: the sums rescaled to the new max)."""
    z0, z1, z2, z3, cols = _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V, n0,
                                    seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, NG, FULL)
    new_m = _max_words(z0, z1, z2, z3, m)
    ref = _finite_or_zero(new_m)
    alpha = tl.exp2((m - ref) * scale)
    p0, p1, p2, p3 = _exp_words(z0, z1, z2, z3, ref, scale)
    g0, g1, g2, g3 = _gin_words(gout_ptr, stride_g, rows, R, V, cols, FULL)
    return new_m, lsum * alpha + _sum_words(p0, p1, p2, p3), gsum * alpha + _dot_words(p0, p1, p2, p3, g0, g1, g2, g3)


@triton.jit
def _write_words(logits_ptr, noise_ptr, gout_ptr, d_ptr, stride_l, stride_n, stride_g, stride_d,
                 rows, rows64, row_ok, R, V, n0, seed_lo, seed_hi, off_lo, off_hi, scale, ref,
                 binv, dot, HAS_NOISE: tl.constexpr, BLOCK_R: tl.constexpr, NG: tl.constexpr,
                 FULL: tl.constexpr):
    """The second pass over groups n0 + [0, NG): noise regenerated, d written."""
    z0, z1, z2, z3, cols = _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V, n0,
                                    seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, NG, FULL)
    p0, p1, p2, p3 = _exp_words(z0, z1, z2, z3, ref, scale)
    g0, g1, g2, g3 = _gin_words(gout_ptr, stride_g, rows, R, V, cols, FULL)
    _store_d_words(d_ptr, stride_d, rows64, row_ok, V, n0, p0, p1, p2, p3, g0, g1, g2, g3,
                   binv, dot, BLOCK_R, NG)


@triton.jit(do_not_specialize=_RNG_ARGS)
def gumbel_st_bwd_kernel(
    logits_ptr, noise_ptr, gout_ptr, emb_ptr, dlogits_ptr,
    R, V, E: tl.constexpr, stride_l, stride_n, stride_g, stride_emb, stride_d,
    beta, seed_lo, seed_hi, off_lo, off_hi,
    HAS_NOISE: tl.constexpr, FUSED_EMB: tl.constexpr, DOT_FP32: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_E: tl.constexpr, NUM_CHUNKS: tl.constexpr,
    NG_A: tl.constexpr = 0, NG_B: tl.constexpr = 0,
    NG_C: tl.constexpr = 0, FULL_A: tl.constexpr = False, FULL_B: tl.constexpr = False,
    TWO_PASS: tl.constexpr = False, SEED=None, OFFSET=None,
):
    """dlogits = beta * s * (gin - <gin, s>), s = softmax(beta * (logits + g)) recomputed here.

    Grid (cdiv(R, BLOCK_R),). s is never stored: the noise is regenerated from (seed, offset).
    The one-hot gradient: word tiles over chunks of NG_A (NUM_CHUNKS of them), NG_B and NG_C
    Philox groups, as in the forward; for V <= 4096 the whole row stays in registers, wider rows
    (TWO_PASS) take an online max / normaliser / <gin, p> pass, then a second pass that
    regenerates the noise and writes. FUSED_EMB (the embedding gradient, whose E^T product wants
    column order): [BLOCK_R, BLOCK_V] tiles, NUM_CHUNKS of them per row.
    """
    seed_lo, seed_hi, off_lo, off_hi = _device_rng(SEED, OFFSET, seed_lo, seed_hi, off_lo, off_hi)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    rows64 = rows.to(tl.int64)
    scale = beta * _LOG2E
    if not FUSED_EMB and TWO_PASS:
        m = tl.full([BLOCK_R], float("-inf"), tl.float32)
        lsum = tl.zeros([BLOCK_R], tl.float32)
        gsum = tl.zeros([BLOCK_R], tl.float32)
        for c in range(NUM_CHUNKS):
            m, lsum, gsum = _online_words(logits_ptr, noise_ptr, gout_ptr, stride_l, stride_n,
                                          stride_g, rows, R, V, c * NG_A, seed_lo, seed_hi, off_lo,
                                          off_hi, scale, m, lsum, gsum, HAS_NOISE, BLOCK_R, NG_A,
                                          FULL_A)
        if NG_B > 0:
            m, lsum, gsum = _online_words(logits_ptr, noise_ptr, gout_ptr, stride_l, stride_n,
                                          stride_g, rows, R, V, NUM_CHUNKS * NG_A, seed_lo, seed_hi,
                                          off_lo, off_hi, scale, m, lsum, gsum, HAS_NOISE, BLOCK_R,
                                          NG_B, FULL_B)
        if NG_C > 0:
            m, lsum, gsum = _online_words(logits_ptr, noise_ptr, gout_ptr, stride_l, stride_n,
                                          stride_g, rows, R, V, NUM_CHUNKS * NG_A + NG_B, seed_lo,
                                          seed_hi, off_lo, off_hi, scale, m, lsum, gsum, HAS_NOISE,
                                          BLOCK_R, NG_C, False)
        inv = 1.0 / tl.maximum(lsum, 1e-30)
        dot = gsum * inv
        binv = beta * inv
        ref = _finite_or_zero(m)
        for c in range(NUM_CHUNKS):
            _write_words(logits_ptr, noise_ptr, gout_ptr, dlogits_ptr, stride_l, stride_n, stride_g,
                         stride_d, rows, rows64, row_ok, R, V, c * NG_A, seed_lo, seed_hi, off_lo,
                         off_hi, scale, ref, binv, dot, HAS_NOISE, BLOCK_R, NG_A, FULL_A)
        if NG_B > 0:
            _write_words(logits_ptr, noise_ptr, gout_ptr, dlogits_ptr, stride_l, stride_n, stride_g,
                         stride_d, rows, rows64, row_ok, R, V, NUM_CHUNKS * NG_A, seed_lo, seed_hi,
                         off_lo, off_hi, scale, ref, binv, dot, HAS_NOISE, BLOCK_R, NG_B, FULL_B)
        if NG_C > 0:
            _write_words(logits_ptr, noise_ptr, gout_ptr, dlogits_ptr, stride_l, stride_n, stride_g,
                         stride_d, rows, rows64, row_ok, R, V, NUM_CHUNKS * NG_A + NG_B, seed_lo,
                         seed_hi, off_lo, off_hi, scale, ref, binv, dot, HAS_NOISE, BLOCK_R, NG_C,
                         False)
    elif not FUSED_EMB:
        a0, a1, a2, a3, ca = _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V, 0,
                                      seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, NG_A,
                                      FULL_A)
        m = _max_words(a0, a1, a2, a3, tl.full([BLOCK_R], float("-inf"), tl.float32))
        if NG_B > 0:
            b0, b1, b2, b3, cb = _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V,
                                          NG_A, seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE,
                                          BLOCK_R, NG_B, FULL_B)
            m = _max_words(b0, b1, b2, b3, m)
        if NG_C > 0:
            c0, c1, c2, c3, cc = _words_z(logits_ptr, noise_ptr, stride_l, stride_n, rows, R, V,
                                          NG_A + NG_B, seed_lo, seed_hi, off_lo, off_hi,
                                          HAS_NOISE, BLOCK_R, NG_C, False)
            m = _max_words(c0, c1, c2, c3, m)
        # beta * (z - zmax) rather than beta*z - max: no cancellation when beta*z is large.
        ref = _finite_or_zero(m)
        a0, a1, a2, a3 = _exp_words(a0, a1, a2, a3, ref, scale)
        lsum = _sum_words(a0, a1, a2, a3)
        ga0, ga1, ga2, ga3 = _gin_words(gout_ptr, stride_g, rows, R, V, ca, FULL_A)
        dot = _dot_words(a0, a1, a2, a3, ga0, ga1, ga2, ga3)
        if NG_B > 0:
            b0, b1, b2, b3 = _exp_words(b0, b1, b2, b3, ref, scale)
            lsum += _sum_words(b0, b1, b2, b3)
            gb0, gb1, gb2, gb3 = _gin_words(gout_ptr, stride_g, rows, R, V, cb, FULL_B)
            dot += _dot_words(b0, b1, b2, b3, gb0, gb1, gb2, gb3)
        if NG_C > 0:
            c0, c1, c2, c3 = _exp_words(c0, c1, c2, c3, ref, scale)
            lsum += _sum_words(c0, c1, c2, c3)
            gc0, gc1, gc2, gc3 = _gin_words(gout_ptr, stride_g, rows, R, V, cc, False)
            dot += _dot_words(c0, c1, c2, c3, gc0, gc1, gc2, gc3)
        inv = 1.0 / tl.maximum(lsum, 1e-30)
        dot = dot * inv
        binv = beta * inv
        _store_d_words(dlogits_ptr, stride_d, rows64, row_ok, V, 0, a0, a1, a2, a3,
                       ga0, ga1, ga2, ga3, binv, dot, BLOCK_R, NG_A)
        if NG_B > 0:
            _store_d_words(dlogits_ptr, stride_d, rows64, row_ok, V, NG_A, b0, b1, b2, b3,
                           gb0, gb1, gb2, gb3, binv, dot, BLOCK_R, NG_B)
        if NG_C > 0:
            _store_d_words(dlogits_ptr, stride_d, rows64, row_ok, V, NG_A + NG_B, c0, c1, c2, c3,
                           gc0, gc1, gc2, gc3, binv, dot, BLOCK_R, NG_C)
    elif NUM_CHUNKS == 1:
        # The whole row stays in registers: one read of each input (E: once per program), one
        # write.
        z = _z_tile(logits_ptr, noise_ptr, stride_l, stride_n, rows, row_ok, 0, V,
                    seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, BLOCK_V)
        zmax = _finite_or_zero(tl.max(z, axis=1))
        # beta * (z - zmax) rather than beta*z - max: no cancellation when beta*z is large.
        p = tl.exp2((z - zmax[:, None]) * scale)
        s = p * (1.0 / tl.maximum(tl.sum(p, axis=1), 1e-30))[:, None]
        gin = _grad_in_tile(gout_ptr, emb_ptr, stride_g, stride_emb, rows, row_ok, 0, V, E,
                            DOT_FP32, DOT_PRECISION, BLOCK_R, BLOCK_V, BLOCK_E)
        dot = tl.sum(s * gin, axis=1)
        d = beta * s * (gin - dot[:, None])
        cols = tl.arange(0, BLOCK_V)
        m = row_ok[:, None] & (cols < V)[None, :]
        tl.store(dlogits_ptr + rows64[:, None] * stride_d + cols[None, :],
                 d.to(dlogits_ptr.dtype.element_ty), mask=m)
    else:
        # Pass 1: online max, normaliser and <gin, p> over the chunks.
        zmax = tl.full([BLOCK_R], float("-inf"), tl.float32)
        lsum = tl.zeros([BLOCK_R], tl.float32)
        gsum = tl.zeros([BLOCK_R], tl.float32)
        for c in range(NUM_CHUNKS):
            col0 = c * BLOCK_V
            z = _z_tile(logits_ptr, noise_ptr, stride_l, stride_n, rows, row_ok, col0, V,
                        seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, BLOCK_V)
            gin = _grad_in_tile(gout_ptr, emb_ptr, stride_g, stride_emb, rows, row_ok, col0, V, E,
                                DOT_FP32, DOT_PRECISION, BLOCK_R, BLOCK_V, BLOCK_E)
            new_max = tl.maximum(zmax, tl.max(z, axis=1))
            ref = _finite_or_zero(new_max)
            alpha = tl.exp2((zmax - ref) * scale)
            p = tl.exp2((z - ref[:, None]) * scale)
            lsum = lsum * alpha + tl.sum(p, axis=1)
            gsum = gsum * alpha + tl.sum(p * gin, axis=1)
            zmax = new_max
        inv = 1.0 / tl.maximum(lsum, 1e-30)
        dot = gsum * inv
        zmax = _finite_or_zero(zmax)
        # Pass 2: recompute s chunk by chunk (noise regenerated, inputs re-read from L2) and write.
        for c in range(NUM_CHUNKS):
            col0 = c * BLOCK_V
            z = _z_tile(logits_ptr, noise_ptr, stride_l, stride_n, rows, row_ok, col0, V,
                        seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, BLOCK_V)
            gin = _grad_in_tile(gout_ptr, emb_ptr, stride_g, stride_emb, rows, row_ok, col0, V, E,
                                DOT_FP32, DOT_PRECISION, BLOCK_R, BLOCK_V, BLOCK_E)
            s = tl.exp2((z - zmax[:, None]) * scale) * inv[:, None]
            d = beta * s * (gin - dot[:, None])
            cols = col0 + tl.arange(0, BLOCK_V)
            m = row_ok[:, None] & (cols < V)[None, :]
            tl.store(dlogits_ptr + rows64[:, None] * stride_d + cols[None, :],
                     d.to(dlogits_ptr.dtype.element_ty), mask=m)


@triton.jit
def _load_x(logits_ptr, stride_l, rows, row_ok, col0, V, BLOCK_V: tl.constexpr):
    """(logits tile fp32, its order-preserving int32 key, in-range mask) of one chunk."""
    cols = col0 + tl.arange(0, BLOCK_V)
    mask = row_ok[:, None] & (cols < V)[None, :]
    x = tl.load(logits_ptr + rows.to(tl.int64)[:, None] * stride_l + cols[None, :],
                mask=mask, other=float("-inf")).to(tl.float32)
    bits = x.to(tl.int32, bitcast=True)
    # Negative floats order backwards as integers: flip their magnitude bits.
    key = tl.where(bits < 0, bits ^ 0x7FFFFFFF, bits)
    return x, key, mask


@triton.jit
def _kept_e(x, key, mask, thr, xmax, inv_temp):
    """Unnormalised probabilities exp(x*inv_temp - max) of the top-k survivors, 0 elsewhere."""
    keep = mask & (key >= thr[:, None])
    return tl.where(keep, tl.exp(x * inv_temp - xmax[:, None]), 0.0)


@triton.jit
def _count_key_ge(logits_ptr, stride_l, rows, row_ok, V, mid, key0, mask0,
                  BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, NUM_CHUNKS: tl.constexpr):
    """Per row, how many keys are >= mid. One chunk: from the tile held in registers."""
    if NUM_CHUNKS == 1:
        return tl.sum((mask0 & (key0 >= mid[:, None])).to(tl.int32), axis=1)
    else:
        cnt = tl.zeros([BLOCK_R], tl.int32)
        for c in range(NUM_CHUNKS):
            x, key, mask = _load_x(logits_ptr, stride_l, rows, row_ok, c * BLOCK_V, V, BLOCK_V)
            cnt += tl.sum((mask & (key >= mid[:, None])).to(tl.int32), axis=1)
        return cnt


@triton.jit
def _mass_e_ge(logits_ptr, stride_l, rows, row_ok, V, thr, xmax, inv_temp, tau, e0,
               BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, NUM_CHUNKS: tl.constexpr):
    """Per row, the sum of the kept e that are >= tau (tau = 0: the normaliser)."""
    if NUM_CHUNKS == 1:
        return tl.sum(tl.where(e0 >= tau[:, None], e0, 0.0), axis=1)
    else:
        mass = tl.zeros([BLOCK_R], tl.float32)
        for c in range(NUM_CHUNKS):
            x, key, mask = _load_x(logits_ptr, stride_l, rows, row_ok, c * BLOCK_V, V, BLOCK_V)
            e = _kept_e(x, key, mask, thr, xmax, inv_temp)
            mass += tl.sum(tl.where(e >= tau[:, None], e, 0.0), axis=1)
        return mass


@triton.jit(do_not_specialize=["top_k"] + _RNG_ARGS)
def sample_kernel(
    logits_ptr, noise_ptr, out_ptr, R, V, stride_l, stride_n,
    inv_temp, top_k, top_p, seed_lo, seed_hi, off_lo, off_hi,
    HAS_NOISE: tl.constexpr, GREEDY: tl.constexpr, USE_TOP_K: tl.constexpr,
    USE_TOP_P: tl.constexpr, BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr,
    NUM_CHUNKS: tl.constexpr, SEED=None, OFFSET=None,
):
    """out[r] ~ softmax(logits[r] * inv_temp) restricted to the top-k, then to the top-p nucleus.

    Gumbel-max: argmax over kept tokens of x*inv_temp + g. Both thresholds are found by bisection
    instead of a sort, so any V works with chunks: top-k on the integer keys of the logits (the
    largest key t with count(key >= t) >= k, 32 steps, ties with the k-th value kept); top-p on the
    fp32 bits of e = exp(x*inv_temp - max) (the largest tau with sum(e >= tau) >= top_p * sum(e),
    30 steps). A row of one chunk stays in registers; wider rows are re-read every step (from
    L1/L2 at generation batch sizes). Grid (cdiv(R, BLOCK_R),).
    """
    seed_lo, seed_hi, off_lo, off_hi = _device_rng(SEED, OFFSET, seed_lo, seed_hi, off_lo, off_hi)
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    # The first (for one-chunk rows: the only) chunk, loaded once.
    x0, key0, mask0 = _load_x(logits_ptr, stride_l, rows, row_ok, 0, V, BLOCK_V)
    thr = tl.full([BLOCK_R], -2147483648, tl.int64)  # top-k key threshold; this keeps everything
    tau = tl.zeros([BLOCK_R], tl.float32)  # top-p threshold on e; 0 keeps everything
    xmax = tl.zeros([BLOCK_R], tl.float32)
    if not GREEDY:
        if USE_TOP_K:
            lo = tl.full([BLOCK_R], -2147483648, tl.int64)
            hi = tl.full([BLOCK_R], 2147483647, tl.int64)
            for _ in range(32):
                mid = lo + (hi - lo + 1) // 2
                ok = _count_key_ge(logits_ptr, stride_l, rows, row_ok, V, mid, key0, mask0,
                                   BLOCK_R, BLOCK_V, NUM_CHUNKS) >= top_k
                lo = tl.where(ok, mid, lo)
                hi = tl.where(ok, hi, mid - 1)
            thr = lo
        if USE_TOP_P:
            xmax = tl.full([BLOCK_R], float("-inf"), tl.float32)
            for c in range(NUM_CHUNKS):
                x, key, mask = _load_x(logits_ptr, stride_l, rows, row_ok, c * BLOCK_V, V, BLOCK_V)
                xs = tl.where(mask & (key >= thr[:, None]), x * inv_temp, float("-inf"))
                xmax = tl.maximum(xmax, tl.max(xs, axis=1))
            xmax = _finite_or_zero(xmax)
            e0 = _kept_e(x0, key0, mask0, thr, xmax, inv_temp)
            target = top_p * _mass_e_ge(logits_ptr, stride_l, rows, row_ok, V, thr, xmax, inv_temp,
                                        tau, e0, BLOCK_R, BLOCK_V, NUM_CHUNKS)
            lo = tl.zeros([BLOCK_R], tl.int64)
            hi = tl.full([BLOCK_R], 0x3F800000, tl.int64)  # the bits of 1.0 = max(e)
            for _ in range(30):
                mid = lo + (hi - lo + 1) // 2
                tmid = mid.to(tl.int32).to(tl.float32, bitcast=True)
                ok = _mass_e_ge(logits_ptr, stride_l, rows, row_ok, V, thr, xmax, inv_temp, tmid,
                                e0, BLOCK_R, BLOCK_V, NUM_CHUNKS) >= target
                lo = tl.where(ok, mid, lo)
                hi = tl.where(ok, hi, mid - 1)
            tau = lo.to(tl.int32).to(tl.float32, bitcast=True)
    best = tl.full([BLOCK_R], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_R], tl.int32)
    for c in range(NUM_CHUNKS):
        col0 = c * BLOCK_V
        x, key, mask = _load_x(logits_ptr, stride_l, rows, row_ok, col0, V, BLOCK_V)
        if GREEDY:
            z = x
        else:
            keep = mask & (key >= thr[:, None])
            if USE_TOP_P:
                keep = keep & (_kept_e(x, key, mask, thr, xmax, inv_temp) >= tau[:, None])
            cols = col0 + tl.arange(0, BLOCK_V)
            g = _noise_tile(noise_ptr, stride_n, rows, cols, mask, col0, seed_lo, seed_hi,
                            off_lo, off_hi, HAS_NOISE, BLOCK_R, BLOCK_V)
            z = tl.where(keep, x * inv_temp + g, float("-inf"))
        z = tl.where(z == z, z, float("-inf"))
        cmax = tl.max(z, axis=1)
        carg = tl.argmax(z, axis=1, tie_break_left=True) + col0
        take = cmax > best
        best = tl.where(take, cmax, best)
        best_idx = tl.where(take, carg, best_idx)
    tl.store(out_ptr + rows.to(tl.int64), best_idx.to(tl.int64), mask=row_ok)
