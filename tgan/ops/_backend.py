"""The one place that chooses between the Triton kernels and the PyTorch references.

``TGAN_BACKEND`` = ``auto`` (default) | ``triton`` | ``torch``:
  - auto:   Triton for CUDA tensors, the pure-PyTorch reference otherwise;
  - triton: always the kernels; tensors on the CPU run under the Triton interpreter, which is only
            possible when ``TRITON_INTERPRET=1`` was set before triton was imported (tests do that);
            anywhere else a clear RuntimeError is raised, never a silent fallback;
  - torch:  always the references in ``naive.py`` of each op.
"""
from __future__ import annotations

import os
import warnings

import torch

_VALID = ("auto", "triton", "torch")


def backend_name() -> str:
    """The backend requested by ``TGAN_BACKEND`` (validated)."""
    name = os.environ.get("TGAN_BACKEND", "auto").strip().lower() or "auto"
    if name not in _VALID:
        raise ValueError(f"TGAN_BACKEND must be one of {_VALID}, got {name!r}")
    return name


_TRITON_ERROR: list = []  # the import error, once triton failed to import
_WARNED: set = set()


def triton_available() -> bool:
    """True when the triton package imports."""
    try:
        import triton  # noqa: F401
    except Exception as e:  # ImportError, or a broken install
        _TRITON_ERROR[:] = [e]
        return False
    return True


def _warn_no_triton(op: str) -> None:
    """Say once per op that TGAN_BACKEND=auto runs the reference on CUDA tensors: no triton."""
    if op not in _WARNED:
        _WARNED.add(op)
        err = _TRITON_ERROR[0] if _TRITON_ERROR else "unknown error"
        warnings.warn(
            f"{op}: triton did not import ({err}); TGAN_BACKEND=auto runs the PyTorch reference on "
            "these CUDA tensors, several times slower and with more memory. Install triton, or set "
            "TGAN_BACKEND=torch to choose the reference explicitly", RuntimeWarning, stacklevel=3)


def interpret_mode() -> bool:
    """True when the Triton interpreter (CPU execution of kernels) was requested."""
    return os.environ.get("TRITON_INTERPRET", "0") == "1"


_BOUNDS_FIX_DECIDED: list = []  # set once the interpreter was checked (and patched if needed)


def _interpreter_loop_bounds_fix() -> None:
    """Make the Triton interpreter take runtime loop bounds (``range(0, L, BN)``) with numpy >= 2.3.

    The interpreter holds kernel scalars as one-element arrays and triton 3.6's turns a loop bound
    into a Python int with ``int(array)``, which numpy 2.3 made an error for arrays of one
    dimension (later triton releases take the single element first). Applied only where the
    interpreter still has that conversion; it converts the same values. Decided once per process
    (reading the interpreter's source is not a per-call cost).
    """
    if _BOUNDS_FIX_DECIDED:
        return
    _BOUNDS_FIX_DECIDED.append(True)
    try:
        import inspect

        from triton.runtime import interpreter
    except Exception:  # no triton, or no interpreter in this release: nothing to fix
        return
    orig = getattr(interpreter, "_patch_lang_tensor", None)
    if orig is None:
        return
    try:
        needs = "int(self.handle.data)" in inspect.getsource(orig)
    except (OSError, TypeError):
        needs = False
    if not needs:
        return

    def patched(tensor, scope):
        orig(tensor, scope)
        scope.set_attr(tensor, "__index__", lambda self: int(self.handle.data.reshape(-1)[0])
                       if self.handle.data.size == 1 else int(self.handle.data))

    interpreter._patch_lang_tensor = patched


