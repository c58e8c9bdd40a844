"""MasterNodeService and NodeManagerService of the embedded pool: uploads, isolation, nodes, restart."""

from __future__ import annotations

import asyncio
import os
import stat
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from hivemind_tui.core.sqlite_db import DirectDatabase
from hivemind_tui.nodepool import scheduler
from hivemind_tui.nodepool.storage import MIGRATIONS, PoolPaths, PoolStorage
from hivemind_tui.proto import nodepool_pb2 as pb
from tests.conftest import fast_settings
from tests.helpers import FakeClock, Pool, files_in, make_zip, start_pool, task_zip


@pytest.fixture
async def pool(tmp_path: Path) -> AsyncIterator[Pool]:
    running = await start_pool(
        fast_settings(
            tmp_path / "data", max_upload_bytes=256 * 1024, max_unzipped_bytes=8 * 1024 * 1024, max_zip_ratio=50
        ),
        FakeClock(),
    )
    yield running
    await running.close()


def special_member_zip(name: str, mode: int, content: str) -> bytes:
    """A zip with main.py and one member that is not a regular file (a symlink, a device)."""
    import io

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("main.py", "print(1)")
        member = zipfile.ZipInfo(name)
        member.external_attr = mode << 16
        zf.writestr(member, content)
    return buffer.getvalue()


BAD_UPLOADS = [
    ("bad id", dict(task_id="a/b"), "INVALID_TASK"),
    ("dots", dict(task_id="a..b"), "INVALID_TASK"),
    ("long id", dict(task_id="x" * 129), "INVALID_TASK"),
    ("non-ascii id", dict(task_id="tâche"), "INVALID_TASK"),
    ("not a zip", dict(task_zip=b"plain text"), "INVALID_TASK"),
    ("no main", dict(task_zip=make_zip({"src/main.py": "x"})), "INVALID_TASK: no main.py at the root"),
    ("absolute", dict(task_zip=make_zip({"main.py": "x", "/etc/cron.d/x": "y"})), "INVALID_TASK"),
    ("dotdot", dict(task_zip=make_zip({"main.py": "x", "../../x": "y"})), "INVALID_TASK"),
    ("symlink", dict(task_zip=special_member_zip("evil", stat.S_IFLNK | 0o777, "/etc/passwd")), "INVALID_TASK"),
    ("device", dict(task_zip=special_member_zip("dev", stat.S_IFCHR | 0o666, "")), "INVALID_TASK"),
    ("bomb ratio", dict(task_zip=make_zip({"main.py": "x", "zeros": b"\0" * (4 * 1024 * 1024)})), "INVALID_TASK"),
    ("too big", dict(task_zip=make_zip({"main.py": os.urandom(300 * 1024)}, zipfile.ZIP_STORED)), "TOO_LARGE"),
    ("negative memory", dict(memory_gb=-1), "INVALID_TASK"),
    ("negative gpu", dict(gpu_score=-3), "INVALID_TASK"),
    ("dot id", dict(task_id="."), "INVALID_TASK: task id must start with a letter or digit"),
    ("hidden id", dict(task_id=".hidden"), "INVALID_TASK: task id must start with a letter or digit"),
    ("dash id", dict(task_id="-rf"), "INVALID_TASK: task id must start with a letter or digit"),
    ("priority too high", dict(priority=2147483647), "INVALID_ARGUMENT: priority"),
    ("priority too low", dict(priority=-1001), "INVALID_ARGUMENT: priority"),
    ("long location", dict(location="x" * 5000), "INVALID_ARGUMENT: location"),
]


@pytest.mark.parametrize(("name", "fields", "code"), BAD_UPLOADS, ids=[b[0] for b in BAD_UPLOADS])
async def test_bad_upload_stores_nothing(pool: Pool, name: str, fields: dict, code: str) -> None:
    token = await pool.add_user("alice")
    request = {"task_id": "t-1", "task_zip": task_zip(), "token": token, **fields}
    reply = await pool.master.UploadTask(pb.UploadTaskRequest(**request))
    assert not reply.success and reply.message.startswith(code), reply.message
    listed = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))
    assert listed.success and list(listed.tasks) == []
    assert files_in(pool.server.paths.tasks) == set()


