"""Gumbel-softmax and sampling on the Triton path: the launchers and the autograd Function.

Launchers ``gumbel_softmax_fwd`` / ``gumbel_softmax_bwd`` / ``gumbel_noise_fwd`` /
``sample_logits_fwd`` run the kernels of ``kernel.py`` on [R, V] rows that the public ops
(``tgan.ops.gumbel_softmax``) have checked and flattened with ``as_rows``;
``GumbelSoftmaxFunction`` is the straight-through autograd around the first two. Triton is imported
by the launchers only, so this module imports without it.
"""
from __future__ import annotations

import torch

from tgan.ops._backend import split64
from tgan.ops.philox import DeviceSeed

# Widest column tile of one program; longer rows loop over chunks of this width. Beyond it the
# registers of a 4096-wide fp32 tile (16 per thread at 8 warps, several live tensors) would spill.
_MAX_BLOCK_V = 4096
# The fused embedding backward holds a [16, BLOCK_V] fp32 accumulator plus a [BLOCK_E, BLOCK_V]
# tile of E per program, hence narrower chunks: a row of up to 512 in one pass, wider rows in
# chunks of 128 over two passes (512- and 256-wide chunks spill 0.9-3 KB at 4 and 8 warps on
# sm_90 with the two passes' live tiles; 128 x 8 warps is spill-free under triton 3.6 and 3.9).
_MAX_BLOCK_V_EMB = 512
_CHUNK_V_EMB = 128
# Elements per program tile in the streaming kernels: 2048 fp32 = 16 per thread at 4 warps.
_TILE = 2048
# The same for the word-tile kernels (one-hot forward and backward): 4096 columns = 1024 Philox
# groups, 8 per thread at 4 warps, 16 rows of the 64-group chunk of V = 310 / 390 (fewer rows
# make the small last chunk's tile, replicated across threads, a larger share of the work).
_WORD_TILE = 4096
# The Triton interpreter pays per operation, not per element: it gets fewer, larger tiles.
_TILE_INTERPRET = 131072
# Rows are int32 inside the kernels (program_id * BLOCK_R + arange) and the first Philox counter
# word: below 2^31, less the largest row tile, neither overflows.
MAX_ROWS = 2**31 - 2**17


