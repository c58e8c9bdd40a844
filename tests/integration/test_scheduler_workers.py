"""Scheduler and worker processes: real pool, real `hivemind-tui worker` processes, real task subprocesses."""

from __future__ import annotations

import asyncio
import io
import os
import signal
import subprocess
import time
import zipfile
from pathlib import Path

import grpc
import pytest

from hivemind_tui.core.datadir import DataDir
from hivemind_tui.nodepool import scheduler
from hivemind_tui.nodepool.server import PoolServer, grpc_options
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from tests.helpers import Pool, make_zip, spawn_worker, task_zip
from tests.integration.cluster import Cluster, cluster_settings

# Workers here have fixed node ids, and a worker empties its task folder when it starts: these tests
# share one xdist worker so that two of them never run a node of the same id at once.
pytestmark = pytest.mark.xdist_group("fixed-node-ids")

LIFECYCLE_MAIN = """
import json, os, sys

print("hello from", os.environ["HIVEMIND_TASK_ID"])
print("to stderr", file=sys.stderr)
os.makedirs("output/sub", exist_ok=True)
with open(os.path.join(os.environ["HIVEMIND_OUTPUT_DIR"], "result.txt"), "w") as fh:
    fh.write(open("data/input.txt").read().upper())
open("output/sub/env.json", "w").write(json.dumps(sorted(os.environ)))
"""


async def test_full_lifecycle_with_output_and_result(cluster: Cluster) -> None:
    cluster.worker("w1")
    await cluster.wait_online("w1")
    await cluster.submit("life-1", make_zip({"main.py": LIFECYCLE_MAIN, "data/input.txt": "abc\n"}))
    info = await cluster.wait("life-1", {"COMPLETED", "FAILED"})
    assert info.status == "COMPLETED", info.message
    assert info.worker_ip == "w1" and info.exit_code == 0
    log = await cluster.log("life-1")
    assert "hello from life-1" in log and "to stderr" in log
    result = await cluster.pool.master.GetTaskResult(pb.GetTaskResultRequest(task_id="life-1", token=cluster.token))
    with zipfile.ZipFile(io.BytesIO(result.result_zip)) as zf:
        assert zf.read("output/result.txt") == b"ABC\n"
        env_names = set(__import__("json").loads(zf.read("output/sub/env.json")))
    assert {"HIVEMIND_TASK_ID", "HIVEMIND_OUTPUT_DIR", "PATH"} <= env_names
    assert not any(name.startswith(("GRPC", "HIVEMIND_HEARTBEAT", "HIVEMIND_PASSWORD")) for name in env_names)
    runs = cluster.data_dir / "worker" / "runs" / "w1"  # with bwrap, or a worker that is not root
    base = runs if runs.is_dir() else Path("/tmp") / "hivemind-worker-w1"
    # The private dir goes right after the result is sent; only the worker's lock stays.
    deadline = time.monotonic() + 10
    while [p.name for p in base.iterdir()] != [".lock"]:
        assert time.monotonic() < deadline, list(base.iterdir())
        await asyncio.sleep(0.05)


@pytest.fixture
def no_periodic_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    """The scheduler's periodic pass an hour apart: only the wake-up on upload can dispatch a task."""
    monkeypatch.setattr(scheduler, "TICK", 3600.0)


async def test_an_upload_wakes_the_scheduler_at_once(no_periodic_pass: None, cluster: Cluster) -> None:
    cluster.worker("w1")
    await cluster.wait_online("w1")
    await cluster.submit("fast-1", task_zip("import time; time.sleep(3)"))
    await cluster.wait("fast-1", {"RUNNING"}, timeout=30)


async def test_exit_code_failure_carries_stderr(cluster: Cluster) -> None:
    cluster.worker("w1")
    await cluster.wait_online("w1")
    await cluster.submit("bad-exit", task_zip("import sys\nprint('it broke here', file=sys.stderr)\nsys.exit(3)"))
    info = await cluster.wait("bad-exit", {"COMPLETED", "FAILED"})
    assert info.status == "FAILED" and info.exit_code == 3
    assert "exit code 3" in info.message and "it broke here" in info.message


async def test_time_limit(cluster: Cluster) -> None:
    cluster.worker("w1", HIVEMIND_TASK_TIME_LIMIT="1")
    await cluster.wait_online("w1")
    await cluster.submit("slow", task_zip("import time\nprint('start', flush=True)\ntime.sleep(60)"))
    info = await cluster.wait("slow", {"COMPLETED", "FAILED"}, timeout=20)
    assert info.status == "FAILED" and "time limit of 1 s exceeded" in info.message


async def test_memory_limit(cluster: Cluster) -> None:
    cluster.worker("w1")
    await cluster.wait_online("w1")
    await cluster.submit("hungry", task_zip("block = bytearray(3 * 1024**3)\nprint(len(block))"), memory_gb=1)
    info = await cluster.wait("hungry", {"COMPLETED", "FAILED"})
    assert info.status == "FAILED" and "memory limit of 1 GB exceeded" in info.message


