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
the top-left corner); --no-header leaves the picture alone. In a JPEG
(MJPEG) it is the body of a comment segment right after the image's start
marker, and the payload is the rest of the image.
"""

import struct
import zlib
from dataclasses import dataclass

MAGIC = b"VCFH"
HEADER = struct.Struct("<4sIQQII")
HEADER_SIZE = HEADER.size  # 32
_BODY = struct.Struct("<4sIQQI")
# SOI, then a COM marker whose length (2 + 32) covers the header
JPEG_START = b"\xff\xd8\xff\xfe" + (2 + HEADER_SIZE).to_bytes(2, "big")
JPEG_HEADER_AT = len(JPEG_START)


def header_offset(frame) -> int:
    """Where a frame's header starts: in a JPEG, inside its first segment."""
    return JPEG_HEADER_AT if bytes(memoryview(frame)[:JPEG_HEADER_AT]) == JPEG_START else 0


def jpeg_with_room(jpeg: bytes) -> bytes:
    """A JPEG image with an empty comment segment for the header."""
    return JPEG_START + bytes(HEADER_SIZE) + jpeg[2:]


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


def unpack(frame, at: int = 0) -> Header:
    magic, length, seq, ts, pcrc, hcrc = HEADER.unpack_from(frame, at)
    if magic != MAGIC:
        raise CorruptHeader(f"bad magic {magic!r}")
    if zlib.crc32(memoryview(frame)[at : at + _BODY.size]) != hcrc:
        raise CorruptHeader("header checksum mismatch")
    return Header(seq, ts, length, pcrc)


def check(frame) -> tuple[Header | None, str | None]:
    """(header, problem): problem is None for a whole frame, else
    'corrupt' (no valid header) or 'torn' (payload does not match)."""
    at = header_offset(frame)
    try:
        header = unpack(frame, at)
    except (CorruptHeader, struct.error):
        return None, "corrupt"
    view = memoryview(frame)
    start = at + HEADER_SIZE
    if len(view) < start + header.payload_length:
        return header, "torn"
    if zlib.crc32(view[start : start + header.payload_length]) != header.payload_crc:
        return header, "torn"
    return header, None
