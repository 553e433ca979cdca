"""A scalar log readable by TensorBoard without depending on tensorboard or protobuf.

An event file is a sequence of TFRecords (length, masked CRC-32C of the length, payload, masked
CRC-32C of the payload) whose payloads are ``Event`` protocol buffers. Scalars need only four
fields, encoded here by hand: Event.wall_time (1, double), Event.step (2, int64),
Event.file_version (3, string), Event.summary (5) -> Summary.value (1) -> {tag (1, string),
simple_value (2, float)}. Each point is also appended to ``metrics.jsonl`` for scripts.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import time


def _crc32c_table():
    poly = 0x82F63B78
    table = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ poly if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as TFRecord framing uses."""
    c = 0xFFFFFFFF
    for b in data:
        c = _TABLE[(c ^ b) & 0xFF] ^ (c >> 8)
    return c ^ 0xFFFFFFFF


def _masked(crc: int) -> int:
    return (((crc >> 15) | (crc << 17)) + 0xA282EAD8) & 0xFFFFFFFF


def _varint(n: int) -> bytes:
    out = bytearray()
    n &= (1 << 64) - 1
    while True:
        b = n & 0x7F
        n >>= 7
        if n:
            out.append(b | 0x80)
        else:
            out.append(b)
            return bytes(out)


def _field(num: int, wire: int) -> bytes:
    return _varint((num << 3) | wire)


def _bytes_field(num: int, payload: bytes) -> bytes:
    return _field(num, 2) + _varint(len(payload)) + payload


def encode_event(wall_time: float, step: int = 0, file_version: str | None = None,
                 scalars: dict | None = None) -> bytes:
    """Serialise one Event message."""
    msg = _field(1, 1) + struct.pack("<d", wall_time) + _field(2, 0) + _varint(step)
    if file_version is not None:
        msg += _bytes_field(3, file_version.encode())
    if scalars:
        summary = b"".join(
            _bytes_field(1, _bytes_field(1, tag.encode()) + _field(2, 5) + struct.pack("<f", float(v)))
            for tag, v in scalars.items()
        )
        msg += _bytes_field(5, summary)
    return msg


def frame(payload: bytes) -> bytes:
    """One TFRecord."""
    head = struct.pack("<Q", len(payload))
    return head + struct.pack("<I", _masked(crc32c(head))) + payload + struct.pack("<I", _masked(crc32c(payload)))


class ScalarLog:
    """Appends scalars to a TensorBoard event file and to metrics.jsonl in ``log_dir``."""

    def __init__(self, log_dir):
        os.makedirs(log_dir, exist_ok=True)
        name = f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}.{os.getpid()}"
        self.path = os.path.join(log_dir, name)
        self._f = open(self.path, "ab")
        self._j = open(os.path.join(log_dir, "metrics.jsonl"), "a")
        self._f.write(frame(encode_event(time.time(), 0, file_version="brain.Event:2")))
        self._f.flush()

    def scalars(self, step: int, values: dict, prefix: str = "") -> None:
        vals = {f"{prefix}{k}": float(v) for k, v in values.items()}
        self._f.write(frame(encode_event(time.time(), step, scalars=vals)))
        self._f.flush()
        self._j.write(json.dumps({"step": step, **vals}) + "\n")
        self._j.flush()

    def close(self) -> None:
        self._f.close()
        self._j.close()
