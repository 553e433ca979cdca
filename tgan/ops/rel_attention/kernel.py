"""Segment-recurrent relative (Transformer-XL) attention: forward and backward Triton kernels.

Notation (per batch b and head h): T queries of the current segment, L = M+T keys/values of
[memory; segment], r the relative embedding by distance. Query i sits at absolute position M+i,
sees keys j <= M+i, and

    s[i, j] = ((q_i + u)·k_j + (q_i + vb)·r[M+i-j]) * scale.

The [T, L] score and probability matrices are never written to memory (flash-style: query tiles,
key tiles, online softmax in fp32; the backward recomputes probabilities from the saved
log-sum-exp). Scores are kept in base-2 units (`qk_scale = scale * log2(e)`, exp2) and the saved
log-sum-exp `lse2` is in those units too.

The relative term without a [T, L] bias. For a query tile [i0, i0+BM) and a key tile [j0, j0+BN)
the distances M+i-j span a window of BM+BN-1 consecutive rows of r, starting at
dmin = M+i0-j0-(BN-1). The kernel loads that window (2*BN rows, BM <= BN, the last rows unused),
computes the relative scores of every query against every distance in it with one tensor-core
product [BM, D] @ [D, 2BN], then skews: the score of row a and key b sits in column a-b+BN-1 of
that product and is picked with `tl.gather` (`_skew_to_keys`). Cost per tile pair: the relative
product is 2x the size of QK^T (2BN columns instead of BN) plus a register gather of [BM, BN];
loading r per (i, j) pair instead would move a [BM, BN, D] block per tile (BN times more bytes).

A one-token step (T = 1: decoding, and each token step of a rollout) has one query, at M: key j's
distance is M - j, so with ONE_QUERY every kernel reads r's rows by key (an index shift,
`_r_by_key`) instead of the window, its double-width product and the gather: the forward and the
dk/dv pass for the scores, the dq pass for dS·R as a plain [BM, BN] x [BN, BD] product, and the dr
pass reads K and V by distance (key M - d) instead of skewing their window products. Compiled for
sm_90 (`compile_report.py`, ESTIMATES) the forward's loop issues about 40% fewer instructions, and
the three backward passes' modelled issue time at M = 1024 falls from about 49 to 31 µs, with no
spill under triton 3.6 or 3.9 in the tiles they run. Its forward has one program per (batch,
head) pair walking every key tile; where the pairs leave more than half the SMs idle (the small
preset's decoding at batch 4: 16 programs) the launcher splits the keys over more programs, and
the last split of a pair to finish combines the partial sums in split order (`_combine_splits`,
flash-decoding in one launch). The dq pass of a one-token step, one program per pair over every
key tile as well, splits the same way (its shares are plain sums).

The dk/dv pass, which sums over queries for a key tile, computes its tiles transposed ([BN, BM],
keys by rows: S^T = K·Q^T plus the window product R_win·(Q+vb)^T gathered along rows,
`_tile_scores_t`), so that P^T and dS^T enter the dv and dk products as they are rather than
transposed in registers (the flash-attention tutorial's backward). Compiled for sm_90 it needs
fewer registers (209 against 245 at 32 x 32 x 4, D = 64) and about the same instructions; with
16-row query tiles (one-token steps) it compiled longer, so those keep the row form.

The backward needs the transpose of the skew (`_skew_to_window`, a gather too) and a gradient for
r, which sums over all (i, j) pairs of one distance: dr[d] = sum_{b,i} dS[i, M+i-d] (q_i + vb).
Pairs of one distance lie on a diagonal that crosses every key tile and every query tile, so
neither the key-tile loop (dk, dv) nor the query-tile loop (dq) owns it. It gets its own pass,
`rel_attention_bwd_dr_kernel`, that owns a tile of distances and loops over queries in "distance
layout" (column c = distance d0+c): there the relative term is a plain product with r's tile and
it is the content term and dO·V^T that are skewed. Each distance row is written by exactly one
program (per batch split), so dr needs no atomics and is deterministic; the price is a third
recomputation of the scores (about 6 [BM, BN, D] products per tile against 6 and 7 for the dk/dv
and dq passes, so the backward does about 19 such products per tile pair against 4 forward).
The alternative is `rel_attention_bwd_fused_kernel` (``TGAN_ATTN_BWD=fused``): one pass over key
tiles computes each tile pair's scores once (11 products per tile pair against 19) and adds dq
and each tile pair's [2BN, D] window of dr with fp32 atomics (BM*D + 2*BN*D per tile pair, every
tile pair of one diagonal hitting the same rows of dr), at the price of sums whose order varies.
Which is faster is a GPU measurement (`benchmarks/gpu_session.sh fusion`); the three passes stay
the default until it is made.

T_BUCKET and L_BUCKET (next powers of two of T and M+T) are unused by the code: they are the
launchers' autotuning keys, which must be kernel arguments. bh0 is the (batch, head) index of the
launch's first program: a batch with more than 65535 (batch, head) pairs is launched in chunks
(grid axis 1 is capped there), and dropout draws by the global index so every chunk, and the dr
pass, which indexes batches globally, see one mask.

Dropout (training): Philox4x32-10 keyed by the call's 64-bit seed (seed_lo, seed_hi), counter
(b*H + h, i, j // 4, 0), word j % 4: query i keeps key j when that word is >= drop_thr =
floor(p * 2^32). One Philox call serves four keys in the passes whose tiles are aligned key ranges
(forward, dk/dv, dq, the mask kernel: `_keep_tile`); the dr pass, whose tiles hold skewed keys,
draws per element and picks the word (`_keep_at`), the same bits. Every backward pass recomputes
the forward's mask; probabilities are normalised before dropout, as `F.dropout(softmax(s))` does.
`naive.rel_attention_dropout_keep` is the same mask in torch.

Specialisation: lengths (T, L, M, NR), seeds, buckets and batch offsets are `do_not_specialize`, so
a rollout whose context grows by one token per step reuses one compiled kernel per tile config
instead of a variant per divisibility of L and M (`tests/test_compile_report.py` counts them).
"""
import triton
import triton.language as tl

from tgan.ops.philox.kernel import device_seed, interleave4, philox4x32

# scalars that change from call to call: never specialised on (== 1, divisible by 16)
_VARYING = ["T", "L", "M", "NR", "seed_lo", "seed_hi", "drop_thr", "T_BUCKET", "L_BUCKET"]