async def test_viewer_and_bad_token_cannot_upload(pool: Pool) -> None:
    viewer = await pool.add_user("vic", role="viewer")
    reply = await pool.master.UploadTask(pb.UploadTaskRequest(task_id="v1", task_zip=task_zip(), token=viewer))
    assert reply.message.startswith("PERMISSION_DENIED")
    reply = await pool.master.UploadTask(pb.UploadTaskRequest(task_id="v1", task_zip=task_zip(), token="x"))
    assert reply.message == "INVALID_TOKEN"
    assert files_in(pool.server.paths.tasks) == set()


def chunked(request: pb.UploadTaskRequest, zipped: bytes, parts: int) -> list[pb.UploadTaskChunk]:
    """The request carrying the zip's first bytes, then the rest in `parts` data chunks."""
    head, rest = zipped[:100], zipped[100:]
    size = -(-len(rest) // parts)
    header = pb.UploadTaskRequest()
    header.CopyFrom(request)
    header.task_zip = head
    return [
        pb.UploadTaskChunk(header=header),
        *(pb.UploadTaskChunk(data=rest[i : i + size]) for i in range(0, len(rest), size)),
    ]


async def test_upload_stream_in_chunks_stores_the_zip(pool: Pool) -> None:
    token = await pool.add_user("alice")
    zipped = make_zip({"main.py": "print(1)", "data.bin": os.urandom(150 * 1024)}, zipfile.ZIP_STORED)
    request = pb.UploadTaskRequest(task_id="s-1", token=token, priority=2, task_type="simulation")
    reply = await pool.master.UploadTaskStream(iter(chunked(request, zipped, 7)))
    assert reply.success, reply.message
    (info,) = (await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))).tasks
    assert (info.task_id, info.status, info.priority, info.task_type) == ("s-1", "PENDING", 2, "simulation")
    assert (pool.server.paths.tasks / "s-1.zip").read_bytes() == zipped
    assert files_in(pool.server.paths.tasks) == {"s-1.zip"}


def stream_refusals() -> list[tuple[str, list[pb.UploadTaskChunk] | None, str]]:
    good = pb.UploadTaskRequest(task_id="s-2")
    big = make_zip({"main.py": os.urandom(300 * 1024)}, zipfile.ZIP_STORED)
    return [
        ("no request first", [pb.UploadTaskChunk(data=task_zip())], "INVALID_ARGUMENT"),
        ("request twice", [*chunked(good, task_zip(), 1), pb.UploadTaskChunk(header=good)], "INVALID_ARGUMENT"),
        ("empty stream", [], "INVALID_ARGUMENT"),
        ("too big in small chunks", chunked(good, big, 10), "TOO_LARGE"),
        ("not a zip", chunked(good, b"plain text" * 100, 3), "INVALID_TASK"),
        ("no main", chunked(good, make_zip({"src/main.py": "x"}), 2), "INVALID_TASK: no main.py at the root"),
        ("bad id", chunked(pb.UploadTaskRequest(task_id="a/b"), task_zip(), 2), "INVALID_TASK"),
    ]


@pytest.mark.parametrize(("name", "chunks", "code"), stream_refusals(), ids=[r[0] for r in stream_refusals()])
async def test_bad_upload_stream_stores_nothing(pool: Pool, name: str, chunks: list, code: str) -> None:
    token = await pool.add_user("alice")
    for chunk in chunks:
        if chunk.HasField("header"):
            chunk.header.token = token
    reply = await pool.master.UploadTaskStream(iter(chunks))
    assert not reply.success and reply.message.startswith(code), reply.message
    assert list((await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))).tasks) == []
    assert files_in(pool.server.paths.tasks) == set()


async def test_upload_stream_refuses_before_the_bytes(pool: Pool) -> None:
    """Who may upload and whether the id is free are answered from the first chunk."""
    token = await pool.add_user("alice")
    viewer = await pool.add_user("vic", role="viewer")
    assert (await pool.master.UploadTask(pb.UploadTaskRequest(task_id="s-3", task_zip=task_zip(), token=token))).success

    def endless(request: pb.UploadTaskRequest):
        yield pb.UploadTaskChunk(header=request)
        while True:  # never ends by itself: only an early answer stops it
            yield pb.UploadTaskChunk(data=b"x" * 1024)

    for request, code in (
        (pb.UploadTaskRequest(task_id="s-3", token=token), "TASK_EXISTS"),
        (pb.UploadTaskRequest(task_id="s-4", token=viewer), "PERMISSION_DENIED"),
        (pb.UploadTaskRequest(task_id="s-5", token="nope"), "INVALID_TOKEN"),
    ):
        reply = await asyncio.wait_for(pool.master.UploadTaskStream(endless(request)), 10)
        assert reply.message.startswith(code), reply.message
    assert files_in(pool.server.paths.tasks) == {"s-3.zip"}


