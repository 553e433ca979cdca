"""The one place that chooses between the Triton kernels and the PyTorch references.

``TGAN_BACKEND`` = ``auto`` (default) | ``triton`` | ``torch``:
  - auto:   Triton for CUDA tensors, the pure-PyTorch reference otherwise;
  - triton: always the kernels; tensors on the CPU run under the Triton interpreter, which is only
            possible when ``TRITON_INTERPRET=1`` was set before triton was imported (tests do that);
            anywhere else a clear RuntimeError is raised, never a silent fallback;
  - torch:  always the references in ``tgan.ops.naive``.
"""
from __future__ import annotations

import os

import torch

_VALID = ("auto", "triton", "torch")


def backend_name() -> str:
    """The backend requested by ``TGAN_BACKEND`` (validated)."""
    name = os.environ.get("TGAN_BACKEND", "auto").strip().lower() or "auto"
    if name not in _VALID:
        raise ValueError(f"TGAN_BACKEND must be one of {_VALID}, got {name!r}")
    return name


def triton_available() -> bool:
    """True when the triton package imports."""
    try:
        import triton  # noqa: F401
    except Exception:  # ImportError, or a broken install
        return False
    return True


def interpret_mode() -> bool:
    """True when the Triton interpreter (CPU execution of kernels) was requested."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


def use_triton(op: str, *tensors: torch.Tensor) -> bool:
    """Decide whether ``op`` runs its Triton kernel for these input tensors.

    Raises RuntimeError when ``TGAN_BACKEND=triton`` asks for something that cannot run here.
    """
    name = backend_name()
    if name == "torch":
        return False
    on_cuda = all(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
    if name == "auto":
        return on_cuda and triton_available()
    # name == "triton"
    if not triton_available():
        raise RuntimeError(f"{op}: TGAN_BACKEND=triton but triton is not installed")
    if not on_cuda and not interpret_mode():
        raise RuntimeError(
            f"{op}: TGAN_BACKEND=triton with CPU tensors needs TRITON_INTERPRET=1 set before "
            "triton is imported (the Triton interpreter); use TGAN_BACKEND=auto or torch on the CPU"
        )
    return True