async def test_stop_while_running(cluster: Cluster) -> None:
    cluster.worker("w1")
    await cluster.wait_online("w1")
    await cluster.submit("long", task_zip("import time\nprint('started', flush=True)\ntime.sleep(60)"))
    await cluster.wait("long", {"RUNNING"})
    deadline = time.monotonic() + 10
    while "started" not in await cluster.log("long") and time.monotonic() < deadline:
        await asyncio.sleep(0.05)
    reply = await cluster.pool.master.StopTask(pb.StopTaskRequest(task_id="long", token=cluster.token))
    assert reply.success
    info = await cluster.wait("long", {"STOPPED", "COMPLETED", "FAILED"})
    assert info.status == "STOPPED"
    await asyncio.sleep(0.5)
    assert (await cluster.task("long")).status == "STOPPED"


async def test_worker_killed_mid_task_requeues_then_fails(cluster: Cluster) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    await cluster.wait_online("w1", "w2")
    await cluster.submit("orphan", task_zip("import time\nprint('go', flush=True)\ntime.sleep(60)"))
    first = await cluster.wait("orphan", {"RUNNING"})
    cluster.workers[first.worker_ip].send_signal(signal.SIGKILL)
    deadline = time.monotonic() + 20
    info = await cluster.task("orphan")
    while not (info.status == "RUNNING" and info.worker_ip != first.worker_ip):
        assert time.monotonic() < deadline, (info.status, info.message)
        await asyncio.sleep(0.1)
        info = await cluster.task("orphan")
    cluster.workers[info.worker_ip].send_signal(signal.SIGKILL)
    final = await cluster.wait("orphan", {"FAILED", "COMPLETED"}, timeout=20)
    assert final.status == "FAILED" and "worker lost after 2 attempt(s)" in final.message


async def test_two_workers_share_load(cluster: Cluster) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    await cluster.wait_online("w1", "w2")
    for i in range(4):
        await cluster.submit(f"share-{i}", task_zip("import time; time.sleep(1)"))
    infos = [await cluster.wait(f"share-{i}", {"COMPLETED"}) for i in range(4)]
    assert {i.worker_ip for i in infos} == {"w1", "w2"}


async def test_a_worker_takes_the_next_task_while_it_still_reports_the_last(
    cluster: Cluster, caplog: pytest.LogCaptureFixture
) -> None:
    """The pool dispatches as soon as it takes a result; the worker's slot was still held by the run that sent
    it (its folder being removed), so a third of a busy queue's dispatches came back BUSY and went round again."""
    cluster.worker("w1")
    await cluster.wait_online("w1")
    for n in range(20):
        await cluster.submit(f"row-{n}", task_zip("print('ok')"))
    for n in range(20):
        assert (await cluster.wait(f"row-{n}", {"COMPLETED", "FAILED"})).status == "COMPLETED"
    refused = [r.getMessage() for r in caplog.records if "did not take task" in r.getMessage()]
    assert refused == []


async def test_waiting_task_says_why_and_priority_order(cluster: Cluster) -> None:
    await cluster.submit("huge", memory_gb=100000)
    deadline = time.monotonic() + 5
    while "no online worker" not in (await cluster.task("huge")).message:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    cluster.worker("w1")
    await cluster.wait_online("w1")
    deadline = time.monotonic() + 5
    while (await cluster.task("huge")).message != "waiting: no online node with 100000 GB memory":
        assert time.monotonic() < deadline, (await cluster.task("huge")).message
        await asyncio.sleep(0.05)
    await cluster.submit("gpu", gpu_name="A100")
    deadline = time.monotonic() + 5
    while "GPU named 'A100'" not in (await cluster.task("gpu")).message:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)


async def test_priority_then_age(cluster: Cluster) -> None:
    for name, priority in (("low", 0), ("high", 5), ("mid", 2), ("high2", 5)):
        await cluster.submit(name, task_zip("print(1)"), priority=priority)
    cluster.worker("w1")
    await cluster.wait_online("w1")
    for name in ("low", "high", "mid", "high2"):
        await cluster.wait(name, {"COMPLETED"})
    rows = await cluster.pool.server.storage.fetchall("SELECT task_id FROM tasks ORDER BY started_at")
    assert [r["task_id"] for r in rows] == ["high", "high2", "mid", "low"]