@triton.jit
def _skew_to_keys(p_win, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """[BM, 2BN] scores by window column -> [BM, BN]: out[a, b] = p_win[a, a - b + BN - 1]."""
    a = tl.arange(0, BLOCK_M)[:, None]
    b = tl.arange(0, BLOCK_N)[None, :]
    return tl.gather(p_win, a - b + (BLOCK_N - 1), axis=1)


@triton.jit
def _skew_to_window(x, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Transpose of `_skew_to_keys`: [BM, BN] -> [BM, 2BN], out[a, w] = x[a, a - w + BN - 1] or 0.

    x is interleaved with zeros first ([BM, 2BN], x at even columns) so the gather reads a
    source as wide as its index (a gather whose index is longer than its source along the axis
    is a case some Triton releases fail to compile) and an out-of-band column reads a zero.
    """
    xz = tl.reshape(tl.join(x, tl.zeros_like(x)), (BLOCK_M, 2 * BLOCK_N))
    a = tl.arange(0, BLOCK_M)[:, None]
    w = tl.arange(0, 2 * BLOCK_N)[None, :]
    b = a - w + (BLOCK_N - 1)
    idx = tl.where((b >= 0) & (b < BLOCK_N), 2 * b, 1)
    return tl.gather(xz, idx, axis=1)


@triton.jit
def _keep_tile(seed_lo, seed_hi, drop_thr, bh, offs_m, j0, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
               COMPARE_FIRST: tl.constexpr = False):
    """Keep mask [BM, BN] of query rows offs_m and keys j0 + [0, BN) (j0 a multiple of 4): one
    Philox call per four keys. COMPARE_FIRST: compare the words with the threshold before
    interleaving them, as bytes (the forward: without it, 64 x 64 x 8 spills 8 bytes at D = 50
    under triton 3.6; with it dq spills under 3.9, so the other passes interleave the words)."""
    zero = tl.zeros([BLOCK_M, BLOCK_N // 4], dtype=tl.uint32)
    c0 = zero + bh.to(tl.uint32)
    c1 = zero + offs_m[:, None].to(tl.uint32)
    c2 = zero + (j0 // 4 + tl.arange(0, BLOCK_N // 4))[None, :].to(tl.uint32)
    r0, r1, r2, r3 = philox4x32(seed_lo.to(tl.uint32, bitcast=True), seed_hi.to(tl.uint32, bitcast=True),
                                c0, c1, c2, zero)
    thr = drop_thr.to(tl.uint32, bitcast=True)
    if COMPARE_FIRST:
        return interleave4((r0 >= thr).to(tl.int8), (r1 >= thr).to(tl.int8), (r2 >= thr).to(tl.int8),
                           (r3 >= thr).to(tl.int8), BLOCK_M, BLOCK_N) != 0
    return interleave4(r0, r1, r2, r3, BLOCK_M, BLOCK_N) >= thr


@triton.jit
def _keep_at(seed_lo, seed_hi, drop_thr, bh, i2, j2):
    """Keep mask of query rows i2 [BM, 1] and keys j2 [BM, BN] (any pattern): the bits of
    `_keep_tile`, one Philox call per element (keys outside [0, L) draw values nobody uses)."""
    zero = tl.zeros(j2.shape, dtype=tl.uint32)
    r0, r1, r2, r3 = philox4x32(seed_lo.to(tl.uint32, bitcast=True), seed_hi.to(tl.uint32, bitcast=True),
                                zero + bh.to(tl.uint32), zero + i2.to(tl.uint32),
                                (j2 >> 2).to(tl.uint32, bitcast=True), zero)
    w = j2 & 3
    bits = tl.where(w == 0, r0, tl.where(w == 1, r1, tl.where(w == 2, r2, r3)))
    return bits >= drop_thr.to(tl.uint32, bitcast=True)


@triton.jit
def _load_rows(ptr, rows, row_stride, row_mask, offs_d, d_stride, D):
    """[len(rows), BD] tile of a row-major view; rows outside row_mask and columns >= D read 0.

    Offsets inside one (batch, head) slice are int32 (the launcher checks they fit; the slice
    base is int64): 64-bit offsets per element took the forward from 220 to 255 registers per
    thread (64 x 64 tiles, 8 warps, sm_90; ptxas via triton 3.9, compiled, not run).
    """
    mask = row_mask[:, None] & (offs_d[None, :] < D)
    return tl.load(ptr + rows[:, None] * row_stride + offs_d[None, :] * d_stride,
                   mask=mask, other=0.0)


@triton.jit
def _load_query_tile(Q, U, VB, q_base, sqt, sqd, h, D, offs_m, offs_d, T):
    """(q+u) and (q+vb) for a query tile, in q's dtype (the product inputs), [BM, BD] each."""
    q = _load_rows(Q + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D).to(tl.float32)
    u = tl.load(U + h * D + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
    vb = tl.load(VB + h * D + offs_d, mask=offs_d < D, other=0.0).to(tl.float32)
    dt = Q.dtype.element_ty
    return (q + u[None, :]).to(dt), (q + vb[None, :]).to(dt)


@triton.jit
def _tile_scores_t(qu, qv, k, R, h, srh, srr, srd, i0, j0, M, NR, D, offs_w, offs_d, qk_scale,
                   BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr):
    """`_tile_scores` transposed, [BN, BM] (keys by rows), computed as K·Q^T so that the dk/dv
    pass feeds its products without transposing probabilities and dS in registers; and the r
    window the scores used, [2BN, BD]."""
    dist = M + i0 - j0 - (BLOCK_N - 1) + offs_w
    r_win = _load_rows(R + h * srh, dist, srr, (dist >= 0) & (dist < NR), offs_d, srd, D)
    st = tl.dot(k, tl.trans(qu), input_precision=DOT_PREC)
    pw = tl.dot(r_win, tl.trans(qv), input_precision=DOT_PREC)  # [2BN, BM]
    a = tl.arange(0, BLOCK_M)[None, :]
    b = tl.arange(0, BLOCK_N)[:, None]
    st += tl.gather(pw, a - b + (BLOCK_N - 1), axis=0)
    return st * qk_scale, r_win


@triton.jit
def _scores_one_query(qu, qv, k, R, h, srh, srr, srd, j0, M, NR, D, offs_d, qk_scale,
                      BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr):
    """`_tile_scores` of a one-token step (T = 1: one query, at M): key j's distance is M - j, so
    r's rows are read in key order, an index shift: a [BN, BD] load and a [BM, BN] product instead
    of the [2BN, BD] window, its [BM, 2BN] product and the gather. Rows past the first are the
    query tile's padding (masked by the caller). Returns (scores [BM, BN], r's rows by key
    [BN, BD], row b at distance M - j0 - b)."""
    r_keys = _r_by_key(R, h, srh, srr, srd, j0, M, NR, D, offs_d, BLOCK_N)
    s = tl.dot(qu, tl.trans(k), input_precision=DOT_PREC)
    s += tl.dot(qv, tl.trans(r_keys), input_precision=DOT_PREC)
    return s * qk_scale, r_keys


@triton.jit
def _r_by_key(R, h, srh, srr, srd, j0, M, NR, D, offs_d, BLOCK_N: tl.constexpr):
    """r's rows at the distances M - j of keys j0 + [0, BN) from the one query of a one-token
    step, [BN, BD] (an index shift: distances run backwards as keys run forwards)."""
    dist = M - j0 - tl.arange(0, BLOCK_N)
    return _load_rows(R + h * srh, dist, srr, (dist >= 0) & (dist < NR), offs_d, srd, D)


@triton.jit
def _tile_scores(qu, qv, k, R, h, srh, srr, srd, i0, j0, M, NR, D, offs_w, offs_d, qk_scale,
                 BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr):
    """Base-2 scores [BM, BN] of query tile i0 against key tile j0, and the r window they used.

    Content term (q+u)·k plus the relative term (q+vb)·r[M+i-j], read from the tile pair's window
    of 2*BN rows of r (`_skew_to_keys`), scaled by qk_scale. Masking is left to the caller.
    """
    dist = M + i0 - j0 - (BLOCK_N - 1) + offs_w  # distance held by each window row
    r_win = _load_rows(R + h * srh, dist, srr, (dist >= 0) & (dist < NR), offs_d, srd, D)
    s = tl.dot(qu, tl.trans(k), input_precision=DOT_PREC)
    s += _skew_to_keys(tl.dot(qv, tl.trans(r_win), input_precision=DOT_PREC), BLOCK_M, BLOCK_N)
    return s * qk_scale, r_win


@triton.jit(do_not_specialize=_VARYING + ["bh0", "n_split"])
def rel_attention_fwd_kernel(
    Q, K, V, R, U, VB, O, LSE,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    srr, srh, srd, sob, sot, soh, sod,
    H, T, L, M, D, NR, qk_scale, seed_lo, seed_hi, drop_thr, dropout_p, T_BUCKET, L_BUCKET, bh0,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, DOT_PREC: tl.constexpr, ONE_QUERY: tl.constexpr = False, SEED=None,
    PART=None, LOCK=None, n_split=1, MAX_SPLITS: tl.constexpr = 1,
):
    """Grid (cdiv(T, BM), B*H). Writes O [B, T, H, D] and LSE [B, H, T] (base-2 log-sum-exp).
    ONE_QUERY: T = 1 (a one-token step), the relative term by an index shift (`_scores_one_query`).

    With LOCK (one-token steps whose B*H programs would leave most of the GPU idle): grid
    (n_split, B*H), program s taking the s-th share of the key tiles (a split over keys, as in
    flash-decoding). Each writes its partial (acc [BD], running max, sum) to PART (fp32
    [B*H, MAX_SPLITS, BD + 2]) and counts itself in LOCK (int32 [B*H], zero between launches);
    the last of a (batch, head)'s splits to finish combines the partials in split order (the same
    sums whatever the finishing order) and zeroes its counter. One launch, no host work."""
    if SEED is not None:  # a DeviceSeed: its base read on the device, add as the ints
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    if LOCK is not None:
        i0 = 0  # one query tile; axis 0 numbers the splits
    else:
        i0 = pid_m * BLOCK_M
    offs_m = i0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_w = tl.arange(0, 2 * BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = b.to(tl.int64) * sqb + h * sqh
    k_base = b.to(tl.int64) * skb + h * skh
    v_base = b.to(tl.int64) * svb + h * svh
    qu, qv = _load_query_tile(Q, U, VB, q_base, sqt, sqd, h, D, offs_m, offs_d, T)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    # Key tiles from 0 (memory is fully visible) to the last key the tile's last query sees. Key 0
    # is visible to every query, so after the first tile every row max is finite (no inf - inf).
    j_end = tl.minimum(L, M + i0 + BLOCK_M)
    j_lo = 0
    if LOCK is not None:  # this split's key tiles (every key is visible to the one query)
        j_lo, j_end = _split_keys(j_end, n_split, pid_m, BLOCK_N)
    for j0 in range(j_lo, j_end, BLOCK_N):
        offs_j = j0 + offs_n
        k = _load_rows(K + k_base, offs_j, skt, offs_j < L, offs_d, skd, D)
        v = _load_rows(V + v_base, offs_j, svt, offs_j < L, offs_d, svd, D)
        if ONE_QUERY:
            s, _ = _scores_one_query(qu, qv, k, R, h, srh, srr, srd, j0, M, NR, D, offs_d, qk_scale,
                                     BLOCK_N, DOT_PREC)
        else:
            s, _ = _tile_scores(qu, qv, k, R, h, srh, srr, srd, i0, j0, M, NR, D, offs_w, offs_d,
                                qk_scale, BLOCK_M, BLOCK_N, DOT_PREC)
        visible = (offs_j[None, :] <= M + offs_m[:, None]) & (offs_j[None, :] < L)
        s = tl.where(visible, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp2(m_i - m_new)
        p = tl.exp2(s - m_new[:, None])
        l_i = l_i * alpha + tl.sum(p, axis=1)
        if HAS_DROPOUT:
            keep = _keep_tile(seed_lo, seed_hi, drop_thr, bh0 + bh, offs_m, j0, BLOCK_M, BLOCK_N,
                              COMPARE_FIRST=True)
            p = tl.where(keep, p * (1.0 / (1.0 - dropout_p)), 0.0)
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=DOT_PREC)
        m_i = m_new

    if LOCK is not None:
        _combine_splits(acc, m_i, l_i, PART, LOCK, O, LSE, bh0 + bh, bh, b, h, sob, soh, sod, D,
                        offs_m, offs_d, n_split, pid_m, BLOCK_D, MAX_SPLITS)
    else:
        o = acc / l_i[:, None]
        o_ptr = O + b.to(tl.int64) * sob + h * soh + offs_m[:, None] * sot + offs_d[None, :] * sod
        tl.store(o_ptr, o.to(O.dtype.element_ty), mask=(offs_m[:, None] < T) & (offs_d[None, :] < D))
        tl.store(LSE + bh.to(tl.int64) * T + offs_m, m_i + tl.log2(l_i), mask=offs_m < T)


@triton.jit
def _split_keys(j_end, n_split, split, BLOCK_N: tl.constexpr):
    """[j_lo, j_hi): split ``split``'s share of the key tiles below ``j_end``, cdiv(tiles, n_split)
    tiles each (the last shares may be short or empty)."""
    per = tl.cdiv(tl.cdiv(j_end, BLOCK_N), n_split)
    j_lo = split * per * BLOCK_N
    return j_lo, tl.minimum(j_end, j_lo + per * BLOCK_N)


@triton.jit
def _combine_splits(acc, m_i, l_i, PART, LOCK, O, LSE, gbh, bh, b, h, sob, soh, sod, D, offs_m,
                    offs_d, n_split, split, BLOCK_D: tl.constexpr, MAX_SPLITS: tl.constexpr):
    """A split's partial of the one query (row 0 of the tile) to PART, then, in the last split of
    (batch, head) ``gbh`` to arrive, O and LSE from every split's partial (see the forward)."""
    row0 = offs_m == 0
    width = BLOCK_D + 2
    part = PART + gbh.to(tl.int64) * (MAX_SPLITS * width)
    tl.store(part + split * width + offs_d, tl.sum(tl.where(row0[:, None], acc, 0.0), axis=0))
    tl.store(part + split * width + BLOCK_D, tl.sum(tl.where(row0, m_i, 0.0), axis=0))
    tl.store(part + split * width + BLOCK_D + 1, tl.sum(tl.where(row0, l_i, 0.0), axis=0))
    # every thread's partial stores issued before the count (one thread performs a scalar
    # atomic); acq_rel at GPU scope: they are visible to the split that counts last, whose loads
    # come after its own count
    tl.debug_barrier()
    done = tl.atomic_add(LOCK + gbh, 1, sem="acq_rel")
    if done == n_split - 1:
        offs_s = tl.arange(0, MAX_SPLITS)
        ok = offs_s < n_split
        rows = part + offs_s * width
        ms = tl.load(rows + BLOCK_D, mask=ok, other=float("-inf"), cache_modifier=".cg")
        ls = tl.load(rows + BLOCK_D + 1, mask=ok, other=0.0, cache_modifier=".cg")
        accs = tl.load(rows[:, None] + offs_d[None, :], mask=ok[:, None], other=0.0,
                       cache_modifier=".cg")
        mx = tl.max(ms, axis=0)  # finite: the first split holds key 0
        w = tl.exp2(ms - mx)  # 0 for an empty split (max -inf) and past n_split
        lsum = tl.sum(w * ls, axis=0)
        o = tl.sum(w[:, None] * accs, axis=0) / lsum
        tl.store(O + b.to(tl.int64) * sob + h * soh + offs_d * sod, o.to(O.dtype.element_ty),
                 mask=offs_d < D)
        tl.store(LSE + bh.to(tl.int64), mx + tl.log2(lsum))
        tl.atomic_xchg(LOCK + gbh, 0)  # ready for the next launch


@triton.jit
def _probs_and_dscores(s, do_vt, lse2, delta, visible, keep, dropout_p, HAS_DROPOUT: tl.constexpr):
    """From base-2 scores and dO·V^T: (probabilities after dropout, dS = dL/ds / scale).

    lse2 and delta come shaped to broadcast against the scores ([BM, 1] by query rows, [1, BM]
    for the transposed tiles of the dk/dv pass).

    p = exp2(s - lse2) are the softmax probabilities; with dropout the output used
    p * keep / (1 - p_drop), so dL/dp = dO·V^T * keep / (1 - p_drop), and
    dS = p * (dL/dp - delta) with delta_i = dO_i·O_i.
    """
    p = tl.where(visible, tl.exp2(s - lse2), 0.0)
    if HAS_DROPOUT:
        inv = 1.0 / (1.0 - dropout_p)
        p_drop = tl.where(keep, p * inv, 0.0)
        dp = tl.where(keep, do_vt * inv, 0.0)
    else:
        p_drop = p
        dp = do_vt
    return p_drop, p * (dp - delta)


@triton.jit
def _row_tile(qu, qv, k, v, do, R, h, srh, srr, srd, i0, j0, M, NR, D, T, L, offs_m, offs_j, offs_w,
              offs_d, qk_scale, lse2, delta, seed_lo, seed_hi, drop_thr, dropout_p, bh,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, ONE_QUERY: tl.constexpr):
    """A backward tile pair in row form ([BM, BN], queries by rows), for the dq pass and the dk/dv
    pass's 16-row tiles: (probabilities after dropout, dS, the r rows the scores used: the
    [2BN, BD] window, or with ONE_QUERY r's [BN, BD] rows by key, `_scores_one_query`)."""
    if ONE_QUERY:
        s, r_win = _scores_one_query(qu, qv, k, R, h, srh, srr, srd, j0, M, NR, D, offs_d,
                                     qk_scale, BLOCK_N, DOT_PREC)
    else:
        s, r_win = _tile_scores(qu, qv, k, R, h, srh, srr, srd, i0, j0, M, NR, D, offs_w, offs_d,
                                qk_scale, BLOCK_M, BLOCK_N, DOT_PREC)
    visible = ((offs_j[None, :] <= M + offs_m[:, None]) & (offs_j[None, :] < L)
               & (offs_m[:, None] < T))
    do_vt = tl.dot(do, tl.trans(v), input_precision=DOT_PREC)
    keep = visible
    if HAS_DROPOUT:
        keep = _keep_tile(seed_lo, seed_hi, drop_thr, bh, offs_m, j0, BLOCK_M, BLOCK_N)
    p_drop, ds = _probs_and_dscores(s, do_vt, lse2[:, None], delta[:, None], visible, keep, dropout_p,
                                    HAS_DROPOUT)
    return p_drop, ds, r_win


@triton.jit
def _col_tile(qu, qv, k, v, do, R, h, srh, srr, srd, i0, j0, M, NR, D, T, L, offs_m, offs_j, offs_w,
              offs_d, qk_scale, lse2, delta, seed_lo, seed_hi, drop_thr, dropout_p, bh,
              BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, DOT_PREC: tl.constexpr,
              HAS_DROPOUT: tl.constexpr, ONE_QUERY: tl.constexpr):
    """`_row_tile` transposed ([BN, BM], keys by rows), for the passes over key tiles: P^T and
    dS^T feed the dv and dk products untransposed. Returns (probabilities after dropout, dS, the
    r rows the scores used: the window, or with ONE_QUERY r's rows by key)."""
    if ONE_QUERY:
        r_win = _r_by_key(R, h, srh, srr, srd, j0, M, NR, D, offs_d, BLOCK_N)
        st = tl.dot(k, tl.trans(qu), input_precision=DOT_PREC)
        st += tl.dot(r_win, tl.trans(qv), input_precision=DOT_PREC)
        st = st * qk_scale
    else:
        st, r_win = _tile_scores_t(qu, qv, k, R, h, srh, srr, srd, i0, j0, M, NR, D, offs_w,
                                   offs_d, qk_scale, BLOCK_M, BLOCK_N, DOT_PREC)
    visible = ((offs_j[:, None] <= M + offs_m[None, :]) & (offs_j[:, None] < L)
               & (offs_m[None, :] < T))
    v_do = tl.dot(v, tl.trans(do), input_precision=DOT_PREC)  # (dO·V^T)^T
    keep = visible
    if HAS_DROPOUT:
        keep = tl.trans(_keep_tile(seed_lo, seed_hi, drop_thr, bh, offs_m, j0, BLOCK_M, BLOCK_N))
    p_drop, ds = _probs_and_dscores(st, v_do, lse2[None, :], delta[None, :], visible, keep,
                                    dropout_p, HAS_DROPOUT)
    return p_drop, ds, r_win


@triton.jit(do_not_specialize=_VARYING + ["bh0"])
def rel_attention_bwd_dkdv_kernel(
    QU, QV, K, V, R, DO, LSE, DELTA, DK, DV, DU_PART,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    srr, srh, srd, sdob, sdot, sdoh, sdod,
    H, T, L, M, D, NR, scale, qk_scale, seed_lo, seed_hi, drop_thr, dropout_p, T_BUCKET, L_BUCKET, bh0,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, DOT_PREC: tl.constexpr, ONE_QUERY: tl.constexpr = False, SEED=None,
):
    """Grid (cdiv(L, BN), B*H): one key tile, loop over the query tiles that see it.

    QU, QV are q + u and q + vb in q's dtype (the launcher's, with the strides sq*), so that the
    loop loads its two product inputs instead of forming them from q each iteration. DK, DV are
    contiguous [B, L, H, D] in k's dtype. With query tiles of 32 rows or more, DU_PART
    is fp32 [B, cdiv(L, BN), H, D]: this tile's sum_j (sum_i dS_ij)·K_j, the content part of dq
    summed over queries (du / scale), so that the dq pass keeps one accumulator, not two
    (16-row tiles leave du to the dq pass: the dS sums made dk/dv spill there).
    """
    if SEED is not None:  # a DeviceSeed: its base read on the device, add as the ints
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    j0 = pid_n * BLOCK_N
    offs_j = j0 + tl.arange(0, BLOCK_N)
    offs_mm = tl.arange(0, BLOCK_M)
    offs_w = tl.arange(0, 2 * BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = b.to(tl.int64) * sqb + h * sqh
    do_base = b.to(tl.int64) * sdob + h * sdoh
    k = _load_rows(K + b.to(tl.int64) * skb + h * skh, offs_j, skt, offs_j < L, offs_d, skd, D)
    v = _load_rows(V + b.to(tl.int64) * svb + h * svh, offs_j, svt, offs_j < L, offs_d, svd, D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    ds_acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    # the first query that sees key j0 is i = j0 - M
    i_start = (tl.maximum(j0 - M, 0) // BLOCK_M) * BLOCK_M
    for i0 in range(i_start, T, BLOCK_M):
        offs_m = i0 + offs_mm
        qu = _load_rows(QU + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
        qv = _load_rows(QV + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
        do = _load_rows(DO + do_base, offs_m, sdot, offs_m < T, offs_d, sdod, D)
        lse2 = tl.load(LSE + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
        delta = tl.load(DELTA + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
        if BLOCK_M >= 32:
            # transposed tiles [BN, BM], keys by rows: P^T and dS^T feed dv and dk untransposed
            p_drop, ds, _ = _col_tile(qu, qv, k, v, do, R, h, srh, srr, srd, i0, j0, M, NR, D, T, L,
                                      offs_m, offs_j, offs_w, offs_d, qk_scale, lse2, delta, seed_lo,
                                      seed_hi, drop_thr, dropout_p, bh0 + bh, BLOCK_M, BLOCK_N,
                                      DOT_PREC, HAS_DROPOUT, ONE_QUERY)
            dv += tl.dot(p_drop.to(do.dtype), do, input_precision=DOT_PREC)
            dk += tl.dot(ds.to(qu.dtype), qu, input_precision=DOT_PREC)
            ds_acc += ds  # summed over queries after the loop, not reduced across warps per tile
        else:
            # one-token steps (16-row query tiles): the row form compiled shorter there
            p_drop, ds, _ = _row_tile(qu, qv, k, v, do, R, h, srh, srr, srd, i0, j0, M, NR, D, T, L,
                                      offs_m, offs_j, offs_w, offs_d, qk_scale, lse2, delta, seed_lo,
                                      seed_hi, drop_thr, dropout_p, bh0 + bh, BLOCK_M, BLOCK_N,
                                      DOT_PREC, HAS_DROPOUT, ONE_QUERY)
            dv += tl.dot(tl.trans(p_drop.to(do.dtype)), do, input_precision=DOT_PREC)
            dk += tl.dot(tl.trans(ds.to(qu.dtype)), qu, input_precision=DOT_PREC)

    out = b.to(tl.int64) * L * H * D + offs_j[:, None] * (H * D) + h * D + offs_d[None, :]
    mask = (offs_j[:, None] < L) & (offs_d[None, :] < D)
    tl.store(DK + out, (dk * scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=mask)
    if BLOCK_M >= 32:  # keys beyond L have dS = 0 (no query sees them)
        ds_sum = tl.sum(ds_acc, 1)
        part = ((b.to(tl.int64) * tl.num_programs(0) + pid_n) * H + h) * D + offs_d
        tl.store(DU_PART + part, tl.sum(ds_sum[:, None] * k.to(tl.float32), 0), mask=offs_d < D)


@triton.jit(do_not_specialize=_VARYING + ["bh0"])
def rel_attention_bwd_fused_kernel(
    QU, QV, K, V, R, DO, LSE, DELTA, DQ, DK, DV, DR, DU_PART,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    srr, srh, srd, sdob, sdot, sdoh, sdod,
    H, T, L, M, D, NR, scale, qk_scale, seed_lo, seed_hi, drop_thr, dropout_p, T_BUCKET, L_BUCKET, bh0,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, DOT_PREC: tl.constexpr, COMPUTE_DR: tl.constexpr,
    ONE_QUERY: tl.constexpr = False, SEED=None,
):
    """Grid (cdiv(L, BN), B*H): the whole backward in one pass over key tiles, each tile pair's
    scores computed once (FlashAttention-2's backward, with the relative term).

    One key tile per program, a loop over the query tiles that see it, in the transposed form of
    the dk/dv pass ([BN, BM], keys by rows). dk and dv (and du's partial sums, DU_PART as in the
    dk/dv pass) stay in registers and are stored once. dq and dr are sums over key tiles, which
    other programs own: each tile pair adds its share with fp32 atomics, dq's [BM, BD] rows
    (dS·K plus the window product dS_win·R_win) into DQ [B, T, H, D], and its r window's gradient
    dS_win^T·(q+vb) [2BN, BD] into DR [L, H, D] (with COMPUTE_DR). DQ and DR are fp32, zeroed by
    the launcher, unscaled (the launcher multiplies by ``scale``); the order of the atomic adds
    varies from run to run, so dq and dr are not bit-for-bit repeatable.
    Per tile pair: 11 [BM, BN, BD] products (scores 3, dO·V^T, dV, dK, dS·K, dS·R 2, dr 2)
    against 19 in the three passes, plus BM·BD + 2·BN·BD atomic adds.
    """
    if SEED is not None:  # a DeviceSeed: its base read on the device, add as the ints
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    pid_n = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    j0 = pid_n * BLOCK_N
    offs_j = j0 + tl.arange(0, BLOCK_N)
    offs_mm = tl.arange(0, BLOCK_M)
    offs_w = tl.arange(0, 2 * BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    q_base = b.to(tl.int64) * sqb + h * sqh
    do_base = b.to(tl.int64) * sdob + h * sdoh
    k = _load_rows(K + b.to(tl.int64) * skb + h * skh, offs_j, skt, offs_j < L, offs_d, skd, D)
    v = _load_rows(V + b.to(tl.int64) * svb + h * svh, offs_j, svt, offs_j < L, offs_d, svd, D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    ds_acc = tl.zeros([BLOCK_N, BLOCK_M], tl.float32)
    dq_base = b.to(tl.int64) * T * H * D + h * D
    i_start = (tl.maximum(j0 - M, 0) // BLOCK_M) * BLOCK_M
    for i0 in range(i_start, T, BLOCK_M):
        offs_m = i0 + offs_mm
        qu = _load_rows(QU + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
        qv = _load_rows(QV + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
        do = _load_rows(DO + do_base, offs_m, sdot, offs_m < T, offs_d, sdod, D)
        lse2 = tl.load(LSE + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
        delta = tl.load(DELTA + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
        p_drop, ds, r_win = _col_tile(qu, qv, k, v, do, R, h, srh, srr, srd, i0, j0, M, NR, D, T,
                                      L, offs_m, offs_j, offs_w, offs_d, qk_scale, lse2, delta,
                                      seed_lo, seed_hi, drop_thr, dropout_p, bh0 + bh, BLOCK_M,
                                      BLOCK_N, DOT_PREC, HAS_DROPOUT, ONE_QUERY)
        dv += tl.dot(p_drop.to(do.dtype), do, input_precision=DOT_PREC)
        dk += tl.dot(ds.to(qu.dtype), qu, input_precision=DOT_PREC)
        ds_acc += ds
        # dq's share of this key tile: the content part dS·K and the relative part dS_win·R_win
        ds_rows = tl.trans(ds.to(qu.dtype))  # [BM, BN]
        dq = tl.dot(ds_rows, k, input_precision=DOT_PREC)
        if ONE_QUERY:  # r_win holds r's rows by key: no skew
            dq += tl.dot(ds_rows, r_win, input_precision=DOT_PREC)
        else:
            ds_win = _skew_to_window(ds_rows, BLOCK_M, BLOCK_N)  # [BM, 2BN], column = window row
            dq += tl.dot(ds_win, r_win, input_precision=DOT_PREC)
        dq_ptr = DQ + dq_base + offs_m[:, None] * (H * D) + offs_d[None, :]
        tl.atomic_add(dq_ptr, dq, mask=(offs_m[:, None] < T) & (offs_d[None, :] < D), sem="relaxed")
        if COMPUTE_DR:
            if ONE_QUERY:  # key j's distance is M - j: dr's rows by key, [BN, BD]
                dist = M - offs_j
                dr = tl.dot(ds.to(qv.dtype), qv, input_precision=DOT_PREC)
            else:
                dist = M + i0 - j0 - (BLOCK_N - 1) + offs_w
                dr = tl.dot(tl.trans(ds_win), qv, input_precision=DOT_PREC)  # [2BN, BD]
            dr_ptr = DR + dist[:, None] * (H * D) + h * D + offs_d[None, :]
            tl.atomic_add(dr_ptr, dr, mask=(dist[:, None] >= 0) & (dist[:, None] < L)
                          & (offs_d[None, :] < D), sem="relaxed")

    out = b.to(tl.int64) * L * H * D + offs_j[:, None] * (H * D) + h * D + offs_d[None, :]
    mask = (offs_j[:, None] < L) & (offs_d[None, :] < D)
    tl.store(DK + out, (dk * scale).to(DK.dtype.element_ty), mask=mask)
    tl.store(DV + out, dv.to(DV.dtype.element_ty), mask=mask)
    ds_sum = tl.sum(ds_acc, 1)  # keys beyond L have dS = 0
    part = ((b.to(tl.int64) * tl.num_programs(0) + pid_n) * H + h) * D + offs_d
    tl.store(DU_PART + part, tl.sum(ds_sum[:, None] * k.to(tl.float32), 0), mask=offs_d < D)


@triton.jit(do_not_specialize=_VARYING + ["bh0", "n_split"])
def rel_attention_bwd_dq_kernel(
    QU, QV, K, V, R, DO, LSE, DELTA, DQ, DQ_PART, DVB_PART,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    srr, srh, srd, sdob, sdot, sdoh, sdod,
    H, T, L, M, D, NR, scale, qk_scale, seed_lo, seed_hi, drop_thr, dropout_p, T_BUCKET, L_BUCKET, bh0,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, DOT_PREC: tl.constexpr, ONE_QUERY: tl.constexpr = False, SEED=None,
    PART=None, LOCK=None, n_split=1, MAX_SPLITS: tl.constexpr = 1,
):
    """Grid (cdiv(T, BM), B*H): one query tile, loop over its visible key tiles.

    QU, QV: q + u and q + vb, as in the dk/dv pass. DQ is contiguous [B, T, H, D] in q's dtype.
    DQ_PART, DVB_PART are fp32 [B, cdiv(T, BM), H, D]: with query tiles of 32 rows or more,
    DQ_PART is this tile's dq summed over its queries (du + dvb; the launcher takes du from the
    dk/dv pass's DU_PART, so one [BM, BD] accumulator serves both parts of dq) and DVB_PART is
    unused; with 16-row tiles they are the sums of the content part (dq through q+u) and of the
    relative part (dq through q+vb), two accumulators.

    With LOCK (a one-token step, as in the forward): grid (n_split, B*H), program s summing the
    s-th share of the key tiles into PART (fp32 [B*H, MAX_SPLITS, 2 BD]: its content and relative
    sums); the last split of a (batch, head) to finish adds the shares in split order and writes
    DQ, DQ_PART and DVB_PART. dq is a plain sum over keys: no rescaling.
    """
    if SEED is not None:  # a DeviceSeed: its base read on the device, add as the ints
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    pid_m = tl.program_id(0)
    bh = tl.program_id(1)
    b = bh // H
    h = bh % H
    if LOCK is not None:
        i0 = 0  # one query tile; axis 0 numbers the splits
    else:
        i0 = pid_m * BLOCK_M
    offs_m = i0 + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_w = tl.arange(0, 2 * BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    k_base = b.to(tl.int64) * skb + h * skh
    v_base = b.to(tl.int64) * svb + h * svh
    q_base = b.to(tl.int64) * sqb + h * sqh
    qu = _load_rows(QU + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
    qv = _load_rows(QV + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
    do = _load_rows(DO + b.to(tl.int64) * sdob + h * sdoh, offs_m, sdot, offs_m < T, offs_d,
                    sdod, D)
    lse2 = tl.load(LSE + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
    delta = tl.load(DELTA + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
    dq = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)
    dq_rel = tl.zeros([BLOCK_M, BLOCK_D], tl.float32)  # 16-row tiles only
    j_end = tl.minimum(L, M + i0 + BLOCK_M)
    j_lo = 0
    if LOCK is not None:  # this split's key tiles
        j_lo, j_end = _split_keys(j_end, n_split, pid_m, BLOCK_N)
    for j0 in range(j_lo, j_end, BLOCK_N):
        offs_j = j0 + offs_n
        k = _load_rows(K + k_base, offs_j, skt, offs_j < L, offs_d, skd, D)
        v = _load_rows(V + v_base, offs_j, svt, offs_j < L, offs_d, svd, D)
        _, ds, r_win = _row_tile(qu, qv, k, v, do, R, h, srh, srr, srd, i0, j0, M, NR, D, T, L,
                                 offs_m, offs_j, offs_w, offs_d, qk_scale, lse2, delta, seed_lo,
                                 seed_hi, drop_thr, dropout_p, bh0 + bh, BLOCK_M, BLOCK_N, DOT_PREC,
                                 HAS_DROPOUT, ONE_QUERY)
        dq += tl.dot(ds.to(k.dtype), k, input_precision=DOT_PREC)
        if ONE_QUERY:  # r_win holds r's rows by key: dS·R without a skew
            ds_win = ds
        else:
            ds_win = _skew_to_window(ds, BLOCK_M, BLOCK_N)  # [BM, 2BN], column = window row of r
        if BLOCK_M >= 32:
            dq += tl.dot(ds_win.to(r_win.dtype), r_win, input_precision=DOT_PREC)
        else:
            dq_rel += tl.dot(ds_win.to(r_win.dtype), r_win, input_precision=DOT_PREC)

    if LOCK is not None:
        # rows past the one query have ds = 0: the column sums are its row
        width = 2 * BLOCK_D
        prow = PART + (bh0 + bh).to(tl.int64) * (MAX_SPLITS * width)
        tl.store(prow + pid_m * width + offs_d, tl.sum(dq, axis=0))
        tl.store(prow + pid_m * width + BLOCK_D + offs_d, tl.sum(dq_rel, axis=0))
        tl.debug_barrier()  # as in `_combine_splits`: the shares stored before the count
        done = tl.atomic_add(LOCK + bh0 + bh, 1, sem="acq_rel")
        if done == n_split - 1:  # the last split: the shares, summed in split order
            offs_s = tl.arange(0, MAX_SPLITS)
            rows = prow + offs_s[:, None] * width + offs_d[None, :]
            ok = (offs_s < n_split)[:, None]
            dq_c = tl.sum(tl.load(rows, mask=ok, other=0.0, cache_modifier=".cg"), axis=0) * scale
            dq_r = tl.sum(tl.load(rows + BLOCK_D, mask=ok, other=0.0, cache_modifier=".cg"),
                          axis=0) * scale
            part1 = (b.to(tl.int64) * H + h) * D + offs_d  # one query tile
            dq_row = dq_c
            if BLOCK_M < 32:
                dq_row = dq_c + dq_r
                tl.store(DVB_PART + part1, dq_r, mask=offs_d < D)
            tl.store(DQ + b.to(tl.int64) * H * D + h * D + offs_d, dq_row.to(DQ.dtype.element_ty),
                     mask=offs_d < D)
            tl.store(DQ_PART + part1, dq_c, mask=offs_d < D)
            tl.atomic_xchg(LOCK + bh0 + bh, 0)  # ready for the next launch
    else:
        dq = dq * scale
        out = b.to(tl.int64) * T * H * D + offs_m[:, None] * (H * D) + h * D + offs_d[None, :]
        # rows beyond T have ds = 0, so the column sums are over real queries only
        part = ((b.to(tl.int64) * tl.num_programs(0) + pid_m) * H + h) * D + offs_d
        dq_all = dq
        if BLOCK_M < 32:
            dq_rel = dq_rel * scale
            dq_all = dq + dq_rel
            tl.store(DVB_PART + part, tl.sum(dq_rel, axis=0), mask=offs_d < D)
        tl.store(DQ + out, dq_all.to(DQ.dtype.element_ty),
                 mask=(offs_m[:, None] < T) & (offs_d[None, :] < D))
        tl.store(DQ_PART + part, tl.sum(dq, axis=0), mask=offs_d < D)


@triton.jit(do_not_specialize=_VARYING + ["B", "b_per_split"])
def rel_attention_bwd_dr_kernel(
    QU, QV, K, V, R, DO, LSE, DELTA, DR_PART,
    sqb, sqt, sqh, sqd, skb, skt, skh, skd, svb, svt, svh, svd,
    srr, srh, srd, sdob, sdot, sdoh, sdod,
    B, H, T, L, M, D, NR, scale, qk_scale, seed_lo, seed_hi, drop_thr, dropout_p, T_BUCKET, L_BUCKET,
    b_per_split,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
    HAS_DROPOUT: tl.constexpr, DOT_PREC: tl.constexpr, ONE_QUERY: tl.constexpr = False, SEED=None,
):
    """Grid (cdiv(L, BN), H, splits): one tile of BN distances, loop over batches and queries.

    Distance layout: column c of a tile holds distance d = d0 + c and key j = M + i - d. For a
    query tile [i0, i0+BM) those keys form a window of BM+BN-1 rows starting at
    jmin = M+i0-d0-(BN-1), and key j of row a is window row a - c + BN - 1, the same skew as the
    forward's with the roles of keys and distances swapped.
    DR_PART is fp32 [splits, L, H, D]; split s sums batches [s*b_per_split, (s+1)*b_per_split).
    QU, QV: q + u and q + vb, as in the dk/dv pass.
    """
    if SEED is not None:  # a DeviceSeed: its base read on the device, add as the ints
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    pid_d = tl.program_id(0)
    h = tl.program_id(1)
    split = tl.program_id(2)
    d0 = pid_d * BLOCK_N
    offs_c = d0 + tl.arange(0, BLOCK_N)
    offs_mm = tl.arange(0, BLOCK_M)
    offs_w = tl.arange(0, 2 * BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    r_tile = _load_rows(R + h * srh, offs_c, srr, offs_c < NR, offs_d, srd, D)
    acc = tl.zeros([BLOCK_N, BLOCK_D], tl.float32)
    # the first query with a key at distance d0 (j = M + i - d0 >= 0) is i = d0 - M
    i_start = (tl.maximum(d0 - M, 0) // BLOCK_M) * BLOCK_M
    b_lo = split * b_per_split
    b_hi = tl.minimum(B, b_lo + b_per_split)
    for b in range(b_lo, b_hi):
        bh = b * H + h
        b64 = tl.cast(b, tl.int64)
        q_base = b64 * sqb + h * sqh
        k_base = b64 * skb + h * skh
        v_base = b64 * svb + h * svh
        do_base = b64 * sdob + h * sdoh
        for i0 in range(i_start, T, BLOCK_M):
            offs_m = i0 + offs_mm
            qu = _load_rows(QU + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
            qv = _load_rows(QV + q_base, offs_m, sqt, offs_m < T, offs_d, sqd, D)
            do = _load_rows(DO + do_base, offs_m, sdot, offs_m < T, offs_d, sdod, D)
            lse2 = tl.load(LSE + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
            delta = tl.load(DELTA + bh.to(tl.int64) * T + offs_m, mask=offs_m < T, other=0.0)
            if ONE_QUERY:
                # the one query's key at distance d is M - d: K and V rows by distance (an index
                # shift), [BN, BD] loads and [BM, BN] products, no skew (rows past the first are
                # the tile's padding, not visible)
                keys = M - offs_c
                kmask = (keys >= 0) & (keys < L)
                k_rows = _load_rows(K + k_base, keys, skt, kmask, offs_d, skd, D)
                v_rows = _load_rows(V + v_base, keys, svt, kmask, offs_d, svd, D)
                s = tl.dot(qu, tl.trans(k_rows), input_precision=DOT_PREC)
                do_vt = tl.dot(do, tl.trans(v_rows), input_precision=DOT_PREC)
            else:
                keys = M + i0 - d0 - (BLOCK_N - 1) + offs_w  # key held by each window row
                kmask = (keys >= 0) & (keys < L)
                k_win = _load_rows(K + k_base, keys, skt, kmask, offs_d, skd, D)
                v_win = _load_rows(V + v_base, keys, svt, kmask, offs_d, svd, D)
                s = _skew_to_keys(tl.dot(qu, tl.trans(k_win), input_precision=DOT_PREC),
                                  BLOCK_M, BLOCK_N)
                do_vt = _skew_to_keys(tl.dot(do, tl.trans(v_win), input_precision=DOT_PREC),
                                      BLOCK_M, BLOCK_N)
            s += tl.dot(qv, tl.trans(r_tile), input_precision=DOT_PREC)
            s = s * qk_scale
            j2 = M + offs_m[:, None] - offs_c[None, :]  # key of each (query, distance)
            visible = (j2 >= 0) & (offs_c[None, :] < L) & (offs_m[:, None] < T)
            keep = visible
            if HAS_DROPOUT:
                keep = _keep_at(seed_lo, seed_hi, drop_thr, bh, offs_m[:, None], j2)
            _, ds = _probs_and_dscores(s, do_vt, lse2[:, None], delta[:, None], visible, keep, dropout_p,
                                   HAS_DROPOUT)
            acc += tl.dot(tl.trans(ds.to(qv.dtype)), qv, input_precision=DOT_PREC)

    out = (split.to(tl.int64) * L + offs_c[:, None]) * (H * D) + h * D + offs_d[None, :]
    tl.store(DR_PART + out, acc * scale, mask=(offs_c[:, None] < L) & (offs_d[None, :] < D))


@triton.jit(do_not_specialize=["T", "L", "seed_lo", "seed_hi", "drop_thr"])
def rel_attention_dropout_mask_kernel(KEEP, T, L, seed_lo, seed_hi, drop_thr,
                                      BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, SEED=None):
    """Grid (B*H, cdiv(T, BM), cdiv(L, BN)): the keep mask the kernels draw, as int8 [B, H, T, L].

    For tests and debugging: it lets a reference reproduce the kernels' dropout exactly. B*H is
    on grid axis 0, the one not capped at 65535.
    """
    if SEED is not None:  # a DeviceSeed: its base read on the device, add as the ints
        seed_lo, seed_hi = device_seed(SEED, seed_lo, seed_hi)
    bh = tl.program_id(0)
    offs_m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_j = tl.program_id(2) * BLOCK_N + tl.arange(0, BLOCK_N)
    keep = _keep_tile(seed_lo, seed_hi, drop_thr, bh, offs_m, tl.program_id(2) * BLOCK_N, BLOCK_M, BLOCK_N)
    ptr = KEEP + (bh.to(tl.int64) * T + offs_m[:, None]) * L + offs_j[None, :]
    tl.store(ptr, keep.to(tl.int8), mask=(offs_m[:, None] < T) & (offs_j[None, :] < L))
