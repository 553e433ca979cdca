"""Gumbel-max sampling with a straight-through softmax backward, and top-k / top-p sampling.

@triton.jit code only; launchers and autograd live in ``tgan.ops.gumbel_softmax``.

Every kernel works on [BLOCK_R, BLOCK_V] tiles: BLOCK_R rows of the flattened [R, V] logits per
program, BLOCK_V = next_power_of_2(V) columns (masked), or, for rows wider than the launcher's
largest tile, NUM_CHUNKS column chunks of BLOCK_V looped over (online max / argmax / sums).
All arithmetic is fp32 whatever the storage dtype.

Noise. Element (r, c) of the flattened [R, V] problem draws its Gumbel noise from a counter-based
Philox4x32-10: key = the 64-bit seed, counter = (r, c // 4, offset_lo, offset_hi), output word
c % 4. So the noise of an element depends on (seed, offset, r, c) only, never on the tiling, and
the forward, the backward and ``gumbel_noise_kernel`` regenerate identical values; one Philox call
serves four columns. Different offsets are different counters: disjoint streams, not shifted copies.
The 32 random bits x become u = (x + 0.5) * 2^-32 clamped to <= 1 - 2^-24, so 2^-33 <= u < 1, and
g = -ln(E) with E = -ln(1 - u) (a Taylor series for u < 1/8, where the top tail of g lives): g lies
in about [-2.8, 22.9], within 1e-6 of the exact value (`_gumbel_from_bits`). The logarithms are
`_ln`, a polynomial without tl.log's special-value handling, which on sm_90 compiled to about 24
FFMA and 22 compare/select instructions per element for the two logs.

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
  Per element: Philox 10 rounds x (2 mulhi + 2 mullo + 4 xor + 2 add) / 4 columns = 25 integer ops;
  noise 1 int->float, a degree-8 Taylor series and two polynomial logs (about 26 FFMA in all);
  forward +2 (add, compare) and a row argmax; backward 1 exp2 + ~7 flops and two row reductions.
  The fused embedding backward adds 2*V*E FLOPs per row (grad_e @ E^T), which dominates: 51.1
  GFLOP for the example with E = 500.
  Measured on an H200 (benchmarks/RESULTS.md) the one-hot passes are NOT memory-bound: the
  forward took the same 395 us for V = 310 and 390 and for bf16 and fp32, 6.3x the 62 us that
  its bytes take at copy bandwidth; the per-element arithmetic sets the time. Both vocabularies
  run in 512-lane tiles (24% and 39% of the lanes idle); chunked 64- to 256-wide tiles issue MORE
  instructions on sm_90 (compile report), so the single padded tile stays.
"""
import triton
import triton.language as tl