async def test_upload_stream_cut_midway_leaves_nothing(pool: Pool) -> None:
    token = await pool.add_user("alice")
    sent = asyncio.Event()

    async def then_stall():
        yield pb.UploadTaskChunk(header=pb.UploadTaskRequest(task_id="s-6", token=token, task_zip=task_zip()[:50]))
        yield pb.UploadTaskChunk(data=b"y" * 4096)
        sent.set()
        await asyncio.Event().wait()  # the client goes silent; the call is then cancelled

    call = pool.master.UploadTaskStream(then_stall())
    await asyncio.wait_for(sent.wait(), 10)
    for _ in range(100):  # the staged file appears once the pool has the first bytes
        if files_in(pool.server.paths.tasks):
            break
        await asyncio.sleep(0.02)
    assert any(name.endswith(".upload") for name in files_in(pool.server.paths.tasks))
    call.cancel()
    for _ in range(250):
        if not files_in(pool.server.paths.tasks):
            break
        await asyncio.sleep(0.02)
    assert files_in(pool.server.paths.tasks) == set()
    assert list((await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))).tasks) == []


async def test_an_upload_cancelled_while_its_thread_writes_leaves_nothing(pool: Pool) -> None:
    """A deadline can cancel an upload while a thread still writes the staged zip: the upload waits for the
    thread to end, then removes what it wrote."""
    import threading

    from hivemind_tui.nodepool.accounts import Caller
    from hivemind_tui.nodepool.tasks import NewTask

    assert pool.server.parts is not None
    book = pool.server.parts.tasks
    release, writing = threading.Event(), threading.Event()
    staged = pool.server.paths.tasks / ".late.zip.0.upload"

    def slow_stage() -> int:
        writing.set()
        release.wait(10)
        staged.write_bytes(b"written after the cancel")
        return 24

    upload = asyncio.create_task(
        book._stage_and_commit(Caller("alice", "operator"), NewTask("late"), staged, asyncio.to_thread(slow_stage))
    )
    while not writing.is_set():
        await asyncio.sleep(0.01)
    upload.cancel()
    for _ in range(10):  # the cancel is delivered on the loop's next turns
        await asyncio.sleep(0)
    assert not upload.done()  # it waits for the thread
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await upload
    assert files_in(pool.server.paths.tasks) == set()


async def test_upload_list_and_extension_fields(pool: Pool) -> None:
    token = await pool.add_user("alice")
    reply = await pool.master.UploadTask(
        pb.UploadTaskRequest(
            task_id="job-1",
            task_zip=task_zip(),
            token=token,
            memory_gb=2,
            priority=3,
            task_type="simulation",
            parent_task_id="parent-1",
        )
    )
    assert reply.success, reply.message
    again = await pool.master.UploadTask(pb.UploadTaskRequest(task_id="job-1", task_zip=task_zip(), token=token))
    assert again.message.startswith("TASK_EXISTS")
    bob = await pool.add_user("bob")
    taken = await pool.master.UploadTask(pb.UploadTaskRequest(task_id="job-1", task_zip=task_zip(), token=bob))
    assert taken.message.startswith("TASK_EXISTS")
    listed = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))
    (info,) = listed.tasks
    assert (info.task_id, info.status, info.owner, info.priority, info.task_type, info.parent_task_id) == (
        "job-1",
        "PENDING",
        "alice",
        3,
        "simulation",
        "parent-1",
    )
    assert info.created_at == pool.clock.now and listed.server_time == pool.clock.now
    assert files_in(pool.server.paths.tasks) == {"job-1.zip"}


async def test_updated_since_and_limit(pool: Pool) -> None:
    token = await pool.add_user("alice")
    for i in range(3):
        await pool.master.UploadTask(pb.UploadTaskRequest(task_id=f"t{i}", task_zip=task_zip(), token=token))
        await pool.server.scheduler.assign()  # settles the wait reason now, not at a later clock
        pool.clock.advance(10)
    since = pool.clock.now - 15
    recent = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, updated_since=since))
    assert [t.task_id for t in recent.tasks] == ["t2"]
    limited = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, limit=2))
    assert [t.task_id for t in limited.tasks] == ["t2", "t1"]
    expired = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token="bad"))
    assert not expired.success and expired.message == "INVALID_TOKEN" and not expired.tasks


