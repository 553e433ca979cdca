"""Triton path of ``rel_attention``: launchers, custom ops and the autograd Function.

Layers (as every op here): kernels in ``kernel.py`` -> custom ops
``tgan::rel_attention_fwd`` / ``tgan::rel_attention_bwd`` (opaque to torch.compile, with fake
implementations for tracing) -> ``RelAttentionFunction`` -> ``rel_attention`` below, called by the
public ``tgan.ops.rel_attention`` once the inputs are checked and the backend chose Triton.

Tiles: BLOCK_M queries x BLOCK_N keys (or distances, in the dr pass) with BLOCK_M <= BLOCK_N, so
the relative window of a tile pair (BLOCK_M + BLOCK_N - 1 rows of r) fits in 2*BLOCK_N rows. On a
GPU each kernel runs pinned tiles (`_DEFAULT_CONFIGS`), or with TGAN_TRITON_CONFIG=autotune the
autotuner picks its tiles and warps from its own list in `_KERNEL_CONFIGS`
(`_KERNEL_DECODE_CONFIGS` when T <= 16: a query tile is at least 16 rows, the smallest tl.dot). The
lists hold only configs that compile without spills for sm_90 with triton 3.9 and 3.6 at all of
`benchmarks/compile_report.py`'s shapes (bf16; D = 64, and the paper's D = 50 with dropout,
which the backward runs padded to 64 for segments, see `rel_attention_bwd`): 64 x 64 tiles make
every backward pass spill, 32 x 64 x 4 spills in the forward at D = 50 and in every backward
pass, 32 x 64 x 8 spills in dr and, under 3.6, in dq with dropout (in dk/dv it issues 1.33x
the MMA work its tile needs), 32 x 32 x 4 spills in dr; only
32 x 32 x 8 is spill-free in all four kernels, but its 8 warps on 32 x 32 tiles issue 1.2-1.7x
the MMA work a tile needs, so dk/dv and dq run 32 x 32 x 4 by default (benchmarks/RESULTS.md,
"Compiled code"). fp32 products in "ieee" precision (see
`_dot_precision`) run on FMA units and spill heavily: on a GPU fp32 is the exact path, not the
fast one. Keys: power-of-two buckets of T and M+T (a decoding loop whose cache grows by one token
does not re-tune every step), D, dropout, dtypes.
Under the Triton interpreter fixed 32 x 32 tiles (16 x 32 when T <= 16): its cost is per
operation, not per element, and 32 x 32 runs the CPU tests about twice as fast as 16 x 16.

``TGAN_TRITON_CONFIG`` chooses the tiles (each autotuned key compiles every config of a kernel's
list: 4 + 2 + 2 + 1 compiles per dtype/D/dropout combination):
  - ``default`` (the default): one config per kernel, `_DEFAULT_CONFIGS` (`_DECODE_DEFAULTS` when
    T <= 16), one compile per kernel and specialization, so that a cold start spends its time on
    work rather than on compiles;
  - ``autotune`` (on request): time every config of `_configs(T, name)` once per key, keep the
    fastest;
  - ``BMxBNxW`` (e.g. ``32x64x8``): BLOCK_M x BLOCK_N tiles with W warps for every kernel; the
    interpreter honours the tiles too, so any config's indexing can be checked on the CPU.
"""
from __future__ import annotations

import math
import os

from typing import Optional

import torch

from tgan.ops._backend import interpret_mode, split64

_LOG2E = 1.4426950408889634
_SUPPORTED = (torch.float32, torch.float16, torch.bfloat16)


def _next_pow2(n: int) -> int:
    return 1 << max(0, (n - 1).bit_length())


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _block_d(D: int) -> int:
    return max(16, _next_pow2(D))  # D padded to a power of two, masked in the kernels


def _blocks(T: int, D: int) -> tuple[int, int, int]:
    """(BLOCK_M, BLOCK_N, BLOCK_D) under the interpreter (GPU tiles: ``_configs``)."""
    return (16 if T <= 16 else 32), 32, _block_d(D)


