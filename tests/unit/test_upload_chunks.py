"""UploadTaskStream's chunk codec: the same bytes as protobuf, both ways."""

from __future__ import annotations

import os

import pytest
from google.protobuf.message import DecodeError

from hivemind_tui.core import upload_chunks
from hivemind_tui.proto import nodepool_pb2 as pb


@pytest.mark.parametrize("size", [0, 1, 127, 128, 300, 16383, 16384, 1024 * 1024, 3 * 1024 * 1024 + 7])
def test_data_chunk_is_what_protobuf_writes_and_reads(size: int) -> None:
    data = os.urandom(size)
    raw = upload_chunks.encode(data)
    assert raw == pb.UploadTaskChunk(data=data).SerializeToString()
    assert pb.UploadTaskChunk.FromString(raw).data == data
    decoded = upload_chunks.decode(raw)
    assert decoded.header is None and bytes(decoded.data) == data
    if size:
        assert isinstance(decoded.data, memoryview)  # a view into the received buffer, not a copy


def test_chunk_with_the_request_goes_through_protobuf() -> None:
    message = pb.UploadTaskChunk(header=pb.UploadTaskRequest(task_id="t", token="k", task_zip=b"PK"), data=b"z")
    decoded = upload_chunks.decode(upload_chunks.encode(message))
    assert decoded.header is not None and (decoded.header.task_id, decoded.header.task_zip) == ("t", b"PK")
    assert bytes(decoded.data) == b"z"


def test_a_data_tag_with_a_wrong_length_is_left_to_protobuf() -> None:
    with pytest.raises(DecodeError):
        upload_chunks.decode(bytes((upload_chunks.DATA_TAG, 5)) + b"abc")  # says 5, carries 3
    with pytest.raises(DecodeError):
        upload_chunks.decode(bytes((upload_chunks.DATA_TAG, 0x80)))  # a varint cut short
