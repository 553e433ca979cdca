"""Straight-through Gumbel-softmax sampling and top-k / top-p sampling: launchers, autograd, public ops.

Three layers, as every op here: the launchers ``gumbel_softmax_fwd`` / ``gumbel_softmax_bwd`` /
``gumbel_noise_fwd`` / ``sample_logits_fwd`` (Triton kernels on [R, V] rows), the autograd
``GumbelSoftmaxFunction``, and the public ``gumbel_softmax_st``, ``sample_logits`` and
``gumbel_noise``, which check their arguments and dispatch through ``use_triton`` to the kernels or
to the references in ``tgan.ops.naive`` (same signatures, same noise for the same seed).

Finiteness of the logits is checked on CPU tensors only (any backend): on CUDA the check would need
a host synchronisation every rollout step. There the kernels map NaN to -inf in the forward, so the
index is always a valid token id, and the backward returns NaN for such rows, so the fault shows in
the gradients. -inf logits are allowed everywhere (masked tokens). Use TGAN_BACKEND=torch with CPU
tensors to have the check while debugging.
"""
from __future__ import annotations

import math
import numbers

import torch

from tgan.ops.rel_attention import naive
from tgan.ops._backend import split64, use_triton

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
_DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# Rows are int32 inside the kernels (program_id * BLOCK_R + arange) and the first Philox counter
# word: below 2^31, less the largest row tile, neither overflows.
_MAX_ROWS = 2**31 - 2**17


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
    if seed is None:  # explicit noise: the RNG arguments are unused
        return 0, 0, 0, 0
    return (*split64(seed), *split64(offset))


def _rows(t: torch.Tensor, V: int) -> torch.Tensor:
    """[..., V] -> [R, V] with unit column stride (a view when possible)."""
    t2 = t.reshape(-1, V)
    return t2 if t2.stride(1) == 1 or V == 1 else t2.contiguous()


def _interpreted(t: torch.Tensor) -> bool:
    return not t.is_cuda


# ----------------------------------------------------------------------------------------------
# Launchers (Triton only; tensors already checked, flattened to rows of unit column stride)
# ----------------------------------------------------------------------------------------------

def gumbel_noise_fwd(R: int, V: int, seed: int, offset: int, device) -> torch.Tensor:
    """The kernels' Gumbel noise for (seed, offset) as an fp32 [R, V] tensor."""
    from tgan.ops.gumbel_softmax.kernel import gumbel_noise_kernel
    import triton

    out = torch.empty(R, V, dtype=torch.float32, device=device)
    if R == 0 or V == 0:
        return out
    block_r, block_v, _, num_warps = _config(R, V, _MAX_BLOCK_V, out.is_cuda)
    grid = (triton.cdiv(R, block_r), triton.cdiv(V, block_v))
    gumbel_noise_kernel[grid](out, R, V, out.stride(0), *_rng_args(seed, offset),
                              BLOCK_R=block_r, BLOCK_V=block_v, num_warps=num_warps)
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
        num_warps=num_warps,
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
        grad_y = grad_y if grad_y.stride(-1) == 1 else grad_y.contiguous()
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
                num_warps=num_warps, **words,
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
        num_warps=num_warps,
    )
    return out


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
        ctx.save_for_backward(logits, noise, embedding, index if embedding is not None else None)
        ctx.beta, ctx.seed, ctx.offset = beta, seed, offset
        ctx.mark_non_differentiable(index)
        return y, index

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_y, grad_index):
        logits, noise, embedding, index = ctx.saved_tensors
        grad_logits, grad_emb = gumbel_softmax_bwd(
            grad_y, logits, noise, ctx.seed, ctx.offset, ctx.beta, embedding, index,
            need_logits=ctx.needs_input_grad[0],
            need_embedding=embedding is not None and ctx.needs_input_grad[5],
        )
        return grad_logits, None, None, None, None, grad_emb


# ----------------------------------------------------------------------------------------------
# Checks and public ops
# ----------------------------------------------------------------------------------------------

