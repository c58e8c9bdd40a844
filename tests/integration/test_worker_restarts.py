"""Workers that restart, vanish or come twice: reconciliation, attempts, the result spool, one live worker
per node id. Real pool, real worker processes, loopback; the pool's heartbeat timeout is the production 30 s,
so whatever is re-queued here is re-queued by these mechanisms, not by a worker going silent."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path

import pytest

from hivemind_tui.nodepool import scheduler
from hivemind_tui.nodepool.servicers import NODE_ID_HEADER, WORKER_SECRET_HEADER
from hivemind_tui.proto import nodepool_pb2 as pb
from tests.helpers import make_zip, spawn_worker
from tests.integration.cluster import Cluster
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(120)


def node_id() -> str:
    """A node id no other test uses: a worker's task folder is named after it, in the shared /tmp."""
    return f"rs-{secrets.token_hex(3)}"


def until_then(seconds: float, marker: str) -> bytes:
    """A task that prints a marker with its pid, then sleeps until a fixed wall-clock time (so a second run
    after a restart finishes at that time too), then writes its pid as its result."""
    deadline = time.time() + seconds
    main = (
        "import os, time\n"
        f"print('{marker}', os.getpid(), flush=True)\n"
        f"time.sleep(max(0.0, {deadline} - time.time()))\n"
        "os.makedirs('output', exist_ok=True)\n"
        "open('output/pid.txt', 'w').write(str(os.getpid()))\n"
    )
    return make_zip({"main.py": main})