# (BLOCK_M, BLOCK_N, num_warps) candidates; compile_report.py compiles them all
_CONFIGS = ((64, 64, 8), (32, 64, 8), (32, 64, 4), (32, 32, 4), (32, 32, 8))
_DECODE_CONFIGS = ((16, 64, 4), (16, 32, 4), (16, 64, 8), (16, 16, 8), (16, 32, 8))
# what the autotuner may pick per kernel: the spill-free candidates (see the module docstring)
_KERNEL_CONFIGS = {
    "rel_attention_fwd_kernel": ((64, 64, 8), (32, 64, 8), (32, 32, 4), (32, 32, 8)),
    "rel_attention_bwd_dkdv_kernel": ((32, 32, 4), (32, 32, 8)),
    "rel_attention_bwd_dq_kernel": ((32, 32, 4), (32, 32, 8)),
    "rel_attention_bwd_dr_kernel": ((32, 32, 8),),
    "rel_attention_bwd_fused_kernel": ((32, 32, 4), (32, 32, 8)),
}
# T <= 16 (decoding, and the backward of a rollout's one-token steps): the dr pass spills at
# 16 x 64 x 4, 16 x 32 x 4 and 16 x 64 x 8 under triton 3.6 (the last two not under 3.9);
# 16 x 32 x 8 and 16 x 16 x 8 do not, and 16 x 32 x 8 comes first (the default): its 8 warps
# duplicate 1.17x of the tile's MMA work, 16 x 16 x 8's 2.17x, and it models about 25% faster
_KERNEL_DECODE_CONFIGS = {
    "rel_attention_fwd_kernel": ((16, 64, 4), (16, 32, 4), (16, 64, 8)),
    "rel_attention_bwd_dkdv_kernel": ((16, 64, 4), (16, 32, 4), (16, 64, 8)),
    "rel_attention_bwd_dq_kernel": ((16, 64, 4), (16, 32, 4), (16, 64, 8)),
    "rel_attention_bwd_dr_kernel": ((16, 32, 8), (16, 16, 8)),
    "rel_attention_bwd_fused_kernel": ((16, 32, 8), (16, 16, 8)),
}

# The fused backward (TGAN_ATTN_BWD=fused) compiled for sm_90 under triton 3.9: 64 x 64 and every
# 32 x 64 config spill (0.3-2.5 KB), 32 x 32 x 4 and x 8 do not, and 32 x 32 x 4 issues no
# duplicate MMA work; for one-token steps 16 x 32 x 4, 16 x 64 x 4 and x 8 spill, 16 x 32 x 8 and
# 16 x 16 x 8 do not (`python benchmarks/compile_report.py --only bwd_fused`).
# TGAN_TRITON_CONFIG=default: the tiles the autotuner picked at T = M = 512 (bf16, D = 64; the
# autotune and attention stages of benchmarks/gpu_session.sh, timings in benchmarks/RESULTS.md):
# 64 x 64 x 8 for the forward, 32 x 32 x 4 for the backward passes. dr takes 32 x 32 x 8 instead,
# its only spill-free tiles at D = 50 with dropout; dq is spill-free at 32 x 32 x 4 since it keeps
# one accumulator.
_DEFAULT_CONFIGS = {
    "rel_attention_fwd_kernel": (64, 64, 8),
    "rel_attention_bwd_dkdv_kernel": (32, 32, 4),
    "rel_attention_bwd_dq_kernel": (32, 32, 4),
    "rel_attention_bwd_dr_kernel": (32, 32, 8),
    "rel_attention_bwd_fused_kernel": (32, 32, 4),
}
_DECODE_DEFAULTS = {name: cfgs[0] for name, cfgs in _KERNEL_DECODE_CONFIGS.items()}
_POW2_TILES = (16, 32, 64)


def config_mode() -> str | tuple[int, int, int]:
    """``TGAN_TRITON_CONFIG``: "default" (unset: one pinned config per kernel, so a cold start
    compiles each kernel once per specialization, and a growing context never re-tunes),
    "autotune" (on request: the autotuner times each kernel's spill-free candidates per power-of-two
    length bucket) or a (BLOCK_M, BLOCK_N, num_warps) tuple."""
    raw = os.environ.get("TGAN_TRITON_CONFIG", "default").strip().lower() or "default"
    if raw in ("autotune", "default"):
        return raw
    parts = raw.split("x")
    try:
        bm, bn, w = (int(x) for x in parts)
    except ValueError:
        bm = bn = w = -1
    if bm not in _POW2_TILES or bn not in _POW2_TILES or bm > bn or w not in (1, 2, 4, 8, 16):
        raise ValueError(
            "TGAN_TRITON_CONFIG must be 'autotune', 'default' or BMxBNxW with BM <= BN, both in "
            f"{_POW2_TILES}, and W in (1, 2, 4, 8, 16) warps (e.g. 32x64x8), got {raw!r}"
        )
    return bm, bn, w


def _configs(T: int, name: str):
    """The (BLOCK_M, BLOCK_N, num_warps) configs kernel ``name`` may run with (see config_mode)."""
    mode = config_mode()
    if mode == "autotune":
        return (_KERNEL_DECODE_CONFIGS if T <= 16 else _KERNEL_CONFIGS)[name]
    if mode == "default":
        return ((_DECODE_DEFAULTS if T <= 16 else _DEFAULT_CONFIGS)[name],)
    return (mode,)


def _dot_precision(dtype: torch.dtype) -> str:
    # fp32 products follow torch's own TF32 switch (off by default), so the fp32 kernel is as
    # exact as the fp32 reference unless the user opted into TF32 for matmuls.
    if dtype == torch.float32 and not torch.backends.cuda.matmul.allow_tf32:
        return "ieee"
    return "tf32"  # ignored for fp16/bf16 inputs


_TUNED: dict = {}


