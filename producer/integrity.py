"""The integrity header: 32 bytes at the start of a frame that let a
consumer prove order, completeness and integrity.

    offset  size  field
    0       4     magic b"VCFH"
    4       4     payload length in bytes (the frame after the header)
    8       8     sequence number (0, 1, 2, ... as the producer queued)
    16      8     producer timestamp, CLOCK_MONOTONIC ns
    24      4     CRC-32 of the payload
    28      4     CRC-32 of bytes 0..27 (the header itself)

The header overwrites the first 32 bytes of the picture (a few pixels at
the top-left corner); --no-header leaves the picture alone.
"""

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"VCFH"
HEADER = struct.Struct("<4sIQQII")
HEADER_SIZE = HEADER.size  # 32
_BODY = struct.Struct("<4sIQQI")


def pack(sequence: int, timestamp_ns: int, payload_length: int, payload_crc: int) -> bytes:
    body = _BODY.pack(MAGIC, payload_length, sequence, timestamp_ns, payload_crc)
    return body + struct.pack("<I", zlib.crc32(body))


def payload_crc(frame) -> int:
    """CRC-32 of a frame's payload (a buffer of the whole frame)."""
    return zlib.crc32(memoryview(frame)[HEADER_SIZE:])


@dataclass
class Header:
    sequence: int
    timestamp_ns: int
    payload_length: int
    payload_crc: int


class CorruptHeader(ValueError):
    """No valid header: wrong magic or a header CRC mismatch."""


def unpack(frame) -> Header:
    magic, length, seq, ts, pcrc, hcrc = HEADER.unpack_from(frame, 0)
    if magic != MAGIC:
        raise CorruptHeader(f"bad magic {magic!r}")
    if zlib.crc32(memoryview(frame)[: _BODY.size]) != hcrc:
        raise CorruptHeader("header checksum mismatch")
    return Header(seq, ts, length, pcrc)


def check(frame) -> tuple[Header | None, str | None]:
    """(header, problem): problem is None for a whole frame, else
    'corrupt' (no valid header) or 'torn' (payload does not match)."""
    try:
        header = unpack(frame)
    except CorruptHeader:
        return None, "corrupt"
    view = memoryview(frame)
    if len(view) < HEADER_SIZE + header.payload_length:
        return header, "torn"
    if zlib.crc32(view[HEADER_SIZE : HEADER_SIZE + header.payload_length]) != header.payload_crc:
        return header, "torn"
    return header, None