async def test_change_numbers_miss_no_late_write_and_page(pool: Pool) -> None:
    token = await pool.add_user("alice")
    bob = await pool.add_user("bob")
    for i in range(5):
        await pool.master.UploadTask(pb.UploadTaskRequest(task_id=f"c{i}", task_zip=task_zip(), token=token))
    await pool.master.UploadTask(pb.UploadTaskRequest(task_id="bobs", task_zip=task_zip(), token=bob))
    await pool.server.scheduler.assign()
    first = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))
    assert len(first.tasks) == 5 and first.seq > 0
    # Nothing changed: nothing comes back, and the number stays.
    quiet = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, after_seq=first.seq))
    assert list(quiet.tasks) == [] and quiet.seq == first.seq
    pool.clock.advance(10)
    # A write whose time is long past when it commits (a slow writer): by time it is missed, by number not.
    await pool.server.storage.update_task("c3", pool.clock.now - 600, message="late")
    await pool.master.StopTask(pb.StopTaskRequest(task_id="c1", token=token))
    await pool.master.StopTask(pb.StopTaskRequest(task_id="bobs", token=bob))  # not alice's: not listed
    by_time = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, updated_since=first.server_time))
    assert "c1" in {t.task_id for t in by_time.tasks} and "c3" not in {t.task_id for t in by_time.tasks}
    changed = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, after_seq=first.seq))
    in_order = await pool.server.storage.fetchall(
        "SELECT task_id FROM tasks WHERE owner = 'alice' AND seq > ? ORDER BY seq", (first.seq,)
    )
    assert [t.task_id for t in changed.tasks] == [r["task_id"] for r in in_order]  # in change order
    assert {"c1", "c3"} <= {t.task_id for t in changed.tasks} and changed.seq > first.seq
    # Pages from 0 (everything) in change order; each full page's number is where the next one starts.
    pages, after = [], 0
    while True:
        page = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, after_seq=after, limit=2))
        pages.append([t.task_id for t in page.tasks])
        after = page.seq
        if len(page.tasks) < 2:
            break
    rows = await pool.server.storage.fetchall("SELECT task_id FROM tasks WHERE owner = 'alice' ORDER BY seq")
    assert [len(p) for p in pages] == [2, 2, 1] and [t for p in pages for t in p] == [r["task_id"] for r in rows]
    assert after == changed.seq


async def test_an_older_pool_db_gets_change_numbers(tmp_path: Path) -> None:
    paths = PoolPaths(tmp_path / "pool").ensure()
    async with DirectDatabase(paths.db, MIGRATIONS[:7]) as old, old.write() as conn:
        await conn.executemany(
            "INSERT INTO tasks (task_id, owner, status, created_at, updated_at) VALUES (?, 'a', 'PENDING', 0, 0)",
            [(f"o{i}",) for i in range(3)],
        )
        await conn.execute("INSERT INTO nodes (node_id, registered_at, last_heartbeat) VALUES ('old-node', 0, 0)")
    async with PoolStorage(paths) as storage:
        node_seq = await storage.fetchvalue("SELECT seq FROM nodes WHERE node_id = 'old-node'")
        assert node_seq > 0 and node_seq == await storage.fetchvalue("SELECT last FROM node_seq")
        rows = await storage.fetchall("SELECT task_id, seq FROM tasks ORDER BY seq")
        assert [r["task_id"] for r in rows] == ["o0", "o1", "o2"] and len({r["seq"] for r in rows}) == 3
        last = await storage.fetchvalue("SELECT last FROM task_seq")
        assert last == rows[-1]["seq"]
        await storage.update_task("o0", 1.0, message="again")
        assert (await storage.task("o0"))["seq"] == last + 1 == await storage.fetchvalue("SELECT last FROM task_seq")