def _launch(name: str, grid, args, T: int, D: int, meta: dict, reset=()):
    """Launch kernel ``name``; ``grid(BLOCK_M, BLOCK_N)`` gives the grid for the chosen tiles.

    Under the interpreter: the fixed tiles of ``_blocks``. On a GPU: the pinned config, or with
    TGAN_TRITON_CONFIG=autotune autotuned over ``_configs(T, name)``; outputs are plain stores,
    and the buffers named in ``reset`` (written by fewer programs with larger tiles) are zeroed
    before each timed config.
    """
    from tgan.ops.rel_attention import kernel as kern

    fn = getattr(kern, name)
    if interpret_mode():
        bm, bn, _ = _interpreter_tiles(T, D)
        fn[grid(bm, bn)](*args, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=_block_d(D), **meta)
        return
    if config_mode() != "autotune":
        (bm, bn, w), = _configs(T, name)
        fn[grid(bm, bn)](*args, BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=_block_d(D), num_warps=w,
                         num_stages=2, **meta)
        return
    key = (name, T <= 16)
    if key not in _TUNED:
        import triton

        configs = [triton.Config({"BLOCK_M": bm, "BLOCK_N": bn}, num_warps=w, num_stages=2)
                   for bm, bn, w in _configs(T, name)]
        _TUNED[key] = triton.autotune(
            configs=configs, key=["T_BUCKET", "L_BUCKET", "D", "HAS_DROPOUT"],
            reset_to_zero=list(reset) or None,
        )(fn)
    _TUNED[key][lambda m: grid(m["BLOCK_M"], m["BLOCK_N"])](*args, BLOCK_D=_block_d(D), **meta)


def _interpreter_tiles(T: int, D: int) -> tuple[int, int, int]:
    """Tiles under the interpreter: ``_blocks``, or the BMxBNxW that TGAN_TRITON_CONFIG pins."""
    mode = config_mode()
    return mode if isinstance(mode, tuple) else _blocks(T, D)


def _du_in_dkdv(T: int, D: int) -> bool:
    """Whether the dk/dv pass sums du (query tiles of 32 rows or more, in both dk/dv and dq; see
    the kernels). The two passes must agree, so every tile they may run must be on one side."""
    if interpret_mode():
        rows = {_interpreter_tiles(T, D)[0]}
    else:
        rows = {c[0] for n in ("rel_attention_bwd_dkdv_kernel", "rel_attention_bwd_dq_kernel")
                for c in _configs(T, n)}
    sides = {bm >= 32 for bm in rows}
    if len(sides) != 1:
        raise RuntimeError(f"rel_attention backward: the dk/dv and dq tile lists mix query tiles of "
                           f"16 and of 32+ rows ({sorted(rows)}), which split du differently")
    return sides.pop()


def _min_block_m(T: int, D: int) -> int:
    """The smallest BLOCK_M the dq pass may run with (sizes its per-tile partial sums)."""
    if interpret_mode():
        return _interpreter_tiles(T, D)[0]
    return min(c[0] for c in _configs(T, "rel_attention_bwd_dq_kernel"))


def _buckets(T: int, L: int) -> list[int]:
    return [_next_pow2(T), _next_pow2(L)]


def _strides(*ts):
    out = []
    for t in ts:
        out.extend(t.stride())
    return out


def _extent(shape, stride) -> int:
    """Elements one (batch, head) slice's int32 offsets span: r is [R, H, D], the others
    [B, rows, H, D]; window rows reach up to 2*BLOCK_N (<= 128) past the last row, masked but
    addressed."""
    row_dim = 0 if len(shape) == 3 else 1
    extent = (shape[row_dim] + 128) * abs(stride[row_dim])
    return extent + sum(abs(stride[d]) * shape[d] for d in range(row_dim + 1, len(shape)))


def _check_offsets(**tensors) -> None:
    """The kernels index inside one (batch, head) slice with int32 offsets (see _load_rows)."""
    for name, t in tensors.items():
        extent = _extent(t.shape, t.stride())
        if extent >= 2**31:
            raise ValueError(
                f"rel_attention (triton): {name} {tuple(t.shape)} with strides {t.stride()} spans "
                f"{extent} elements per batch entry, beyond the kernels' int32 offsets; make it "
                "contiguous or split the batch"
            )


def _draw_seed():
    """A 63-bit Philox seed from torch's default CPU generator, so torch.manual_seed makes runs
    repeat; inside a ``seed_stream`` on a device, the stream's ``DeviceSeed``."""
    from tgan.ops.philox import draw_op_seed

    return draw_op_seed()


def _seed_kw(seed_base, dropout_p: float) -> dict:
    """The kernels' SEED keyword: a DeviceSeed's base, when there is dropout to draw."""
    return {"SEED": seed_base} if seed_base is not None and dropout_p > 0.0 else {}