from tgan.kernels.philox import interleave4, philox4x32

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
def _gumbel_tile(seed_lo, seed_hi, off_lo, off_hi, rows, col0,
                 BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """fp32 Gumbel noise [BLOCK_R, BLOCK_V] of rows `rows` [BLOCK_R] and columns col0 + [0, BLOCK_V).

    col0 is a multiple of 4 (a multiple of BLOCK_V >= 16).
    """
    zero = tl.zeros([BLOCK_R, BLOCK_V // 4], dtype=tl.uint32)
    c0 = zero + rows[:, None].to(tl.uint32)
    c1 = zero + (col0 // 4 + tl.arange(0, BLOCK_V // 4))[None, :].to(tl.uint32)
    c2 = zero + off_lo.to(tl.uint32, bitcast=True)
    c3 = zero + off_hi.to(tl.uint32, bitcast=True)
    r0, r1, r2, r3 = philox4x32(seed_lo.to(tl.uint32, bitcast=True),
                                seed_hi.to(tl.uint32, bitcast=True), c0, c1, c2, c3)
    bits = interleave4(r0, r1, r2, r3, BLOCK_R, BLOCK_V)  # column 4n + j: word j of group n
    return _gumbel_from_bits(bits)


@triton.jit
def _ln(y):
    """Natural log of positive, normal fp32 ``y`` (no 0, inf, NaN or subnormal inputs: the noise
    never makes them). y = 2^k * m with m in [sqrt(1/2), sqrt(2)), ln y = k ln 2 + t q(t) with
    t = m - 1 and q a degree-7 least-squares fit of ln(1+t)/t there: |error| < 1e-7 in fp32, with
    about a third of the instructions of tl.log (which handles every special value in software)."""
    bits = y.to(tl.int32, bitcast=True)
    k = (bits - 0x3F3504F3) >> 23  # 0x3F3504F3 = sqrt(1/2): k is the exponent that centres m
    t = (bits - (k << 23)).to(tl.float32, bitcast=True) - 1.0
    q = -0.10134056955575943
    q = q * t + 0.1623418927192688
    q = q * t - 0.17247013747692108
    q = q * t + 0.19898565113544464
    q = q * t - 0.24970071017742157
    q = q * t + 0.33335113525390625
    q = q * t - 0.5000036358833313
    q = q * t + 0.9999999403953552
    return t * q + k.to(tl.float32) * 0.6931471805599453


@triton.jit
def _gumbel_from_bits(bits):
    """Gumbel noise g = -ln(-ln(1 - u)) of uint32 ``bits``, u = (bits + 0.5) 2^-32.

    -ln(1 - u) is computed as the Taylor series u + u^2/2 + ... + u^8/8 for u < 1/8 (relative
    error below 1e-8 there: the top tail of g, up to 22.9, lives at tiny u, where 1 - u would
    round), and as -ln(1 - u) above (1 - u is within 2^-25 of exact, about 2.5e-7 relative in the
    result). The noise's absolute error is below 1e-6 over the whole range (tests/ops: the tails).
    """
    u = (bits.to(tl.float32) + 0.5) * 2.3283064365386963e-10  # 2^-32; add first, no fma contraction
    u = tl.minimum(u, 0.99999994)  # 1 - 2^-24: uint32 -> fp32 rounds 2^32 - 1 up to 2^32
    s = 0.125
    s = s * u + 0.14285714285714285
    s = s * u + 0.16666666666666666
    s = s * u + 0.2
    s = s * u + 0.25
    s = s * u + 0.3333333333333333
    s = s * u + 0.5
    s = s * u + 1.0
    e = tl.where(u < 0.125, u * s, -_ln(1.0 - u))
    return -_ln(e)


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


@triton.jit(do_not_specialize=_RNG_ARGS)
def gumbel_noise_kernel(out_ptr, R, V, stride_o, seed_lo, seed_hi, off_lo, off_hi,
                        BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr):
    """out [R, V] fp32 = the Gumbel noise the other kernels draw for (seed, offset).

    Grid (cdiv(R, BLOCK_R), cdiv(V, BLOCK_V)).
    """
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    col0 = tl.program_id(1) * BLOCK_V
    cols = col0 + tl.arange(0, BLOCK_V)
    g = _gumbel_tile(seed_lo, seed_hi, off_lo, off_hi, rows, col0, BLOCK_R, BLOCK_V)
    mask = (rows < R)[:, None] & (cols < V)[None, :]
    tl.store(out_ptr + rows.to(tl.int64)[:, None] * stride_o + cols[None, :], g, mask=mask)


@triton.jit(do_not_specialize=_RNG_ARGS)
def gumbel_st_fwd_kernel(
    logits_ptr, noise_ptr, index_ptr, out_ptr, emb_ptr,
    R, V, E: tl.constexpr, stride_l, stride_n, stride_o, stride_emb,
    seed_lo, seed_hi, off_lo, off_hi,
    HAS_NOISE: tl.constexpr, OUT_EMB: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_E: tl.constexpr, NUM_CHUNKS: tl.constexpr,
):
    """index[r] = argmax_c(logits[r, c] + g[r, c]); out[r] = one_hot(index[r]) [V] or emb[index[r]] [E].

    Grid (cdiv(R, BLOCK_R),). The soft sample is not needed here: argmax(beta*z) = argmax(z).
    E (0 for the one-hot output) is a compile-time constant: fixed per model, and a loop bound the
    triton 3.6 interpreter cannot take from a runtime argument.
    """
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    rows64 = rows.to(tl.int64)
    best = tl.full([BLOCK_R], float("-inf"), tl.float32)
    best_idx = tl.zeros([BLOCK_R], tl.int32)
    for c in range(NUM_CHUNKS):
        col0 = c * BLOCK_V
        z = _z_tile(logits_ptr, noise_ptr, stride_l, stride_n, rows, row_ok, col0, V,
                    seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, BLOCK_V)
        # NaN logits (unchecked on CUDA, see the op) must still give an index inside [0, V).
        z = tl.where(z == z, z, float("-inf"))
        cmax = tl.max(z, axis=1)
        carg = tl.argmax(z, axis=1, tie_break_left=True) + col0
        take = cmax > best  # strict: the first chunk wins ties, like torch.argmax
        best = tl.where(take, cmax, best)
        best_idx = tl.where(take, carg, best_idx)
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
        for c in range(NUM_CHUNKS):
            cols = c * BLOCK_V + tl.arange(0, BLOCK_V)
            m = row_ok[:, None] & (cols < V)[None, :]
            # Through fp32: the interpreter turns bool -> bf16 into a bit pattern (triton 3.9).
            hot = tl.where(cols[None, :] == best_idx[:, None], 1.0, 0.0).to(out_ptr.dtype.element_ty)
            tl.store(out_ptr + rows64[:, None] * stride_o + cols[None, :], hot, mask=m)


@triton.jit
def _grad_in_tile(gout_ptr, emb_ptr, stride_g, stride_emb, rows, row_ok, col0, V, E: tl.constexpr,
                  FUSED_EMB: tl.constexpr, DOT_FP32: tl.constexpr, DOT_PRECISION: tl.constexpr,
                  BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_E: tl.constexpr):
    """The incoming gradient w.r.t. the soft sample s over one tile, fp32 [BLOCK_R, BLOCK_V].

    One-hot variant: grad_y itself. Embedding variant: grad_e [R, E] @ E^T, never materialised.
    """
    cols = col0 + tl.arange(0, BLOCK_V)
    col_ok = cols < V
    rows64 = rows.to(tl.int64)
    if FUSED_EMB:
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
    else:
        ptrs = gout_ptr + rows64[:, None] * stride_g + cols[None, :]
        return tl.load(ptrs, mask=row_ok[:, None] & col_ok[None, :], other=0.0).to(tl.float32)


@triton.jit(do_not_specialize=_RNG_ARGS)
def gumbel_st_bwd_kernel(
    logits_ptr, noise_ptr, gout_ptr, emb_ptr, dlogits_ptr,
    R, V, E: tl.constexpr, stride_l, stride_n, stride_g, stride_emb, stride_d,
    beta, seed_lo, seed_hi, off_lo, off_hi,
    HAS_NOISE: tl.constexpr, FUSED_EMB: tl.constexpr, DOT_FP32: tl.constexpr,
    DOT_PRECISION: tl.constexpr,
    BLOCK_R: tl.constexpr, BLOCK_V: tl.constexpr, BLOCK_E: tl.constexpr, NUM_CHUNKS: tl.constexpr,
):
    """dlogits = beta * s * (gin - <gin, s>), s = softmax(beta * (logits + g)) recomputed here.

    Grid (cdiv(R, BLOCK_R),). s is never stored: the noise is regenerated from (seed, offset).
    """
    rows = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    row_ok = rows < R
    rows64 = rows.to(tl.int64)
    scale = beta * _LOG2E
    if NUM_CHUNKS == 1:
        # The whole row stays in registers: one read of each input, one write.
        z = _z_tile(logits_ptr, noise_ptr, stride_l, stride_n, rows, row_ok, 0, V,
                    seed_lo, seed_hi, off_lo, off_hi, HAS_NOISE, BLOCK_R, BLOCK_V)
        zmax = _finite_or_zero(tl.max(z, axis=1))
        # beta * (z - zmax) rather than beta*z - max: no cancellation when beta*z is large.
        p = tl.exp2((z - zmax[:, None]) * scale)
        s = p * (1.0 / tl.maximum(tl.sum(p, axis=1), 1e-30))[:, None]
        gin = _grad_in_tile(gout_ptr, emb_ptr, stride_g, stride_emb, rows, row_ok, 0, V, E,
                            FUSED_EMB, DOT_FP32, DOT_PRECISION, BLOCK_R, BLOCK_V, BLOCK_E)
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
                                FUSED_EMB, DOT_FP32, DOT_PRECISION, BLOCK_R, BLOCK_V, BLOCK_E)
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
                                FUSED_EMB, DOT_FP32, DOT_PRECISION, BLOCK_R, BLOCK_V, BLOCK_E)
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
    NUM_CHUNKS: tl.constexpr,
):
    """out[r] ~ softmax(logits[r] * inv_temp) restricted to the top-k, then to the top-p nucleus.

    Gumbel-max: argmax over kept tokens of x*inv_temp + g. Both thresholds are found by bisection
    instead of a sort, so any V works with chunks: top-k on the integer keys of the logits (the
    largest key t with count(key >= t) >= k, 32 steps, ties with the k-th value kept); top-p on the
    fp32 bits of e = exp(x*inv_temp - max) (the largest tau with sum(e >= tau) >= top_p * sum(e),
    30 steps). A row of one chunk stays in registers; wider rows are re-read every step (from
    L1/L2 at generation batch sizes). Grid (cdiv(R, BLOCK_R),).
    """
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