async def test_isolation_in_every_rpc(pool: Pool) -> None:
    alice = await pool.add_user("alice")
    bob = await pool.add_user("bob")
    await pool.master.UploadTask(pb.UploadTaskRequest(task_id="secret-job", task_zip=task_zip(), token=alice))
    m = pool.master
    assert list((await m.GetAllUserTasks(pb.GetAllUserTasksRequest(token=bob))).tasks) == []
    for reply in (
        await m.StopTask(pb.StopTaskRequest(task_id="secret-job", token=bob)),
        await m.GetTaskResult(pb.GetTaskResultRequest(task_id="secret-job", token=bob)),
        await m.GetTasklogSince(pb.TasklogSinceRequest(task_id="secret-job", token=bob)),
    ):
        assert not reply.success and reply.message.startswith("TASK_NOT_FOUND")
    log = await m.GetTasklog(pb.TasklogRequest(task_id="secret-job", token=bob))
    assert not log.success and log.message.startswith("TASK_NOT_FOUND")
    nobody = await m.StopTask(pb.StopTaskRequest(task_id="never-was", token=bob))
    assert nobody.message.split(":")[0] == "TASK_NOT_FOUND"
    admin = await pool.admin_token()
    (seen,) = (await m.GetAllUserTasks(pb.GetAllUserTasksRequest(token=admin))).tasks
    assert seen.owner == "alice"
    status = (await m.GetAllUserTasks(pb.GetAllUserTasksRequest(token=alice))).tasks[0].status
    assert status == "PENDING"


async def test_stop_pending_and_viewer_may_not_stop(pool: Pool) -> None:
    alice = await pool.add_user("alice")
    viewer = await pool.add_user("vic", role="viewer")
    await pool.master.UploadTask(pb.UploadTaskRequest(task_id="p1", task_zip=task_zip(), token=alice))
    admin = await pool.admin_token()
    await pool.master.UploadTask(pb.UploadTaskRequest(task_id="p2", task_zip=task_zip(), token=admin))
    # A viewer cannot see alice's task, and may not stop even what it could see.
    assert (await pool.master.StopTask(pb.StopTaskRequest(task_id="p1", token=viewer))).message.startswith(
        "TASK_NOT_FOUND"
    )
    stop = await pool.master.StopTask(pb.StopTaskRequest(task_id="p1", token=alice))
    assert stop.success and stop.message == "ok: STOPPED"
    (task,) = (await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=alice))).tasks
    assert task.status == "STOPPED" and "alice" in task.message
    no_result = await pool.master.GetTaskResult(pb.GetTaskResultRequest(task_id="p1", token=alice))
    assert not no_result.success and no_result.message.startswith("NO_RESULT")


async def test_stop_tasks_stops_many_in_one_call(pool: Pool) -> None:
    alice = await pool.add_user("alice")
    bob = await pool.add_user("bob")
    viewer = await pool.add_user("vic", role="viewer")
    for n in range(5):
        await pool.master.UploadTask(pb.UploadTaskRequest(task_id=f"a{n}", task_zip=task_zip(), token=alice))
    await pool.master.UploadTask(pb.UploadTaskRequest(task_id="b0", task_zip=task_zip(), token=bob))
    await pool.master.StopTask(pb.StopTaskRequest(task_id="a4", token=alice))
    ids = ["a0", "a1", "a2", "a3", "a4", "b0", "ghost", "..", "a0"]
    reply = await pool.master.StopTasks(pb.StopTasksRequest(token=alice, task_ids=ids))
    assert reply.success, reply.message
    assert [(t.task_id, t.status) for t in reply.tasks] == [
        ("a0", "STOPPED"),
        ("a1", "STOPPED"),
        ("a2", "STOPPED"),
        ("a3", "STOPPED"),
        ("a4", "STOPPED"),
        ("b0", "NOT_FOUND"),  # bob's: not alice's to see, and left alone
        ("ghost", "NOT_FOUND"),
        ("..", "NOT_FOUND"),
        ("a0", "STOPPED"),
    ]
    (b0,) = (await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=bob))).tasks
    assert b0.status == "PENDING"
    refused = await pool.master.StopTasks(pb.StopTasksRequest(token=viewer, task_ids=["a0"]))
    assert not refused.success and refused.message.startswith("PERMISSION_DENIED")
    too_many = await pool.master.StopTasks(pb.StopTasksRequest(token=alice, task_ids=["x"] * 1001))
    assert not too_many.success and too_many.message.startswith("INVALID_ARGUMENT")


