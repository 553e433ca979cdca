"""@triton.jit kernels only (installed as ``tgan.kernels``).

No autograd and no device queries at import: launchers and autograd live in ``tgan.ops``.
"""