def use_triton(op: str, *tensors: torch.Tensor) -> bool:
    """Decide whether ``op`` runs its Triton kernel for these input tensors.

    Raises RuntimeError when ``TGAN_BACKEND=triton`` asks for something that cannot run here.
    """
    name = backend_name()
    if name == "torch":
        return False
    on_cuda = all(t.is_cuda for t in tensors if isinstance(t, torch.Tensor))
    if name == "auto":
        if on_cuda and not triton_available():
            _warn_no_triton(op)
            return False
        return on_cuda
    # name == "triton"
    if not triton_available():
        raise RuntimeError(f"{op}: TGAN_BACKEND=triton but triton is not installed")
    if not on_cuda and not interpret_mode():
        raise RuntimeError(
            f"{op}: TGAN_BACKEND=triton with CPU tensors needs TRITON_INTERPRET=1 set before "
            "triton is imported (the Triton interpreter); use TGAN_BACKEND=auto or torch on the CPU"
        )
    if not on_cuda:
        _interpreter_loop_bounds_fix()
    return True


def split64(x: int) -> tuple[int, int]:
    """(lo, hi) 32-bit halves of a 64-bit unsigned value, as signed int32 bit patterns.

    Signed int32 so that triton always types them i32 (a value >= 2^31 would become i64).
    """
    lo, hi = x & 0xFFFFFFFF, (x >> 32) & 0xFFFFFFFF
    return (lo - (1 << 32) if lo >= 1 << 31 else lo), (hi - (1 << 32) if hi >= 1 << 31 else hi)


_COMPILES = {"compiled": 0, "cache_hits": 0, "seconds": 0.0}
_WATCH: list = []  # "listener", "hooks" or "none", once decided
_PENDING: dict = {}  # JIT hook path: start times of compiles under way


def watch_triton_compiles() -> str:
    """Count Triton compiles from now on in this process (see ``triton_compiles``); idempotent.

    Uses triton's compilation listener where the release has one (it times each compile and tells
    a compile from a load out of the on-disk cache), else the JIT's before- and after-compile
    hooks (a load from the disk cache then counts as a compile, with its time). Chains a listener
    or hooks already installed. Returns how: "listener", "hooks" or "none" (no triton, or a
    release with neither). Kernels that torch.compile's inductor compiles in its worker
    processes are not counted (only this process's compiles are).
    """
    if _WATCH:
        return _WATCH[0]
    import time

    try:
        import triton
        knobs = triton.knobs
    except Exception:  # no triton, or a release without knobs
        _WATCH.append("none")
        return "none"
    comp = getattr(knobs, "compilation", None)
    if comp is not None and hasattr(comp, "listener"):
        previous = comp.listener

        def listener(*, src, metadata, metadata_group, times, cache_hit):
            if cache_hit:
                _COMPILES["cache_hits"] += 1
            else:
                _COMPILES["compiled"] += 1
                _COMPILES["seconds"] += times.total * 1e-6  # CompileTimes are in microseconds
            if previous is not None:
                previous(src=src, metadata=metadata, metadata_group=metadata_group, times=times,
                         cache_hit=cache_hit)
        comp.listener = listener
        _WATCH.append("listener")
        return "listener"
    rt = getattr(knobs, "runtime", None)
    if rt is None or not hasattr(rt, "jit_cache_hook") or not hasattr(rt, "jit_post_compile_hook"):
        _WATCH.append("none")
        return "none"
    before, after = rt.jit_cache_hook, rt.jit_post_compile_hook

    def pre(**kw):
        skip = before(**kw) if before is not None else False  # True skips the compile
        if not skip:
            _PENDING[id(kw.get("key"))] = time.perf_counter()
        return skip

    def post(**kw):
        t0 = _PENDING.pop(id(kw.get("key")), None)
        _COMPILES["compiled"] += 1
        if t0 is not None:
            _COMPILES["seconds"] += time.perf_counter() - t0
        return after(**kw) if after is not None else None
    rt.jit_cache_hook, rt.jit_post_compile_hook = pre, post
    _WATCH.append("hooks")
    return "hooks"


def triton_compiles() -> dict:
    """Triton compiles counted since ``watch_triton_compiles``: {"compiled", "cache_hits",
    "seconds"} (compile time in seconds; loads from the on-disk cache are not compiles)."""
    return dict(_COMPILES)