async def test_worker_calls_need_the_secret(pool: Pool) -> None:
    reg = pb.RegisterWorkerNodeRequest(node_id="n1", hostname="h", port=6000, cpu_cores=2, memory_gb=4)
    w = pool.nodes
    assert (await w.RegisterWorkerNode(reg)).message.startswith("PERMISSION_DENIED")
    wrong = (("x-hivemind-worker-secret", "guess"),)
    assert (await w.RegisterWorkerNode(reg, metadata=wrong)).message.startswith("PERMISSION_DENIED")
    beat = pb.RunningStatusRequest(node_id="n1", status="Idle")
    assert (await w.ReportStatus(beat)).message.startswith("PERMISSION_DENIED")
    for call, request in (
        (pool.workers.TaskOutputUpload, pb.TaskOutputUploadRequest(task_id="t", output="x")),
        (pool.workers.TaskOutput, pb.TaskOutputRequest(task_id="t", output="x")),
        (pool.workers.TaskUsage, pb.TaskUsageRequest(task_id="t")),
        (pool.workers.TaskResultUpload, pb.TaskResultUploadRequest(task_id="t", result_zip=b"")),
    ):
        assert (await call(request, metadata=wrong)).message.startswith("PERMISSION_DENIED")
    assert (await w.RegisterWorkerNode(reg, metadata=pool.worker_metadata())).success
    admin = await pool.admin_token()
    (node,) = (await w.GetNodeList(pb.GetNodeListRequest(token=admin))).nodes
    assert node.node_id == "n1" and node.online and node.state == "active" and node.slots == 1


async def test_the_pool_does_not_execute_tasks(pool: Pool) -> None:
    import grpc

    with pytest.raises(grpc.aio.AioRpcError) as err:
        await pool.workers.ExecuteTask(pb.ExecuteTaskRequest(task_id="t"), metadata=pool.worker_metadata())
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED


async def test_node_list_online_and_states(pool: Pool) -> None:
    meta = pool.worker_metadata()
    await pool.nodes.RegisterWorkerNode(
        pb.RegisterWorkerNodeRequest(node_id="n1", hostname="h1", port=6001, slots=4, cpu_score=100), metadata=meta
    )
    await pool.nodes.RegisterWorkerNode(
        pb.RegisterWorkerNodeRequest(node_id="n2", hostname="h2", port=6002), metadata=meta
    )
    pool.clock.advance(1.5)
    beat = await pool.nodes.ReportStatus(
        pb.RunningStatusRequest(node_id="n1", status="BUSY", cpu_usage=55.5, running_tasks=2), metadata=meta
    )
    assert beat.success
    ghost = await pool.nodes.ReportStatus(pb.RunningStatusRequest(node_id="ghost"), metadata=meta)
    assert ghost.message.startswith("NODE_NOT_FOUND")
    pool.clock.advance(1.0)  # n2 has been silent 2.5 s > 2 s timeout
    alice = await pool.add_user("alice")
    nodes = {n.node_id: n for n in (await pool.nodes.GetNodeList(pb.GetNodeListRequest(token=alice))).nodes}
    assert nodes["n1"].online and not nodes["n2"].online
    assert nodes["n1"].cpu_usage == pytest.approx(55.5) and nodes["n1"].running_tasks == 2
    assert nodes["n1"].status == "BUSY" and nodes["n1"].slots == 4
    assert (await pool.nodes.GetNodeList(pb.GetNodeListRequest(token="bad"))).message == "INVALID_TOKEN"

    async def set_state(token: str, node: str, state: str) -> pb.SetNodeStateResponse:
        return await pool.nodes.SetNodeState(pb.SetNodeStateRequest(token=token, node_id=node, state=state))

    assert (await set_state(alice, "n1", "cordoned")).message.startswith("PERMISSION_DENIED")
    admin = await pool.admin_token()
    assert (await set_state(admin, "n1", "cordoned")).success
    assert (await set_state(admin, "n1", "sleeping")).message.startswith("INVALID_ARGUMENT")
    assert (await set_state(admin, "n1", "forget")).message.startswith("INVALID_ARGUMENT")  # online
    assert (await set_state(admin, "n2", "forget")).success
    assert (await set_state(admin, "n2", "active")).message.startswith("NODE_NOT_FOUND")
    (left,) = (await pool.nodes.GetNodeList(pb.GetNodeListRequest(token=admin))).nodes
    assert (left.node_id, left.state) == ("n1", "cordoned")