def _config(R: int, V: int, max_block_v: int, on_cuda: bool, min_rows: int = 1):
    """(BLOCK_R, BLOCK_V, NUM_CHUNKS, num_warps) for R rows of width V."""
    import triton

    block_v = min(max(triton.next_power_of_2(V), 16), max_block_v)
    num_chunks = triton.cdiv(V, block_v)
    tile = _TILE if on_cuda else _TILE_INTERPRET
    block_r = max(min_rows, min(max(tile // block_v, 1), triton.next_power_of_2(R)))
    tile = block_r * block_v
    num_warps = 4 if tile <= 2048 else (8 if tile <= 8192 else 16)
    return block_r, block_v, num_chunks, num_warps


def _prev_pow2(n: int) -> int:
    return 1 << (n.bit_length() - 1)


def _word_config(R: int, V: int, on_cuda: bool):
    """(BLOCK_R, NG_A, NUM_CHUNKS, NG_B, NG_C, FULL_A, FULL_B, num_warps) of the word-tile kernels
    for R rows of width V.

    A row's G = cdiv(V, 4) Philox groups (four columns each) are covered by NUM_CHUNKS chunks of
    NG_A groups, then a chunk of NG_B and one of NG_C groups (0: none), powers of two: NG_A and
    NG_B the largest that fit, NG_C the rest rounded up. V = 390: 64 + 32 + 2 = 98 groups, none
    padded (a 512-wide tile pads 24% of its lanes); V = 310: 64 + 8 + 8 = 80 for 78. FULL_A /
    FULL_B: the A / B chunks end inside [0, V) (their loads need no column mask).
    """
    import triton

    G = triton.cdiv(V, 4)
    max_groups = _MAX_BLOCK_V // 4
    if G > max_groups:
        ng_a, num_chunks = max_groups, G // max_groups
    else:
        ng_a, num_chunks = _prev_pow2(G), 1
    rest = G - ng_a * num_chunks
    ng_b = _prev_pow2(rest) if rest else 0
    rest -= ng_b
    ng_c = triton.next_power_of_2(rest) if rest else 0
    groups = (_WORD_TILE if on_cuda else _TILE_INTERPRET) // 4
    block_r = max(1, min(groups // ng_a, triton.next_power_of_2(R)))
    tile = block_r * ng_a * 4
    num_warps = 4 if tile <= 4096 else (8 if tile <= 8192 else 16)
    if num_chunks > 1:
        num_warps = 8  # a loop over chunks: with 4 warps it spills 8-40 bytes at V = 10000, 50000
    full_a = 4 * ng_a * num_chunks <= V
    full_b = 4 * (ng_a * num_chunks + ng_b) <= V
    return block_r, ng_a, num_chunks, ng_b, ng_c, full_a, full_b, num_warps


def _rng_args(seed, offset):
    """The kernels' (seed_lo, seed_hi, off_lo, off_hi): a DeviceSeed passes its add here and its
    base as the kernels' SEED, an offset tensor 0 here and itself as OFFSET (``_seed_kw``)."""
    if seed is None:  # explicit noise: the RNG arguments are unused
        return 0, 0, 0, 0
    if isinstance(seed, DeviceSeed):
        seed = seed.add
    if isinstance(offset, torch.Tensor):
        offset = 0
    return (*split64(seed), *split64(offset))


def _seed_kw(seed, offset=0) -> dict:
    """The kernels' SEED (a DeviceSeed's base) and OFFSET (an offset tensor), which they read on
    the device; {} for ints."""
    kw = {"SEED": seed.base} if isinstance(seed, DeviceSeed) else {}
    if seed is not None and isinstance(offset, torch.Tensor):
        kw["OFFSET"] = offset
    return kw


def as_rows(t: torch.Tensor, V: int) -> torch.Tensor:
    """[..., V] -> [R, V] with unit column stride (a view when possible)."""
    t2 = t.reshape(-1, V)
    return t2 if t2.stride(1) == 1 or V == 1 else t2.contiguous()


def _interpreted(t: torch.Tensor) -> bool:
    return not t.is_cuda


# ----------------------------------------------------------------------------------------------
# Launchers (Triton only; tensors already checked, flattened to rows of unit column stride)
# ----------------------------------------------------------------------------------------------

def gumbel_noise_fwd(R: int, V: int, seed, offset: int, device) -> torch.Tensor:
    """The kernels' Gumbel noise for (seed, offset) as an fp32 [R, V] tensor (seed: an int or a
    ``DeviceSeed``, as for every launcher here)."""
    from tgan.ops.gumbel_softmax.kernel import gumbel_noise_kernel
    import triton

    out = torch.empty(R, V, dtype=torch.float32, device=device)
    if R == 0 or V == 0:
        return out
    block_r, block_v, _, num_warps = _config(R, V, _MAX_BLOCK_V, out.is_cuda)
    grid = (triton.cdiv(R, block_r), triton.cdiv(V, block_v))
    gumbel_noise_kernel[grid](out, R, V, out.stride(0), *_rng_args(seed, offset),
                              BLOCK_R=block_r, BLOCK_V=block_v, num_warps=num_warps,
                              **_seed_kw(seed, offset))
    return out


def gumbel_from_bits(bits: torch.Tensor) -> torch.Tensor:
    """The kernels' map from 32 random bits to Gumbel noise, applied to ``bits`` (int32 [N],
    read as uint32) -> fp32 [N]: for checking the noise's accuracy at chosen inputs (the tails)."""
    from tgan.ops.gumbel_softmax.kernel import gumbel_from_bits_kernel
    import triton

    out = torch.empty(bits.shape, dtype=torch.float32, device=bits.device)
    n = bits.numel()
    if n:
        block = 1024
        gumbel_from_bits_kernel[(triton.cdiv(n, block),)](bits.contiguous(), out, n, BLOCK=block)
    return out


def gumbel_softmax_fwd(logits, noise, seed, offset, embedding=None):
    """Forward of the straight-through sample on rows.

    logits [R, V]; noise [R, V] or None (then seed, offset); embedding [V, E] or None.
    Returns (y, index): y [R, V] one-hot in logits' dtype, or [R, E] = embedding[index]; index [R]
    int64.
    """
    from tgan.ops.gumbel_softmax.kernel import gumbel_st_fwd_kernel
    import triton

    R, V = logits.shape
    index = torch.empty(R, dtype=torch.int64, device=logits.device)
    if embedding is None:
        out, E, stride_emb = torch.empty(R, V, dtype=logits.dtype, device=logits.device), 0, 0
    else:
        E = embedding.shape[1]
        out, stride_emb = torch.empty(R, E, dtype=embedding.dtype, device=logits.device), embedding.stride(0)
    if R == 0:
        return out, index
    block_r, ng_a, num_chunks, ng_b, ng_c, full_a, full_b, num_warps = _word_config(R, V, logits.is_cuda)
    gumbel_st_fwd_kernel[(triton.cdiv(R, block_r),)](
        logits, noise if noise is not None else logits, index, out,
        embedding if embedding is not None else logits,
        R, V, E, logits.stride(0), noise.stride(0) if noise is not None else 0, out.stride(0),
        stride_emb, *_rng_args(seed, offset),
        HAS_NOISE=noise is not None, OUT_EMB=embedding is not None, BLOCK_R=block_r,
        BLOCK_E=min(triton.next_power_of_2(max(E, 16)), 256),
        NG_A=ng_a, NUM_CHUNKS=num_chunks, NG_B=ng_b, NG_C=ng_c, FULL_A=full_a, FULL_B=full_b,
        num_warps=num_warps, **_seed_kw(seed, offset),
    )
    return out, index


def gumbel_softmax_bwd(grad_y, logits, noise, seed, offset, beta, embedding=None, index=None,
                       need_logits=True, need_embedding=False):
    """Backward of the straight-through sample on rows.

    grad_y: [R, V] (one-hot variant) or [R, E] (embedding variant, then embedding [V, E] and the
    forward's index [R] are given). Returns (grad_logits [R, V] or None, grad_embedding [V, E] or
    None) with grad_logits = beta * s * (gin - <gin, s>), s = softmax(beta * (logits + g)),
    gin = grad_y or grad_y @ embedding^T, and grad_embedding = one_hot(index)^T @ grad_y, the
    gradient autograd gives through the straight-through surrogate, whose value is the one-hot.
    """
    from tgan.ops.gumbel_softmax.kernel import gumbel_st_bwd_kernel
    import triton

    R, V = logits.shape
    grad_logits = grad_emb = None
    fused = embedding is not None
    if need_logits:
        # Rows at a row stride of their own width, from a fresh (16-byte aligned) buffer: triton
        # specialises on a pointer's alignment and a stride's divisibility, and a rollout's last
        # token of a segment gets its gradient as a slice of the stacked segment's ([B, S, V],
        # every other token's is a fresh sum), which would compile the kernel a second time.
        if (grad_y.stride(-1) != 1 or (R > 1 and grad_y.stride(0) != grad_y.shape[1])
                or grad_y.data_ptr() % 16):
            grad_y = grad_y.clone(memory_format=torch.contiguous_format)
        grad_logits = torch.empty(R, V, dtype=logits.dtype, device=logits.device)
        if R > 0:
            words = {}
            if fused:
                # tl.dot needs >= 16 rows; a [16, 512] fp32 accumulator per program.
                width = _MAX_BLOCK_V_EMB
                if V > _MAX_BLOCK_V_EMB:
                    width = min(_CHUNK_V_EMB, _MAX_BLOCK_V_EMB)
                block_r, block_v, num_chunks, num_warps = _config(R, V, width, logits.is_cuda,
                                                                  min_rows=16)
                num_warps = 8
                block_e = 16 if embedding.dtype == torch.float32 else 32
                E = embedding.shape[1]
                if grad_y.dtype != embedding.dtype:
                    grad_y = grad_y.to(embedding.dtype)
            else:  # word tiles; rows wider than _MAX_BLOCK_V in two passes
                block_r, ng_a, num_chunks, ng_b, ng_c, full_a, full_b, num_warps = _word_config(
                    R, V, logits.is_cuda)
                words = dict(NG_A=ng_a, NG_B=ng_b, NG_C=ng_c, FULL_A=full_a, FULL_B=full_b,
                             TWO_PASS=V > _MAX_BLOCK_V)
                block_v, block_e, E = 16, 16, 0  # unused by the word tiles
            gumbel_st_bwd_kernel[(triton.cdiv(R, block_r),)](
                logits, noise if noise is not None else logits, grad_y,
                embedding if fused else logits, grad_logits,
                R, V, E, logits.stride(0), noise.stride(0) if noise is not None else 0,
                grad_y.stride(0), embedding.stride(0) if fused else 0, grad_logits.stride(0),
                float(beta), *_rng_args(seed, offset),
                HAS_NOISE=noise is not None, FUSED_EMB=fused,
                DOT_FP32=fused and _interpreted(logits),
                # fp32 E: full fp32 products like torch.matmul's default, not TF32.
                DOT_PRECISION="ieee" if (not fused or embedding.dtype == torch.float32
                                          or _interpreted(logits)) else "tf32",
                BLOCK_R=block_r, BLOCK_V=block_v, BLOCK_E=block_e, NUM_CHUNKS=num_chunks,
                num_warps=num_warps, **words, **_seed_kw(seed, offset),
            )
    if need_embedding:
        # Scatter-add of R rows of E floats (atomics on CUDA, so the summation order varies).
        acc = torch.zeros(embedding.shape, dtype=torch.float32, device=embedding.device)
        grad_emb = acc.index_add_(0, index, grad_y.float()).to(embedding.dtype)
    return grad_logits, grad_emb


def sample_logits_fwd(logits, noise, seed, offset, temperature, top_k, top_p):
    """Sampled token per row of logits [R, V] -> int64 [R] (see ``sample_logits``)."""
    from tgan.ops.gumbel_softmax.kernel import sample_kernel
    import triton

    R, V = logits.shape
    out = torch.empty(R, dtype=torch.int64, device=logits.device)
    if R == 0:
        return out
    block_r, block_v, num_chunks, num_warps = _config(R, V, _MAX_BLOCK_V, logits.is_cuda)
    greedy = temperature == 0.0
    sample_kernel[(triton.cdiv(R, block_r),)](
        logits, noise if noise is not None else logits, out, R, V, logits.stride(0),
        noise.stride(0) if noise is not None else 0,
        0.0 if greedy else 1.0 / temperature, int(top_k), float(top_p), *_rng_args(seed, offset),
        HAS_NOISE=noise is not None, GREEDY=greedy, USE_TOP_K=0 < top_k < V,
        USE_TOP_P=top_p < 1.0, BLOCK_R=block_r, BLOCK_V=block_v, NUM_CHUNKS=num_chunks,
        num_warps=num_warps, **_seed_kw(seed, offset),
    )
    return out


@torch.library.custom_op("tgan::sample_logits_on_device", mutates_args=())
def sample_logits_on_device(logits: torch.Tensor, seed: torch.Tensor, offset: torch.Tensor,
                            temperature: float, top_k: int, top_p: float) -> torch.Tensor:
    """``sample_logits_fwd`` with the seed and the offset read on the device (int64 tensors of one
    element, ``seed[0]`` and ``offset[0]``), as one op that ``torch.compile`` keeps whole: what a
    decode step captured in a CUDA graph samples with (``tgan.sampling.StaticDecoder``), the same
    kernel and bits as ``sample_logits(logits, seed=int, offset=int)`` at those values."""
    return sample_logits_fwd(logits, None, DeviceSeed(seed), offset, temperature, top_k, top_p)


@sample_logits_on_device.register_fake
def _(logits, seed, offset, temperature, top_k, top_p):
    return logits.new_empty(logits.shape[:1], dtype=torch.int64)


# ----------------------------------------------------------------------------------------------
# Autograd
# ----------------------------------------------------------------------------------------------

class GumbelSoftmaxFunction(torch.autograd.Function):
    """Straight-through Gumbel-softmax on rows: forward one-hot (or embedding row), backward softmax.

    Saves the logits (held by autograd anyway), the explicit noise if any, the embedding and the
    [R] index for the embedding variant: no [R, V] tensor of its own.
    """

    @staticmethod
    def forward(ctx, logits, beta, noise, seed, offset, embedding):
        y, index = gumbel_softmax_fwd(logits, noise, seed, offset, embedding)
        # a DeviceSeed's base and an offset tensor are saved too: refilled in place before the
        # backward they would regenerate other noise; saved, autograd refuses that with an error
        base = seed.base if isinstance(seed, DeviceSeed) else None
        off = offset if isinstance(offset, torch.Tensor) else None
        ctx.save_for_backward(logits, noise, embedding, index if embedding is not None else None,
                              base, off)
        ctx.beta, ctx.seed, ctx.offset = beta, seed, offset
        ctx.mark_non_differentiable(index)
        return y, index

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_index):
        logits, noise, embedding, index, _, _ = ctx.saved_tensors
        grad_logits, grad_emb = gumbel_softmax_bwd(
            grad_y, logits, noise, ctx.seed, ctx.offset, ctx.beta, embedding, index,
            need_logits=ctx.needs_input_grad[0],
            need_embedding=embedding is not None and ctx.needs_input_grad[5],
        )
        return grad_logits, None, None, None, None, grad_emb
