"""The pool's side of the worker protocol, with this test playing the worker over real gRPC."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import grpc

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from tests.conftest import fast_settings
from tests.helpers import make_zip, start_pool, task_zip


class PlayedWorker(pb_grpc.WorkerNodeServiceServicer):
    def __init__(self, secret: str) -> None:
        self.secret = secret
        self.received: asyncio.Queue[tuple[str, bytes, str]] = asyncio.Queue()

    async def ExecuteTask(
        self, request: pb.ExecuteTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExecuteTaskResponse:
        given = dict((m.key, m.value) for m in context.invocation_metadata()).get("x-hivemind-worker-secret", "")
        await self.received.put((request.task_id, request.task_zip, given))
        return pb.ExecuteTaskResponse(success=True, message="ok")


async def test_a_played_worker_registers_runs_and_reports(tmp_path: Path) -> None:
    pool = await start_pool(fast_settings(tmp_path / "data"))
    played = PlayedWorker(pool.worker_secret)
    server = grpc.aio.server()
    pb_grpc.add_WorkerNodeServiceServicer_to_server(played, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        meta = pool.worker_metadata("played")
        reg = await pool.nodes.RegisterWorkerNode(
            pb.RegisterWorkerNodeRequest(
                node_id="played",
                hostname="test",
                port=port,
                cpu_cores=2,
                memory_gb=4,
                slots=1,
                advertise_host="127.0.0.1",
            ),
            metadata=meta,
        )
        assert reg.success
        assert (
            await pool.nodes.ReportStatus(pb.RunningStatusRequest(node_id="played", status="Idle"), metadata=meta)
        ).success
        token = await pool.add_user("alice")
        code = task_zip("print('hi')")
        assert (await pool.master.UploadTask(pb.UploadTaskRequest(task_id="t1", task_zip=code, token=token))).success
        task_id, data, secret = await asyncio.wait_for(played.received.get(), 5)
        assert (task_id, data, secret) == ("t1", code, pool.worker_secret)  # the pool proves itself to workers
        out = pb.TaskOutputUploadRequest(task_id="t1", output="first line\n", offset=0)
        assert (await pool.workers.TaskOutputUpload(out, metadata=meta)).success
        assert (await pool.workers.TaskOutputUpload(out, metadata=meta)).success  # a retry: not appended twice
        more = pb.TaskOutputUploadRequest(task_id="t1", output="second ünïcode line\n", offset=11)
        assert (await pool.workers.TaskOutputUpload(more, metadata=meta)).success
        assert (await pool.workers.TaskUsage(pb.TaskUsageRequest(task_id="t1", cpu_usage=42.0), metadata=meta)).success
        stranger = pool.worker_metadata("someone-else")
        refused = await pool.workers.TaskOutputUpload(
            pb.TaskOutputUploadRequest(task_id="t1", output="x"), metadata=stranger
        )
        assert not refused.success and "not running on this node" in refused.message
        result = make_zip({"output/r.txt": "42"})
        done = await pool.workers.TaskResultUpload(
            pb.TaskResultUploadRequest(task_id="t1", result_zip=result), metadata=meta
        )
        assert done.success and done.message == "ok: COMPLETED"
        log = await pool.master.GetTasklog(pb.TasklogRequest(task_id="t1", token=token))
        assert log.log == "first line\nsecond ünïcode line\n"
        since = await pool.master.GetTasklogSince(pb.TasklogSinceRequest(task_id="t1", token=token, offset=11))
        assert since.log == "second ünïcode line\n" and since.next_offset == len(log.log.encode())
        served = await pool.master.GetTaskResult(pb.GetTaskResultRequest(task_id="t1", token=token))
        with zipfile.ZipFile(io.BytesIO(served.result_zip)) as zf:
            assert zf.read("output/r.txt") == b"42"
        (info,) = (await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))).tasks
        assert info.status == "COMPLETED" and info.worker_ip == "played" and info.cpu_usage == 42.0
        late = await pool.workers.TaskResultUpload(pb.TaskResultUploadRequest(task_id="t1"), metadata=meta)
        assert not late.success  # a finished task takes no second result
    finally:
        await server.stop(0)
        await pool.close()


async def test_log_reads_never_split_a_character(tmp_path: Path) -> None:
    from hivemind_tui.nodepool.storage import _read_from

    path = tmp_path / "x.log"
    path.write_bytes("aé€😀b".encode())
    nxt, parts = 0, []
    while True:
        chunk, new = _read_from(path, nxt, 2)  # less than one character: still progresses
        if new == nxt:
            break
        parts.append(chunk)
        nxt = new
    assert "".join(parts) == "aé€😀b"
