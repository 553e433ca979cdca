"""Straight-through Gumbel-softmax sampling and top-k / top-p sampling: checks, dispatch, public ops.

  - ``gumbel_softmax_st(logits [..., V], beta, ...) -> (y_st [..., V] or [..., E], index [...])``
  - ``sample_logits(logits [..., V], temperature, top_k, top_p, ...) -> index [...]``
  - ``gumbel_noise(shape [..., V], seed, offset) -> float32 [..., V]``

Each checks its arguments and dispatches through ``use_triton`` to the Triton path (``triton.py``:
launchers and autograd, over the kernels of ``kernel.py``) or to the references in ``naive.py``
(same signatures, same noise for the same seed).

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

from tgan.ops._backend import use_triton
from tgan.ops.gumbel_softmax import naive
from tgan.ops.gumbel_softmax.triton import (MAX_ROWS, GumbelSoftmaxFunction, as_rows, gumbel_noise_fwd,
                                            sample_logits_fwd)
from tgan.ops.philox import DeviceSeed, check_device_seed, draw_op_seed, same_device

__all__ = ["gumbel_noise", "gumbel_softmax_st", "sample_logits"]

_DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _host_value_checks(t: torch.Tensor) -> bool:
    """Whether the logits' values are checked here: on the CPU only (see the module docstring)."""
    return not t.is_cuda


def _check_logits(op, logits):
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{op}: logits must be a torch.Tensor [..., V], got {type(logits).__name__}")
    if logits.dtype not in _DTYPES:
        raise TypeError(f"{op}: logits must be float32, float16 or bfloat16, got {logits.dtype}")
    if logits.dim() < 1 or logits.shape[-1] == 0:
        raise ValueError(f"{op}: logits must be [..., V] with V >= 1, got shape {tuple(logits.shape)}")
    V = logits.shape[-1]
    R = logits.numel() // V
    if R >= MAX_ROWS:
        raise ValueError(f"{op}: logits must have fewer than {MAX_ROWS} rows (2^31 - 2^17: the "
                         f"kernels index rows in int32), got {R}; split the batch")
    if _host_value_checks(logits) and R > 0:
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


def _resolve_rng(op, noise, seed, offset, generator, device=None):
    """(seed, offset) for the kernels: None, 0 with explicit noise; drawn from a generator if absent.
    A ``DeviceSeed`` is checked against ``device`` (the op's tensors') and passed through."""
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
    offset = _check_offset(op, offset, device)
    if seed is None:
        seed = draw_op_seed(generator)  # a DeviceSeed inside a seed_stream on a device
    if isinstance(seed, DeviceSeed):
        return check_device_seed(op, seed, device), offset
    return _check_int(op, "seed", seed, 0, 2**64), offset


def _check_offset(op, offset, device):
    """An int in [0, 2^64), or an int64 tensor of one element on ``device`` (read there)."""
    if isinstance(offset, torch.Tensor):
        if offset.dtype != torch.int64 or offset.numel() != 1:
            raise TypeError(f"{op}: an offset tensor must be int64 of one element, got "
                            f"{offset.dtype} of {offset.numel()} elements")
        if device is not None and not same_device(offset.device, device):
            raise ValueError(f"{op}: the offset tensor is on {offset.device}, the op's tensors on "
                             f"{device}")
        return offset
    return _check_int(op, "offset", offset, 0, 2**64)


def _torch_seed(seed):
    """The torch reference's form of a seed: an int, or a DeviceSeed's value as a device tensor."""
    return seed.as_tensor() if isinstance(seed, DeviceSeed) else seed


def gumbel_noise(shape, seed, offset=0, device=None):
    """The Gumbel noise the kernels draw for (seed, offset), materialised.

    Args:
        shape: [..., V]; rows are the flattened leading dims, as in ``gumbel_softmax_st``.
        seed: int in [0, 2^64), or a ``DeviceSeed`` on ``device``. offset: int in [0, 2^64), a
            separate stream per value, or an int64 tensor of one element on ``device``.
        device: where to build it (the kernel on CUDA, the reference, same Philox bits, on the CPU).

    Returns:
        float32 [..., V]; element (r, c) equals the g that ``gumbel_softmax_st(..., seed=seed,
        offset=offset)`` and ``sample_logits`` add to logits[r, c].
    """
    shape = tuple(int(s) for s in shape)
    if len(shape) < 1 or shape[-1] < 1 or any(s < 0 for s in shape):
        raise ValueError(f"gumbel_noise: shape must be [..., V] with V >= 1, got {shape}")
    probe = torch.empty(0, device=device)
    if isinstance(seed, DeviceSeed):
        seed = check_device_seed("gumbel_noise", seed, probe.device)
    else:
        seed = _check_int("gumbel_noise", "seed", seed, 0, 2**64)
    offset = _check_offset("gumbel_noise", offset, probe.device)
    if use_triton("gumbel_noise", probe):
        V = shape[-1]
        return gumbel_noise_fwd(math.prod(shape) // V, V, seed, offset, probe.device).reshape(shape)
    return naive.gumbel_noise(shape, _torch_seed(seed), offset, device=probe.device)


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
            ``torch.manual_seed`` makes runs reproducible; no device sync). Or a
            ``tgan.ops.philox.DeviceSeed`` on logits' device, read by the kernels on the device
            (a step captured in a CUDA graph replays with new noise once its base is refilled).
        offset: int in [0, 2^64): independent noise streams for the same seed; or an int64
            tensor of one element on logits' device, read there (its value the offset).
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
    seed, offset = _resolve_rng(op, noise, seed, offset, generator, logits.device)
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
        return naive.gumbel_softmax_st(logits, beta, noise=noise, seed=_torch_seed(seed),
                                       offset=offset, embedding=embedding)
    lead = logits.shape[:-1]
    emb = None
    if embedding is not None:
        emb = embedding if embedding.stride(1) == 1 else embedding.contiguous()
    y, index = GumbelSoftmaxFunction.apply(
        as_rows(logits, V), beta, None if noise is None else as_rows(noise, V), seed, offset, emb
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
    seed, offset = _resolve_rng(op, noise, seed, offset, generator, logits.device)
    if not use_triton(op, *[t for t in (logits, noise) if t is not None]):
        return naive.sample_logits(logits, temperature=temperature, top_k=top_k, top_p=top_p,
                                   noise=noise, seed=_torch_seed(seed), offset=offset)
    out = sample_logits_fwd(as_rows(logits, V), None if noise is None else as_rows(noise, V), seed,
                            offset, temperature, top_k, top_p)
    return out.reshape(logits.shape[:-1])
