"""Philox4x32-10 (Salmon et al., SC'11): the counter-based generator behind every kernel's randomness.

One call maps a 128-bit counter (four uint32 words) under a 64-bit key (the seed) to four
independent uint32 words. The constants below are the only copy: ``kernel.py`` (Triton, for the
kernels) and ``naive.py`` (PyTorch, for references and tests) both read them, so the two give the
same bits for the same counter and key.

  - ``philox4x32(c0, c1, c2, c3, k0, k1)``: the torch twin, int64 tensors of uint32 words.
  - ``philox_bits(rows, V, seed, offset)``: the 32 random bits the kernels give element (r, c) of a
    [rows, V] problem: counter (r, c // 4, offset_lo, offset_hi), word c % 4.
  - ``draw_seed(generator)``: a seed drawn on the host (no device sync).
  - ``seed_stream(generator, device=None)``: a block in which ``draw_seed`` hands out seeds
    derived from one draw (a token loop draws once, not once per launch); on a device, the ops'
    own draws (``draw_op_seed``) get ``DeviceSeed``s instead, and nothing is drawn on the host.
  - ``DeviceSeed(base, add)``: a seed the kernels read from device memory (``base[0] + add``), so
    that a step captured in a CUDA graph replays with new noise once ``base`` is refilled;
    ``device_seed(device)`` draws one on the device. Every op that takes an int seed takes one.
"""
# round multipliers and Weyl key increments
PHILOX_M0, PHILOX_M1 = 0xD2511F53, 0xCD9E8D57
PHILOX_W0, PHILOX_W1 = 0x9E3779B9, 0xBB67AE85
MASK32 = 0xFFFFFFFF

from tgan.ops.philox.naive import (DeviceSeed, SeedStream, check_device_seed,  # noqa: E402
                                   device_seed, draw_op_seed, draw_seed, philox4x32, philox_bits,
                                   same_device, seed_stream)  # (naive needs the constants)

__all__ = ["PHILOX_M0", "PHILOX_M1", "PHILOX_W0", "PHILOX_W1", "MASK32", "DeviceSeed", "SeedStream",
           "check_device_seed", "device_seed", "draw_op_seed", "draw_seed", "philox4x32", "philox_bits",
           "same_device", "seed_stream"]