def _rng_args(seed: int, dropout_p: float) -> list[int]:
    """The kernels' (seed_lo, seed_hi, drop_thr): the 64-bit seed's halves and the keep threshold
    floor(p * 2^32) on the 32 random bits, each as an int32 bit pattern (triton types them i32)."""
    from tgan.ops.rel_attention.naive import dropout_threshold

    return [*split64(seed), split64(dropout_threshold(dropout_p))[0]]


# -------------------------------------------------------------------------------------- launchers


def rel_attention_fwd(q, k, v, r, u, vb, scale: float, dropout_p: float, seed: int,
                      seed_base: torch.Tensor | None = None):
    """Forward launch. q [B, T, H, D]; k, v [B, L, H, D]; r [R, H, D]; u, vb [H, D]. With
    ``seed_base`` (a ``DeviceSeed``'s int64 base) the dropout seed is seed_base[0] + seed, read on
    the device.

    Returns (o [B, T, H, D] in q's dtype, lse2 [B, H, T] fp32, base-2 log-sum-exp of the scaled
    scores, which the backward uses to recompute probabilities).
    """
    B, T, H, D = q.shape
    L = k.shape[1]
    _check_offsets(q=q, k=k, v=v, r=r)
    u, vb = u.contiguous(), vb.contiguous()
    o = q.new_empty(q.shape)
    lse = torch.empty((B, H, T), device=q.device, dtype=torch.float32)
    # a one-token step reads r's rows by key (an index shift), not a window and a gather
    meta = dict(HAS_DROPOUT=dropout_p > 0.0, DOT_PREC=_dot_precision(q.dtype), ONE_QUERY=T == 1,
                **_seed_kw(seed_base, dropout_p))
    # too few (batch, head) programs to fill the device: split the keys too
    splits, split_kw = _key_splits(T, B * H, L, _block_d(D) + 2, q.device)
    meta.update(split_kw)
    for b0, b1 in _batch_chunks(B, H):
        n = b1 - b0
        qc, kc, vc, oc = q[b0:b1], k[b0:b1], v[b0:b1], o[b0:b1]
        args = [qc, kc, vc, r, u, vb, oc, lse[b0:b1], *_strides(qc, kc, vc, r, oc),
                H, T, L, L - T, D, r.shape[0], scale * _LOG2E, *_rng_args(seed, dropout_p), dropout_p,
                *_buckets(T, L),
                b0 * H]
        _launch("rel_attention_fwd_kernel",
                lambda bm, bn: (splits if splits > 1 else _cdiv(T, bm), n * H), args, T, D, meta)
    return o, lse


# a one-token forward splits its keys over at most this many programs per (batch, head)
_MAX_SPLITS = 16
_SPLIT_LOCKS: dict = {}


def _splits_for(n_bh: int, L: int, sms: int, block_n: int = 64) -> int:
    """Key splits of a one-token forward over ``n_bh`` (batch, head) pairs and L keys on ``sms``
    multiprocessors: where the pairs leave at least half the SMs idle, about one program per SM,
    at least one key tile each, at most _MAX_SPLITS; 1 (no split) where they occupy more than
    half (each split repeats the query's loads and adds a combine: compiled for sm_90, 128 pairs
    in 3 splits and 256 in 2 model slower than unsplit, benchmarks/RESULTS.md)."""
    want = sms // max(1, n_bh)  # about one program per SM
    s = min(_MAX_SPLITS, _cdiv(L, block_n), want)
    return s if s > 1 else 1


def _fwd_splits(n_bh: int, L: int, device: torch.device) -> int:
    """Key splits of a one-token step's forward and dq pass: ``_splits_for`` on a CUDA device;
    under the interpreter 2 where there are two key tiles (the split path is tested at no cost);
    1 elsewhere."""
    if device.type == "cuda":
        return _splits_for(n_bh, L, torch.cuda.get_device_properties(device).multi_processor_count)
    if interpret_mode():
        return min(2, _cdiv(L, _interpreter_tiles(1, 16)[1]))
    return 1


def _key_splits(T: int, n_bh: int, L: int, width: int, device: torch.device) -> tuple[int, dict]:
    """(splits, the split kernels' keywords) of a pass over keys with one program per (batch,
    head): for a one-token step ``_fwd_splits``, and when it splits, the partials' buffer PART
    (fp32 [n_bh, _MAX_SPLITS, width]), the counters LOCK, n_split and MAX_SPLITS; (1, {}) else."""
    splits = _fwd_splits(n_bh, L, device) if T == 1 else 1
    if splits == 1:
        return 1, {}
    part = torch.empty((n_bh, _MAX_SPLITS, width), device=device, dtype=torch.float32)
    return splits, dict(PART=part, LOCK=_split_lock(device, n_bh), n_split=splits,
                        MAX_SPLITS=_MAX_SPLITS)