class Gate:
    """A loopback port a task waits on until the test opens it: the task ends after the test has done what
    it must do first, however slowly a loaded machine started it."""

    def __init__(self) -> None:
        self.opened = asyncio.Event()
        self._server: asyncio.Server | None = None

    async def __aenter__(self) -> Gate:
        self._server = await asyncio.start_server(self._hold, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.open()  # a task still waiting (the test failed first) is let go, not left hanging
        assert self._server is not None
        self._server.close()

    def open(self) -> None:
        """Lets the task go on, whenever it connects: closing the port instead would make a task that connects
        late fail, and its traceback wait behind output uploads retried while the pool is away."""
        self.opened.set()

    @property
    def port(self) -> int:
        assert self._server is not None
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    async def _hold(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self.opened.wait()
        writer.write(b"go")
        await writer.drain()
        writer.close()

    def task(self, marker: str) -> bytes:
        """Prints a marker with its pid, waits for the gate, prints its last words, then writes its pid as its
        result."""
        main = (
            "import os, socket\n"
            f"print('{marker}', os.getpid(), flush=True)\n"
            f"socket.create_connection(('127.0.0.1', {self.port})).recv(2)\n"
            "print('last words', flush=True)\n"
            "os.makedirs('output', exist_ok=True)\n"
            "open('output/pid.txt', 'w').write(str(os.getpid()))\n"
        )
        return make_zip({"main.py": main})


async def result_text(cluster: Cluster, task_id: str, name: str) -> str:
    import io
    import zipfile

    reply = await cluster.pool.master.GetTaskResult(pb.GetTaskResultRequest(task_id=task_id, token=cluster.token))
    with zipfile.ZipFile(io.BytesIO(reply.result_zip)) as zf:
        return zf.read(name).decode()


async def running_on(cluster: Cluster, task_id: str, node: str) -> pb.TaskInfo:
    deadline = time.monotonic() + 30
    while True:
        info = await cluster.task(task_id)
        if info.status == "RUNNING" and info.worker_ip == node and "started" in await cluster.log(task_id):
            return info
        assert time.monotonic() < deadline, info
        await asyncio.sleep(0.05)


async def test_a_worker_killed_and_restarted_gives_its_task_back_at_once(patient_cluster: Cluster) -> None:
    cluster, node = patient_cluster, node_id()
    first = cluster.worker(node)
    await cluster.wait_online(node)
    await cluster.submit("restart-1", until_then(12, "started"))
    await running_on(cluster, "restart-1", node)
    first.kill()  # kill -9: no goodbye, the pool still thinks the task runs there
    first.wait()
    restarted_at = time.monotonic()
    cluster.worker(node)  # same data dir, same node id, as systemd would restart it
    deadline = time.monotonic() + 15  # half the heartbeat timeout: only the restart can have freed it
    while (await cluster.log("restart-1")).count("started") < 2:
        assert time.monotonic() < deadline, await cluster.task("restart-1")
        await asyncio.sleep(0.05)
    requeue_s = time.monotonic() - restarted_at
    done = await cluster.wait("restart-1", {"COMPLETED", "FAILED"}, timeout=60)
    assert done.status == "COMPLETED", done.message
    pids = [line.split()[1] for line in (await cluster.log("restart-1")).splitlines() if line.startswith("started")]
    assert len(pids) == 2, pids
    assert await result_text(cluster, "restart-1", "output/pid.txt") == pids[-1]  # the new run's result
    print(f"\nre-queued {requeue_s:.2f} s after the restart (heartbeat timeout 30 s)")


async def test_a_second_worker_with_the_same_node_id_is_refused(patient_cluster: Cluster, tmp_path: Path) -> None:
    cluster, node = patient_cluster, node_id()
    cluster.worker(node)
    await cluster.wait_online(node)
    await cluster.submit("twice-1", until_then(4, "started"))
    await running_on(cluster, "twice-1", node)
    # The same host: its task folder is locked by the first.
    same_host = spawn_worker(cluster.data_dir, cluster.pool.address, node)
    _, err = await asyncio.to_thread(same_host.communicate, None, 60)
    assert same_host.returncode == 1 and b"another worker process holds" in err, err
    # Another host (its own temp dir): the pool asks the first whether it lives, and refuses.
    other = tmp_path / "other-host"
    other.mkdir()
    elsewhere = spawn_worker(
        tmp_path / "other-data",
        cluster.pool.address,
        node,
        env={"TMPDIR": str(other)},
        extra=("--secret-file", str(cluster.pool.server.paths.worker_secret)),
    )
    _, err = await asyncio.to_thread(elsewhere.communicate, None, 60)
    assert elsewhere.returncode == 1 and f"node {node} is live at".encode() in err, err
    done = await cluster.wait("twice-1", {"COMPLETED", "FAILED"}, timeout=60)
    assert done.status == "COMPLETED" and await result_text(cluster, "twice-1", "output/pid.txt")


async def test_a_stale_attempts_result_is_refused(patient_cluster: Cluster) -> None:
    cluster, node = patient_cluster, node_id()
    cluster.worker(node)
    await cluster.wait_online(node)
    await cluster.submit("stale-1", until_then(3, "started"))
    await running_on(cluster, "stale-1", node)
    metadata = ((WORKER_SECRET_HEADER, cluster.pool.worker_secret), (NODE_ID_HEADER, node))
    late = await cluster.pool.workers.TaskResultUpload(
        pb.TaskResultUploadRequest(task_id="stale-1", result_zip=b"", exit_code=0, attempt=99), metadata=metadata
    )
    assert not late.success and late.message.startswith("STALE_ATTEMPT"), late.message
    assert (await cluster.task("stale-1")).status == "RUNNING"
    done = await cluster.wait("stale-1", {"COMPLETED", "FAILED"}, timeout=60)
    assert done.status == "COMPLETED" and await result_text(cluster, "stale-1", "output/pid.txt")


@pytest.mark.parametrize("restart", [False, True], ids=["pool-returns", "worker-restarts-meanwhile"])
async def test_a_result_the_pool_could_not_take_is_sent_later(patient_cluster: Cluster, restart: bool) -> None:
    cluster, node = patient_cluster, node_id()
    proxy = await FaultProxy(int(cluster.pool.address.rpartition(":")[2])).start()
    try:
        worker = spawn_worker(cluster.data_dir, proxy.address, node)
        cluster.workers[node] = worker
        await cluster.wait_online(node)
        async with Gate() as gate:
            await cluster.submit("spool-1", gate.task("started"))
            await running_on(cluster, "spool-1", node)
            proxy.cut()  # the pool is away for the worker: the result cannot be sent
            gate.open()  # the task ends now, or whenever a loaded machine gets it there
            spool = cluster.data_dir / "worker" / "spool" / node
            # Kept with its last words, which the pool could not take either: kept at once, not once their
            # upload has been retried for minutes (a worker killed meanwhile lost both).
            deadline = time.monotonic() + 30
            while not list(spool.glob("*.result")):
                assert time.monotonic() < deadline, "the result was not kept"
                await asyncio.sleep(0.05)
            assert oct(next(spool.glob("*.result")).stat().st_mode & 0o777) == "0o600"
            assert (await cluster.task("spool-1")).status == "RUNNING"
            if restart:
                worker.kill()
                worker.wait()
                proxy.mode = "pass"
                cluster.workers[node] = spawn_worker(cluster.data_dir, proxy.address, node)
            else:
                proxy.mode = "pass"
            done = await cluster.wait("spool-1", {"COMPLETED", "FAILED"}, timeout=60)
            assert done.status == "COMPLETED", done.message
            log = await cluster.log("spool-1")
            assert "started" in log and log.count("last words") == 1, log
            assert await result_text(cluster, "spool-1", "output/pid.txt")
            deadline = time.monotonic() + 10
            while list(spool.glob("*.result")):  # taken: the spool lets it go
                assert time.monotonic() < deadline
                await asyncio.sleep(0.05)
    finally:
        await proxy.close()


async def test_a_heartbeat_reconciles_both_ways(patient_cluster: Cluster) -> None:
    """A RUNNING task missing from a heartbeat is re-queued; a reported task the pool does not expect is
    stopped on the worker (the same heartbeat's answer)."""
    cluster, node = patient_cluster, node_id()
    cluster.worker(node)
    await cluster.wait_online(node)
    await cluster.submit("recon-1", until_then(8, "started"))
    await running_on(cluster, "recon-1", node)
    await asyncio.sleep(scheduler.RECONCILE_GRACE + 0.1)  # the pool's grace for a task that just started
    metadata = ((WORKER_SECRET_HEADER, cluster.pool.worker_secret), (NODE_ID_HEADER, node))
    reply = await cluster.pool.nodes.ReportStatus(
        pb.RunningStatusRequest(
            node_id=node, status="Idle", reconciles=True, running=[pb.RunningTask(task_id="ghost-1", attempt=1)]
        ),
        metadata=metadata,
    )
    assert reply.success and list(reply.stop_task_ids) == ["ghost-1"]
    assert "re-queued: worker" in await cluster.log("recon-1")
    # The worker's own next heartbeat still names the first run: it is stopped, and the new attempt counts.
    done = await cluster.wait("recon-1", {"COMPLETED", "FAILED"}, timeout=60)
    assert done.status == "COMPLETED", done.message
    assert (await cluster.log("recon-1")).count("started") == 2