async def test_a_sweep_rewords_a_long_queue_only_when_the_cluster_changes(pool: Pool) -> None:
    meta = pool.worker_metadata()
    await pool.nodes.RegisterWorkerNode(
        pb.RegisterWorkerNodeRequest(node_id="n1", hostname="h1", port=6001, slots=1, memory_gb=8), metadata=meta
    )
    now = pool.clock.now
    async with pool.server.storage.write() as conn:  # a long queue that fits no node: 3 batches of rewording
        await conn.executemany(
            "INSERT INTO tasks (task_id, owner, status, memory_gb, created_at, updated_at) "
            "VALUES (?, 'alice', 'PENDING', 100, ?, ?)",
            [(f"q{i:04d}", now, now) for i in range(2500)],
        )

    async def reasons() -> set[str]:
        return {r["message"] for r in await pool.server.storage.fetchall("SELECT message FROM tasks")}

    async def last_change() -> int:
        return int(await pool.server.storage.fetchvalue("SELECT last FROM task_seq"))

    await pool.server.scheduler.assign()
    assert await reasons() == {"waiting: no online node with 100 GB memory"}
    before = await last_change()
    assert await pool.server.scheduler.assign() == 0
    assert await last_change() == before  # nothing changed: nothing written
    pool.clock.advance(pool.settings.heartbeat_timeout + 1)  # n1 goes silent: every reason changes
    await pool.server.scheduler.assign()
    assert await reasons() == {"waiting: no online worker"}
    assert await last_change() == before + 2500


async def test_a_pass_between_sweeps_reads_the_queue_a_page_at_a_time_past_tasks_that_fit_nowhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A slot that comes free is filled at once, past the tasks before it that wait for something no node has
    (up to 256 of them; more are the next sweep's), and filling it reads a few rows, not the head of the queue:
    with 256 rows a pass, one pass per finished task, the pool spent a fifth of its CPU reading queue rows."""
    monkeypatch.setattr(scheduler, "TICK", 3600.0)  # only the passes this test makes
    pool = await start_pool(fast_settings(tmp_path / "data"), FakeClock())
    try:
        await pool.nodes.RegisterWorkerNode(
            pb.RegisterWorkerNodeRequest(node_id="n1", hostname="h1", port=6001, slots=1, memory_gb=8),
            metadata=pool.worker_metadata(),
        )
        now = pool.clock.now
        rows = [(f"big{i:04d}", 5, 100, now + i) for i in range(100)]  # at the head: 100 GB, on no node
        rows += [(f"fits{i:04d}", 0, 1, now + 100 + i) for i in range(2000)]
        async with pool.server.storage.write() as conn:
            await conn.executemany(
                "INSERT INTO tasks (task_id, owner, status, priority, memory_gb, created_at, updated_at) "
                "VALUES (?, 'alice', 'PENDING', ?, ?, ?, ?)",
                [(task_id, priority, memory, created, created) for task_id, priority, memory, created in rows],
            )
        read: list[int] = []
        fetchall = pool.server.storage.fetchall

        async def counted(sql: str, params: tuple = ()) -> list:
            found = await fetchall(sql, params)
            if "'PENDING'" in sql:
                read.append(len(found))
            return found

        monkeypatch.setattr(pool.server.storage, "fetchall", counted)
        assert await pool.server.scheduler.assign(sweep=False) == 1
        task = await pool.server.storage.task("fits0000")
        assert task is not None and task["status"] != "PENDING"
        assert sum(read) <= 16 + 32 + 64, read  # pages that grow: the 101st row is in the third
    finally:
        await pool.close()


async def test_health(pool: Pool) -> None:
    reply = await pool.master.Health(pb.HealthRequest())
    assert reply.version and "GetNodeList" in reply.extensions and reply.time == pool.clock.now


async def test_restart_keeps_everything(tmp_path: Path) -> None:
    settings = fast_settings(tmp_path / "data")
    pool = await start_pool(settings)
    token = await pool.add_user("alice")
    await pool.master.UploadTask(pb.UploadTaskRequest(task_id="keep-me", task_zip=task_zip(), token=token))
    await pool.close()
    again = await start_pool(settings)
    try:
        assert again.server.first_admin_password is None
        listed = await again.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))
        assert [t.task_id for t in listed.tasks] == ["keep-me"]
        assert (again.server.paths.tasks / "keep-me.zip").read_bytes() == task_zip()
    finally:
        await again.close()


async def test_prune_removes_old_finished_tasks_only(pool: Pool) -> None:
    token = await pool.add_user("alice")
    for task in ("old", "running-old", "new"):
        await pool.master.UploadTask(pb.UploadTaskRequest(task_id=task, task_zip=task_zip(), token=token))
    await pool.master.StopTask(pb.StopTaskRequest(task_id="old", token=token))
    pool.clock.advance(31 * 86400)
    token = (await pool.users.Login(pb.LoginRequest(username="alice", password="pw-" + "x" * 8))).token
    await pool.master.StopTask(pb.StopTaskRequest(task_id="new", token=token))
    assert await pool.server.parts.tasks.prune() == 1
    names = {t.task_id for t in (await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))).tasks}
    assert names == {"running-old", "new"}
    assert "old.zip" not in files_in(pool.server.paths.tasks)


async def test_a_listing_builds_messages_only_for_tasks_that_changed_and_forgets_pruned_ones(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pool keeps each listed task's encoded message while its change number stays: a second listing of
    unchanged tasks builds none (the 100,000-task listing of `tasks list` spent 0.45 s of the pool's CPU
    reading every column and building every message), a changed task is listed as it is now, and a pruned
    task's entry goes with it."""
    from hivemind_tui.nodepool import servicers

    built: list[str] = []
    build = servicers.add_task_infos

    def counted(response: pb.GetAllTasksResponse, rows: list) -> None:
        rows = list(rows)
        built.extend(row[0] for row in rows)
        build(response, rows)

    monkeypatch.setattr(servicers, "add_task_infos", counted)
    token = await pool.add_user("alice")
    for i in range(5):
        await pool.master.UploadTask(pb.UploadTaskRequest(task_id=f"t{i}", task_zip=task_zip(), token=token))
    await pool.server.scheduler.assign()  # the wait reasons settle before the listings

    async def listing(**fields: object) -> dict[str, str]:
        reply = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, **fields))
        assert reply.success and reply.seq > 0
        return {t.task_id: t.status for t in reply.tasks}

    assert await listing() == dict.fromkeys([f"t{i}" for i in range(5)], "PENDING")
    built.clear()
    assert await listing() == dict.fromkeys([f"t{i}" for i in range(5)], "PENDING")
    assert built == []
    await pool.master.StopTask(pb.StopTaskRequest(task_id="t3", token=token))
    assert (await listing())["t3"] == "STOPPED"
    assert built == ["t3"]
    paged = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, limit=2, after_seq=0))
    assert len(paged.tasks) == 2 and built == ["t3"]
    pool.clock.advance(31 * 86400)
    assert await pool.server.parts.tasks.prune() == 1
    listed = await pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=await pool.add_user("bob")))
    assert listed.success and not listed.tasks  # bob sees none of alice's: the keys come from his own rows
    kept = next(f for f in pool.server.parts.tasks.on_removed).__self__._kept  # type: ignore[attr-defined]
    assert "t3" not in kept and len(kept) == 4