def _split_lock(device: torch.device, n: int) -> torch.Tensor:
    """The split kernels' per-(batch, head) counters on ``device``, int32 zeros, kept between
    calls (the kernel zeroes a counter once its splits are combined), so a call launches no
    memset. On a CUDA device sized for every split it can take and never replaced (make the first
    split call outside a CUDA graph capture: graph capture records the allocation's zero fill
    without running it); elsewhere grown to the next power of two when a call needs more. One set
    per device: split launches on one device run in stream order (two streams launching them at
    once would share the counters)."""
    lock = _SPLIT_LOCKS.get(device)
    if lock is None or lock.numel() < n:
        size = 1 << max(0, n - 1).bit_length()
        if device.type == "cuda":
            # sized once for every split a CUDA device takes (pairs <= SMs / 2), never replaced:
            # a CUDA graph that captured a split launch keeps this address
            size = max(size, torch.cuda.get_device_properties(device).multi_processor_count)
        lock = _SPLIT_LOCKS[device] = torch.zeros(size, device=device, dtype=torch.int32)
    return lock


# CUDA's limit on grid axes 1 and 2; the kernels put B*H on axis 1
_MAX_GRID_YZ = 65535


def _batch_chunks(B: int, H: int) -> list[tuple[int, int]]:
    """[b0, b1) batch ranges with (b1 - b0) * H programs on grid axis 1 at most _MAX_GRID_YZ.

    Each launch passes bh0 = b0 * H, the global (batch, head) index of its first program, and
    dropout draws by the global index, so the chunks together draw the one mask of the batch."""
    if H > _MAX_GRID_YZ:
        raise ValueError(f"rel_attention (triton): {H} heads exceed the grid limit of "
                         f"{_MAX_GRID_YZ} programs per axis")
    per = max(1, _MAX_GRID_YZ // H)
    return [(b0, min(B, b0 + per)) for b0 in range(0, B, per)]


def _dr_splits(B: int, H: int, L: int, device: torch.device) -> int:
    """Batch splits of the dr pass: enough programs to fill the device (about 2 per SM)."""
    if device.type != "cuda":
        return min(B, 2)  # exercises the split path in interpreter tests at no cost
    sms = torch.cuda.get_device_properties(device).multi_processor_count
    n_tiles = _cdiv(L, 64)  # distance tiles at the largest BLOCK_N
    return max(1, min(B, math.ceil(2 * sms / max(1, H * n_tiles))))


def rel_attention_bwd(do, q, k, v, r, u, vb, o, lse, scale: float, dropout_p: float, seed: int,
                      compute_dr: bool = True, pad_head: bool | None = None,
                      seed_base: torch.Tensor | None = None):
    """Backward launch: (dq, dk, dv, dr, du, dvb), each shaped and typed as its input.

    dr is None when ``compute_dr`` is False (r needs no gradient: the dr pass, about a third of
    the backward's work, is skipped). Three passes: dk/dv (+ du's partial sums, for query tiles of
    32+ rows) per key tile, dq (+ partial sums of dq, or of du and dvb for 16-row tiles) per query
    tile, dr per distance tile (see ``kernel.py``).

    The passes read q + u and q + vb, formed once here in q's dtype (the rounding the forward's
    tiles use), instead of forming both in every iteration of the loops over query tiles.

    A head size other than the kernels' BLOCK_D (a power of two, at least 16; the paper's D = 50)
    gives rows that the kernels' loops load element by element, with an address and a mask each
    (compiled for sm_90, at D = 50 their loops are about twice as long as at D = 64). For segments
    (T > 16) the inputs are therefore padded with zeros to BLOCK_D, which puts every row on a
    16-byte boundary; the passes run at that size (zero columns add nothing to any product) and
    the gradients are cut back to D. One-token steps, which read each key once, keep their rows,
    and so do inputs whose padded copies would outgrow the kernels' int32 offsets. ``pad_head``:
    None for that rule, True or False to force it (benchmarks compare the two). ``seed_base``: as
    in ``rel_attention_fwd``.
    Working memory beyond the gradients: q + u and q + vb (2x q), the padded copies of k, v, r
    and dO and the padded gradients when padding, fp32 partial sums and dr's batch splits.
    """
    # delta_i = dO_i·O_i = sum_j P_ij dP_ij: one row reduction, cheaper here than in every pass
    delta = (do.float() * o.float()).sum(-1).transpose(1, 2).contiguous()  # [B, H, T]
    B, T, H, D = q.shape
    L = k.shape[1]
    pad = _block_d(D) - D
    if pad_head is None:
        padded_fit = all(_extent((B, n, H, D + pad), (n * H * (D + pad), H * (D + pad), D + pad, 1))
                         < 2**31 for n in (T, L))
        pad_head = T > 16 and padded_fit
    pad = pad if pad_head else 0
    # only r's first L rows are distances of some pair: the rest is neither read nor has gradient
    ins = [(q + u).to(q.dtype), (q + vb).to(q.dtype), k, v, r[:L], do]
    qu, qv, k, v, r_l, do = ([torch.nn.functional.pad(t, (0, pad)) for t in ins] if pad
                             else [*(t.contiguous() for t in ins[:2]), *ins[2:]])
    dq, dk, dv, dr_l, du, dvb = _bwd(qu, qv, k, v, r_l, do, lse, delta, scale, dropout_p, seed,
                                     compute_dr, seed_base)
    dr = None
    if dr_l is not None:
        dr = r.new_zeros(r.shape)
        dr[:L] = dr_l[..., :D]
    # unpadded, [..., :D] is the whole tensor and contiguous() returns it
    dq, dk, dv, du, dvb = (g[..., :D].contiguous() for g in (dq, dk, dv, du, dvb))
    return dq, dk, dv, dr, du.to(u.dtype), dvb.to(vb.dtype)


_BWD_MODES = ("split", "fused")


def backward_mode() -> str:
    """``TGAN_ATTN_BWD``: "split" (default; three passes, each owning its outputs, deterministic)
    or "fused" (one pass over key tiles, dq and dr by fp32 atomics; see ``kernel.py``)."""
    raw = os.environ.get("TGAN_ATTN_BWD", "split").strip().lower() or "split"
    if raw not in _BWD_MODES:
        raise ValueError(f"TGAN_ATTN_BWD must be one of {_BWD_MODES}, got {raw!r}")
    return raw


def _bwd(qu, qv, k, v, r, do, lse, delta, scale: float, dropout_p: float, seed: int,
         compute_dr: bool, seed_base: torch.Tensor | None = None):
    """The backward at the inputs' own head size, from q + u and q + vb (contiguous) and
    delta = rowsum(dO * O) [B, H, T]; du, dvb and dr's L rows ([L, H, D]) come back in fp32.
    Three passes, or the fused one (``backward_mode``)."""
    B, T, H, D = qu.shape
    L = k.shape[1]
    _check_offsets(qu=qu, k=k, v=v, r=r, do=do)
    # one-token steps: every pass reads r (and the dr pass K and V) by key, not by window
    meta = dict(HAS_DROPOUT=dropout_p > 0.0, DOT_PREC=_dot_precision(qu.dtype), ONE_QUERY=T == 1,
                **_seed_kw(seed_base, dropout_p))
    scalars = [H, T, L, L - T, D, r.shape[0], scale, scale * _LOG2E, *_rng_args(seed, dropout_p),
               dropout_p, *_buckets(T, L)]
    if backward_mode() == "fused":
        return _bwd_fused(qu, qv, k, v, r, do, lse, delta, scale, compute_dr, meta, scalars)

    dk = torch.empty((B, L, H, D), device=qu.device, dtype=k.dtype)
    dv = torch.empty((B, L, H, D), device=qu.device, dtype=v.dtype)
    dq = torch.empty((B, T, H, D), device=qu.device, dtype=qu.dtype)
    # one row of partial sums per (batch, query tile) from dq, and per (batch, key tile) from dk/dv
    # when it sums du (query tiles of 32 rows or more); sized for the smallest tiles, zero where
    # larger tiles write fewer rows
    dq_part = torch.zeros((B, _cdiv(T, _min_block_m(T, D)), H, D), device=qu.device,
                          dtype=torch.float32)
    du_in_dkdv = _du_in_dkdv(T, D)
    if du_in_dkdv:
        du_part, dvb_part = torch.zeros((B, _cdiv(L, 16), H, D), device=qu.device,
                                        dtype=torch.float32), dq_part  # dq writes no DVB_PART
    else:
        du_part, dvb_part = dq_part, torch.zeros_like(dq_part)  # dk/dv writes no DU_PART
    # a one-token step's dq pass walks every key tile per (batch, head): split like the forward's
    splits, split_kw = _key_splits(T, B * H, L, 2 * _block_d(D), qu.device)
    dq_meta = dict(meta, **split_kw)
    for b0, b1 in _batch_chunks(B, H):
        n, c = b1 - b0, slice(b0, b1)
        ins = [qu[c], qv[c], k[c], v[c], r, do[c], lse[c], delta[c]]
        st = _strides(qu[c], k[c], v[c], r, do[c])
        _launch("rel_attention_bwd_dkdv_kernel", lambda bm, bn: (_cdiv(L, bn), n * H),
                [*ins, dk[c], dv[c], du_part[c], *st, *scalars, b0 * H], T, D, meta,
                reset=("DU_PART",) if du_in_dkdv else ())
        _launch("rel_attention_bwd_dq_kernel",
                lambda bm, bn: (splits if splits > 1 else _cdiv(T, bm), n * H),
                [*ins, dq[c], dq_part[c], dvb_part[c], *st, *scalars, b0 * H], T, D, dq_meta,
                reset=("DQ_PART",) if du_in_dkdv else ("DQ_PART", "DVB_PART"))
    # dq = scale·(dS·K + dS_window·R): its content part summed over queries is du (q + u feeds
    # the content scores), the relative part dvb
    if du_in_dkdv:
        du = du_part.sum((0, 1)) * scale
        dvb = dq_part.sum((0, 1)) - du
    else:
        du, dvb = dq_part.sum((0, 1)), dvb_part.sum((0, 1))

    dr = None
    if compute_dr:
        splits = _dr_splits(B, H, L, qu.device)
        per = _cdiv(B, splits)
        splits = _cdiv(B, per)
        dr_part = torch.empty((splits, L, H, D), device=qu.device, dtype=torch.float32)
        _launch("rel_attention_bwd_dr_kernel", lambda bm, bn: (_cdiv(L, bn), H, splits),
                [qu, qv, k, v, r, do, lse, delta, dr_part, *_strides(qu, k, v, r, do), B,
                 *scalars, per], T, D, meta)
        dr = dr_part.sum(0)  # rows >= M+T are no distance of any pair
    return dq, dk, dv, dr, du, dvb


def _bwd_fused(qu, qv, k, v, r, do, lse, delta, scale: float, compute_dr: bool, meta: dict,
               scalars: list):
    """`_bwd` in one pass (`rel_attention_bwd_fused_kernel`): dk, dv in registers per key tile,
    dq and dr accumulated in fp32 by atomics, du from per-key-tile partial sums. ``meta`` and
    ``scalars``: the kernels' constexprs and scalar arguments, as `_bwd` forms them."""
    B, T, H, D = qu.shape
    L = k.shape[1]
    meta = dict(meta, COMPUTE_DR=bool(compute_dr))
    dk = torch.empty((B, L, H, D), device=qu.device, dtype=k.dtype)
    dv = torch.empty((B, L, H, D), device=qu.device, dtype=v.dtype)
    dq32 = torch.zeros((B, T, H, D), device=qu.device, dtype=torch.float32)
    dr32 = torch.zeros((L, H, D) if compute_dr else (1, H, D), device=qu.device, dtype=torch.float32)
    # per (batch, key tile) partial sums of du, sized for the smallest key tile
    du_part = torch.zeros((B, _cdiv(L, 16), H, D), device=qu.device, dtype=torch.float32)
    name = "rel_attention_bwd_fused_kernel"
    for b0, b1 in _batch_chunks(B, H):
        n, c = b1 - b0, slice(b0, b1)
        _launch(name, lambda bm, bn: (_cdiv(L, bn), n * H),
                [qu[c], qv[c], k[c], v[c], r, do[c], lse[c], delta[c], dq32[c], dk[c], dv[c], dr32,
                 du_part[c], *_strides(qu[c], k[c], v[c], r, do[c]), *scalars, b0 * H],
                T, D, meta, reset=("DQ", "DR", "DU_PART"))
    dq32 *= scale
    du = du_part.sum((0, 1)) * scale
    # dq = scale·(dS·K + dS_window·R): summed over queries, its content part is du, the rest dvb
    dvb = dq32.sum((0, 1)) - du
    dr = dr32 * scale if compute_dr else None
    return dq32.to(qu.dtype), dk, dv, dr, du, dvb


def rel_attention_dropout_mask(B: int, H: int, T: int, L: int, seed, dropout_p: float,
                               device) -> torch.Tensor:
    """The keep mask the kernels draw for (seed, dropout_p), bool [B, H, T, L], for tests (seed:
    an int, or a ``DeviceSeed`` on ``device``)."""
    from tgan.ops.philox import DeviceSeed, check_device_seed
    from tgan.ops.rel_attention.kernel import rel_attention_dropout_mask_kernel

    kw = {}
    if isinstance(seed, DeviceSeed):
        seed = check_device_seed("rel_attention_dropout_mask", seed, torch.device(device))
        seed, kw = seed.add, {"SEED": seed.base}

    bm = bn = 16 if interpret_mode() else 64
    if max(_cdiv(T, bm), _cdiv(L, bn)) > _MAX_GRID_YZ:
        raise ValueError(f"rel_attention_dropout_mask: T={T}, L={L} need more than {_MAX_GRID_YZ} "
                         f"tiles of {bm} on a grid axis; draw the mask for fewer positions")
    keep = torch.empty((B, H, T, L), device=device, dtype=torch.int8)
    rel_attention_dropout_mask_kernel[(B * H, _cdiv(T, bm), _cdiv(L, bn))](
        keep, T, L, *_rng_args(seed, dropout_p), BLOCK_M=bm, BLOCK_N=bn, **kw
    )
    return keep.bool()


# ------------------------------------------------------------------------------------ custom ops


@torch.library.custom_op("tgan::rel_attention_fwd", mutates_args=())
def _fwd_op(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, r: torch.Tensor, u: torch.Tensor,
            vb: torch.Tensor, scale: float, dropout_p: float, seed: int,
            seed_base: Optional[torch.Tensor] = None) -> tuple[torch.Tensor, torch.Tensor]:
    return rel_attention_fwd(q, k, v, r, u, vb, scale, dropout_p, seed, seed_base)


@_fwd_op.register_fake
def _(q, k, v, r, u, vb, scale, dropout_p, seed, seed_base=None):
    B, T, H, _ = q.shape
    return q.new_empty(q.shape), q.new_empty((B, H, T), dtype=torch.float32)


@torch.library.custom_op("tgan::rel_attention_bwd", mutates_args=())
def _bwd_op(do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, r: torch.Tensor,
            u: torch.Tensor, vb: torch.Tensor, o: torch.Tensor, lse: torch.Tensor, scale: float,
            dropout_p: float, seed: int, compute_dr: bool, seed_base: Optional[torch.Tensor] = None
            ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor,
                       torch.Tensor]:
    dq, dk, dv, dr, du, dvb = rel_attention_bwd(do, q, k, v, r, u, vb, o, lse, scale, dropout_p,
                                                seed, compute_dr, seed_base=seed_base)
    if dr is None:
        dr = r.new_empty((0,))  # custom ops return tensors; empty stands for "not computed"
    return dq, dk, dv, dr, du, dvb


@_bwd_op.register_fake
def _(do, q, k, v, r, u, vb, o, lse, scale, dropout_p, seed, compute_dr, seed_base=None):
    dr = r.new_empty(r.shape if compute_dr else (0,))
    return (q.new_empty(q.shape), k.new_empty(k.shape), v.new_empty(v.shape), dr,
            u.new_empty(u.shape), vb.new_empty(vb.shape))


class RelAttentionFunction(torch.autograd.Function):
    """Autograd for the fused kernels; saves q, k, v, r, u, vb, o and the log-sum-exp."""

    @staticmethod
    def forward(ctx, q, k, v, r, u, vb, scale: float, dropout_p: float, seed: int, seed_base=None):
        o, lse = _fwd_op(q, k, v, r, u, vb, scale, dropout_p, seed, seed_base)
        # the seed's base too: refilled in place before the backward, it would redraw another
        # mask; saved, autograd refuses that with an error instead
        ctx.save_for_backward(q, k, v, r, u, vb, o, lse, seed_base)
        ctx.scale, ctx.dropout_p, ctx.seed = scale, dropout_p, seed
        return o

    @staticmethod
    def backward(ctx, do):
        q, k, v, r, u, vb, o, lse, seed_base = ctx.saved_tensors
        compute_dr = bool(ctx.needs_input_grad[3])
        dq, dk, dv, dr, du, dvb = _bwd_op(do, q, k, v, r, u, vb, o, lse, ctx.scale, ctx.dropout_p,
                                          ctx.seed, compute_dr, seed_base)
        return dq, dk, dv, (dr if compute_dr else None), du, dvb, None, None, None, None


def rel_attention(q, k, v, r, u, vb, *, scale=None, dropout_p=0.0, dropout_seed=None):
    """Fused Triton relative attention (inputs already checked by ``tgan.ops.rel_attention``).

    Shapes: q [B, T, H, D]; k, v [B, M+T, H, D]; r [R >= M+T, H, D]; u, vb [H, D] -> [B, T, H, D].
    dtypes float32, float16, bfloat16. ``dropout_seed`` fixes the Philox stream of the in-kernel
    dropout (default: drawn from torch's CPU generator, so ``torch.manual_seed`` repeats runs): an
    int in [0, 2^63), or a ``tgan.ops.philox.DeviceSeed`` on q's device, which the kernels read on
    the device (forward and backward). ``rel_attention_dropout_mask`` returns the mask a seed gives.
    """
    if q.dtype not in _SUPPORTED:
        raise TypeError(
            f"rel_attention (triton): dtype {q.dtype} is not supported by the kernel; expected one "
            f"of {_SUPPORTED} (use TGAN_BACKEND=torch for the float64 reference)"
        )
    if q.dtype == torch.bfloat16 and interpret_mode():
        # the interpreter's tl.dot multiplies bfloat16 operands as raw bits (triton 3.9): its
        # results are garbage, so refuse rather than return them
        raise NotImplementedError(
            "rel_attention (triton): bfloat16 cannot run under the Triton interpreter "
            "(TRITON_INTERPRET=1); use float16/float32 there, or a CUDA device"
        )
    if not 0.0 <= float(dropout_p) < 1.0:
        raise ValueError(f"rel_attention (triton): dropout_p must be in [0, 1), got {dropout_p}")
    D = q.shape[-1]
    scale = float(D ** -0.5 if scale is None else scale)
    dropout_p = float(dropout_p)
    from tgan.ops.philox import DeviceSeed, check_device_seed

    base = None
    seed = _draw_seed() if dropout_seed is None and dropout_p > 0.0 else dropout_seed
    if dropout_p > 0.0 and isinstance(seed, DeviceSeed):
        base, seed = check_device_seed("rel_attention (triton)", seed, q.device)
    elif dropout_p > 0.0:
        seed = int(seed)
        if not 0 <= seed < 2**63:  # an int64 through the custom ops
            raise ValueError(f"rel_attention (triton): dropout_seed must be in [0, 2**63), "
                             f"got {dropout_seed}")
    else:
        seed = 0
    return RelAttentionFunction.apply(q, k, v, r, u, vb, scale, dropout_p, seed, base)