def _check_logits(op, logits):
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{op}: logits must be a torch.Tensor [..., V], got {type(logits).__name__}")
    if logits.dtype not in _DTYPES:
        raise TypeError(f"{op}: logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"{op}: logits must be [..., V] with V >= 1, got shape {tuple(logits.shape)}")
    V = logits.shape[-1]
    R = logits.numel() // V
    if R >= _MAX_ROWS:
        raise ValueError(f"{op}: logits must have fewer than {_MAX_ROWS} rows (2^31 - 2^17: the "
                         f"kernels index rows in int32), got {R}; split the batch")
    if not logits.is_cuda and R > 0:
        # On the CPU this costs one pass; on CUDA it would cost a host sync per call (see top).
        x = logits.detach().reshape(R, V)
        nan, pinf = torch.isnan(x).any(dim=1), (x == float("inf")).any(dim=1)
        dead = ~torch.isfinite(x).any(dim=1)
        bad = nan | pinf | dead
        if bool(bad.any()):
            r = int(bad.nonzero()[0, 0])
            found = "NaN" if nan[r] else ("+inf" if pinf[r] else "no finite value")
            raise ValueError(
                f"{op}: logits must be finite or -inf with at least one finite value per row; "
                f"row {r} of the flattened [R={R}, V={V}] has {found}"
            )
    return V


def _check_number(op, name, value, low, low_inclusive):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{op}: {name} must be a Python number, got {type(value).__name__}")
    value = float(value)
    if not math.isfinite(value) or value < low or (value == low and not low_inclusive):
        op_s = ">=" if low_inclusive else ">"
        raise ValueError(f"{op}: {name} must be finite and {op_s} {low}, got {value}")
    return value


def _check_int(op, name, value, low, high):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{op}: {name} must be an int, got {type(value).__name__}")
    value = int(value)
    if not low <= value < high:
        raise ValueError(f"{op}: {name} must be in [{low}, {high}), got {value}")
    return value


def _check_noise(op, noise, logits):
    if not isinstance(noise, torch.Tensor):
        raise TypeError(f"{op}: noise must be a torch.Tensor, got {type(noise).__name__}")
    if noise.shape != logits.shape:
        raise ValueError(
            f"{op}: noise must have logits' shape {tuple(logits.shape)}, got {tuple(noise.shape)}"
        )
    if not noise.is_floating_point():
        raise TypeError(f"{op}: noise must be a floating tensor, got {noise.dtype}")
    if noise.device != logits.device:
        raise ValueError(f"{op}: noise is on {noise.device}, logits on {logits.device}")


def _resolve_rng(op, noise, seed, offset, generator):
    """(seed, offset) for the kernels: None, 0 with explicit noise; drawn from a generator if absent."""
    if noise is not None:
        if seed is not None or generator is not None:
            raise ValueError(f"{op}: give either noise or seed/generator, not both")
        return None, 0
    if seed is not None and generator is not None:
        raise ValueError(f"{op}: give either seed or generator, not both")
    if generator is not None:
        if not isinstance(generator, torch.Generator):
            raise TypeError(f"{op}: generator must be a torch.Generator, got {type(generator).__name__}")
        if generator.device.type != "cpu":
            raise ValueError(f"{op}: generator must be a CPU generator (no host sync), got {generator.device}")
    offset = _check_int(op, "offset", offset, 0, 2**64)
    if seed is None:
        seed = naive.draw_seed(generator)
    return _check_int(op, "seed", seed, 0, 2**64), offset


def gumbel_noise(shape, seed, offset=0, device=None):
    """The Gumbel noise the kernels draw for (seed, offset), materialised.

    Args:
        shape: [..., V]; rows are the flattened leading dims, as in ``gumbel_softmax_st``.
        seed: int in [0, 2^64). offset: int in [0, 2^64), a separate stream per value.
        device: where to build it (the kernel on CUDA, the reference, same Philox bits, on the CPU).

    Returns:
        float32 [..., V]; element (r, c) equals the g that ``gumbel_softmax_st(..., seed=seed,
        offset=offset)`` and ``sample_logits`` add to logits[r, c].
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or shape[-1] < 1 or any(s < 0 for s in shape):
        raise ValueError(f"gumbel_noise: shape must be [..., V] with V >= 1, got {shape}")
    seed = _check_int("gumbel_noise", "seed", seed, 0, 2**64)
    offset = _check_int("gumbel_noise", "offset", offset, 0, 2**64)
    probe = torch.empty(0, device=device)
    if use_triton("gumbel_noise", probe):
        V = shape[-1]
        return gumbel_noise_fwd(math.prod(shape) // V, V, seed, offset, probe.device).reshape(shape)
    return naive.gumbel_noise(shape, seed, offset, device=probe.device)


def gumbel_softmax_st(logits, beta, noise=None, seed=None, offset=0, embedding=None, generator=None):
    """Straight-through Gumbel-softmax sample: a hard one-hot forward, the softmax's gradient backward.

    Forward: index = argmax(logits + g), g ~ Gumbel(0, 1) i.i.d., and y_st = one_hot(index) (or,
    with ``embedding``, the row embedding[index], the [..., V] one-hot never being built).
    Backward: the gradient of s = softmax(beta * (logits + g)) at the incoming gradient,
    d logits = beta * s * (gin - <gin, s>), with gin = grad_y or grad_e @ embedding^T; the
    embedding's gradient is one_hot(index)^T @ grad_e. Exactly what autograd gives through
    ``y_hard - s.detach() + s`` (and ``(...) @ embedding``), without storing s: the backward
    regenerates g from (seed, offset). beta does not change the sample, only the gradient.

    Args:
        logits: [..., V] float32 / float16 / bfloat16 (computed in float32 inside).
        beta: inverse temperature, a Python number > 0.
        noise: optional explicit Gumbel noise, logits' shape (tests); excludes seed / generator.
        seed: int in [0, 2^64) for the in-kernel Philox noise; when neither seed nor noise is
            given one is drawn from ``generator`` (default: torch's default CPU generator, so
            ``torch.manual_seed`` makes runs reproducible; no device sync).
        offset: int in [0, 2^64): independent noise streams for the same seed.
        embedding: optional [V, E] table (e.g. the tied input embedding); its gradient flows.
        generator: optional CPU torch.Generator to draw the seed from.

    Returns:
        (y_st, index): y_st [..., V] one-hot in logits' dtype, or [..., E] in embedding's dtype;
        index [...] int64 (no gradient).
    """
    op = "gumbel_softmax_st"
    V = _check_logits(op, logits)
    beta = _check_number(op, "beta", beta, 0.0, low_inclusive=False)
    if noise is not None:
        _check_noise(op, noise, logits)
    seed, offset = _resolve_rng(op, noise, seed, offset, generator)
    if embedding is not None:
        if not isinstance(embedding, torch.Tensor):
            raise TypeError(f"{op}: embedding must be a torch.Tensor [V, E], got {type(embedding).__name__}")
        if embedding.dim() != 2 or embedding.shape[0] != V or embedding.shape[1] == 0:
            raise ValueError(f"{op}: embedding must be [V={V}, E>=1], got {tuple(embedding.shape)}")
        if embedding.dtype not in _DTYPES:
            raise TypeError(f"{op}: embedding must be float32, float16 or bfloat16, got {embedding.dtype}")
        if embedding.device != logits.device:
            raise ValueError(f"{op}: embedding is on {embedding.device}, logits on {logits.device}")
    tensors = [t for t in (logits, noise, embedding) if t is not None]
    if not use_triton(op, *tensors):
        return naive.gumbel_softmax_st(logits, beta, noise=noise, seed=seed, offset=offset,
                                       embedding=embedding)
    lead = logits.shape[:-1]
    emb = None
    if embedding is not None:
        emb = embedding if embedding.stride(1) == 1 else embedding.contiguous()
    y, index = GumbelSoftmaxFunction.apply(
        _rows(logits, V), beta, None if noise is None else _rows(noise, V), seed, offset, emb
    )
    return y.reshape(*lead, y.shape[-1]), index.reshape(lead)


@torch.no_grad()
def sample_logits(logits, temperature=1.0, top_k=0, top_p=1.0, noise=None, seed=None, offset=0,
                  generator=None):
    """Sample one token per row, Gumbel-max (no torch.multinomial): one launch, no host sync.

    The distribution is softmax(logits / temperature) restricted to the top_k largest logits (ties
    with the k-th kept), then to the nucleus: the smallest set of most probable remaining tokens
    whose probability reaches top_p (ties with its least probable member kept).

    Args:
        logits: [..., V] (typically [B, V]) float32 / float16 / bfloat16; -inf masks a token.
        temperature: >= 0; 0 is greedy (argmax, first of ties; top_k / top_p then irrelevant).
        top_k: int >= 0; 0 or >= V disables it.
        top_p: in (0, 1]; 1 disables it.
        noise, seed, offset, generator: as in ``gumbel_softmax_st`` (the same noise stream).

    Returns:
        int64 [...] token ids (LongTensor [B] for [B, V] logits).
    """
    op = "sample_logits"
    V = _check_logits(op, logits)
    temperature = _check_number(op, "temperature", temperature, 0.0, low_inclusive=True)
    top_k = _check_int(op, "top_k", top_k, 0, 2**31)
    top_p = _check_number(op, "top_p", top_p, 0.0, low_inclusive=False)
    if top_p > 1.0:
        raise ValueError(f"{op}: top_p must be in (0, 1], got {top_p}")
    if noise is not None:
        _check_noise(op, noise, logits)
    seed, offset = _resolve_rng(op, noise, seed, offset, generator)
    if not use_triton(op, *[t for t in (logits, noise) if t is not None]):
        return naive.sample_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                   noise=noise, seed=seed, offset=offset)
    out = sample_logits_fwd(_rows(logits, V), None if noise is None else _rows(noise, V), seed,
                            offset, temperature, top_k, top_p)
    return out.reshape(logits.shape[:-1])