def test_an_encoded_entry_is_what_protobuf_writes_for_it() -> None:
    from hivemind_tui.core.upload_chunks import varint
    from hivemind_tui.nodepool.servicers import TASKS_FIELD

    for size in (0, 5, 127, 128, 300, 20_000):
        info = pb.TaskInfo(task_id="t", message="m" * size)
        message = info.SerializeToString()
        assert TASKS_FIELD + varint(len(message)) + message == pb.GetAllTasksResponse(tasks=[info]).SerializeToString()


async def test_concurrent_uploads_of_one_id_store_one(pool: Pool) -> None:
    token = await pool.add_user("alice")
    replies = await asyncio.gather(
        *(
            pool.master.UploadTask(pb.UploadTaskRequest(task_id="race", task_zip=task_zip(f"print({i})"), token=token))
            for i in range(10)
        )
    )
    assert sum(r.success for r in replies) == 1
    assert all(r.message.startswith("TASK_EXISTS") for r in replies if not r.success)
    assert files_in(pool.server.paths.tasks) == {"race.zip"}


async def test_stop_is_prompt_while_the_scheduler_is_busy(tmp_path: Path) -> None:
    """A cancel racing the scheduler's wake-up once hung the pool's shutdown (Python 3.11 wait_for)."""
    for round_ in range(5):
        pool = await start_pool(fast_settings(tmp_path / f"d{round_}"))
        token = await pool.add_user("alice")
        for i in range(3):
            await pool.master.UploadTask(
                pb.UploadTaskRequest(task_id=f"w{i}", task_zip=task_zip(), token=token, memory_gb=100000)
            )
        await asyncio.wait_for(pool.close(), 10)