async def test_cordoned_and_draining_nodes_get_nothing_new_and_forget(cluster: Cluster) -> None:
    cluster.worker("w1")
    cluster.worker("w2")
    await cluster.wait_online("w1", "w2")
    admin = await cluster.pool.admin_token()

    async def set_state(node: str, state: str) -> pb.SetNodeStateResponse:
        return await cluster.pool.nodes.SetNodeState(pb.SetNodeStateRequest(token=admin, node_id=node, state=state))

    assert (await set_state("w1", "cordoned")).success
    assert (await set_state("w2", "draining")).success
    await cluster.submit("parked", task_zip("print(1)"))
    deadline = time.monotonic() + 10
    info = await cluster.task("parked")
    while "cordoned or draining" not in info.message:
        assert info.status == "PENDING" and time.monotonic() < deadline, (info.status, info.message)
        await asyncio.sleep(0.05)
        info = await cluster.task("parked")
    assert info.status == "PENDING"
    nodes = {n.node_id: n for n in (await cluster.pool.nodes.GetNodeList(pb.GetNodeListRequest(token=admin))).nodes}
    assert nodes["w1"].online and not nodes["w2"].online  # draining and idle: offline
    assert (await set_state("w1", "active")).success
    assert (await cluster.wait("parked", {"COMPLETED"})).worker_ip == "w1"
    cluster.workers["w2"].terminate()
    cluster.workers["w2"].wait(timeout=15)
    assert (await set_state("w1", "forget")).message.startswith("INVALID_ARGUMENT")
    assert (await set_state("w2", "forget")).success
    nodes = {n.node_id for n in (await cluster.pool.nodes.GetNodeList(pb.GetNodeListRequest(token=admin))).nodes}
    assert nodes == {"w1"}


async def test_pool_restart_requeues_running_tasks(tmp_path: Path) -> None:
    from tests.helpers import free_port

    settings = cluster_settings(tmp_path, task_retry_limit=2)
    address = f"127.0.0.1:{free_port()}"
    server = PoolServer(settings, DataDir(settings.data_path), listen=address)
    await server.start()
    channel = grpc.aio.insecure_channel(address, options=grpc_options(settings))
    pool = Pool(server, settings, None, channel, server.paths.admin_password.read_text().strip())
    cluster = Cluster(pool, settings.data_path)
    try:
        cluster.token = await pool.add_user("alice")
        cluster.worker("w1")
        await cluster.wait_online("w1")
        await cluster.submit("survivor", task_zip("import time\nprint('run', flush=True)\ntime.sleep(2)"))
        await cluster.wait("survivor", {"RUNNING"})
        await server.stop(grace=1)
        server = PoolServer(settings, DataDir(settings.data_path), listen=address)
        await server.start()
        pool.server = server
        pool.tokens.clear()
        info = await cluster.task("survivor")
        assert info.status in ("PENDING", "ASSIGNED", "RUNNING") and info.message.startswith(
            ("re-queued: pool restarted", "assigned", "")
        ), info.message
        final = await cluster.wait("survivor", {"COMPLETED", "FAILED"}, timeout=30)
        assert final.status == "COMPLETED", final.message
        assert "run" in await cluster.log("survivor")
        row = await server.storage.task("survivor")
        assert row["attempts"] == 2  # ran once before the restart, once after
    finally:
        await cluster.close()


async def test_worker_refuses_a_zip_that_leaves_its_dir(cluster: Cluster, tmp_path: Path) -> None:
    from tests.helpers import free_port

    port = free_port()
    proc = spawn_worker(cluster.data_dir, cluster.pool.address, "w9", 1, {})
    cluster.workers["w9"] = proc
    proc.terminate()
    proc.wait(timeout=15)
    # Start it on a known port to call it directly, as the pool would.
    import sys

    env = {**os.environ, "HIVEMIND_HEARTBEAT_INTERVAL": "0.2", "HIVEMIND_HEARTBEAT_TIMEOUT": "2"}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hivemind_tui",
            "--data-dir",
            str(cluster.data_dir),
            "worker",
            "--pool",
            cluster.pool.address,
            "--node-id",
            "w9",
            "--listen",
            f"127.0.0.1:{port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    cluster.workers["w9"] = proc
    await cluster.wait_online("w9")
    evil = make_zip({"main.py": "print(1)", "../../escaped.txt": "x"})
    target = Path("/tmp") / "escaped.txt"
    target.unlink(missing_ok=True)
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = pb_grpc.WorkerNodeServiceStub(channel)
        reply = await stub.ExecuteTask(
            pb.ExecuteTaskRequest(task_id="evil", task_zip=evil), metadata=cluster.pool.worker_metadata()
        )
        assert not reply.success and reply.message.startswith("INVALID_TASK")
        stranger = await stub.ExecuteTask(pb.ExecuteTaskRequest(task_id="x", task_zip=task_zip()))
        assert not stranger.success and stranger.message.startswith("PERMISSION_DENIED")
        stop = await stub.StopTaskExecution(pb.StopTaskExecutionRequest(task_id="x"))
        assert stop.message.startswith("PERMISSION_DENIED")
    assert not target.exists()
    for base in (cluster.data_dir / "worker" / "runs" / "w9", Path("/tmp/hivemind-worker-w9")):
        assert not (base.parent / "escaped.txt").exists() and not (base.parent.parent / "escaped.txt").exists()
