"""UploadTaskStream's chunks on the wire, without protobuf's copies of the bytes they carry.

A chunk after the first is an `UploadTaskChunk` with only `data` set: one tag byte, a varint length and the
bytes. Building and parsing it through protobuf copies those bytes twice on each side (message, then
serialised form; parse, then field access), which for a 50 MiB zip costs more than the transfer itself.
Here a data-only chunk is written and read directly (the reader hands out a view into the received
buffer); the first chunk, which carries the request, goes through protobuf as usual. Both forms are the
same bytes protobuf would produce, so either side may use protobuf instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from hivemind_tui.proto import nodepool_pb2 as pb

DATA_TAG = 0x12  # field 2 (data), wire type 2 (length-delimited)


@dataclass(frozen=True)
class Chunk:
    header: pb.UploadTaskRequest | None
    data: bytes | memoryview


def encode(chunk: pb.UploadTaskChunk | bytes) -> bytes:
    """A request message as protobuf writes it; bytes alone become a data-only chunk."""
    if isinstance(chunk, bytes):  # protobuf leaves an empty field out: so does this
        return b"".join((bytes((DATA_TAG,)), varint(len(chunk)), chunk)) if chunk else b""
    return chunk.SerializeToString()


def decode(raw: bytes) -> Chunk:
    if raw[:1] == bytes((DATA_TAG,)):
        length, start = _read_varint(raw, 1)
        if length >= 0 and start + length == len(raw):
            return Chunk(None, memoryview(raw)[start:])
    message = pb.UploadTaskChunk.FromString(raw)
    return Chunk(message.header if message.HasField("header") else None, message.data)


def varint(value: int) -> bytes:
    """Protobuf's base-128 varint (of a length, here and in the pool's encoded task listings)."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _read_varint(raw: bytes, pos: int) -> tuple[int, int]:
    """The varint at `pos` and the position after it; (-1, pos) when it is cut short or too long."""
    value = shift = 0
    for index in range(pos, min(pos + 10, len(raw))):
        value |= (raw[index] & 0x7F) << shift
        if raw[index] < 0x80:
            return value, index + 1
        shift += 7
    return -1, pos
