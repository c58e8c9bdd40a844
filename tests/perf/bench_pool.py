"""Benchmark of the embedded pool (prints figures; CI does not run it).

    python tests/perf/bench_pool.py [--tasks 1000]

- tasks/s for N trivial tasks submitted by 4 clients and run by 2 local workers;
- median upload-to-RUNNING latency with idle workers;
- MB/s of a 50 MiB upload by our client (UploadTaskStream: 1 MiB chunks, written and fsync-ed as they arrive)
  next to a bare grpc.aio unary call carrying the same bytes (the ratio), with HiveMind's one-message
  UploadTask and a bare grpc.aio stream of the same chunks (no disk) beside them for comparison;
- subtasks stopped per second by StopTasks (batches of 500), next to StopTask one id at a time;
- GetNodeList latency with 1,000 registered nodes.
The pool and the bare server each run in their own process, as they would in production.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.core.config import Settings
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from hivemind_tui.services.nodepool_client import UPLOAD_CHUNK, PoolClient
from tests.helpers import task_zip

MIB = 1024 * 1024
OPTIONS = [("grpc.max_receive_message_length", 80 * MIB), ("grpc.max_send_message_length", 80 * MIB)]
BARE_SERVER = """
import asyncio, grpc, sys
async def main():
    server = grpc.aio.server(options=[("grpc.max_receive_message_length", 80 << 20)])
    async def echo(request, context):
        return len(request).to_bytes(8, "big")
    async def stream(requests, context):
        size = 0
        async for chunk in requests:
            size += len(chunk)
        return size.to_bytes(8, "big")
    handler = grpc.method_handlers_generic_handler("bare.Bare", {
        "Put": grpc.unary_unary_rpc_method_handler(echo), "Stream": grpc.stream_unary_rpc_method_handler(stream)})
    server.add_generic_rpc_handlers((handler,))
    server.add_insecure_port(sys.argv[1])
    await server.start()
    await server.wait_for_termination()
asyncio.run(main())
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_port(port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"port {port} did not open")


async def login(channel: grpc.aio.Channel, data: Path) -> str:
    password = (data / "pool" / "admin-password").read_text().strip()
    reply = await pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(username="admin", password=password))
    return reply.token


async def statuses(master: pb_grpc.MasterNodeServiceStub, token: str) -> dict[str, str]:
    reply = await master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))
    return {t.task_id: t.status for t in reply.tasks}


async def throughput(channel: grpc.aio.Channel, token: str, count: int) -> float:
    master = pb_grpc.MasterNodeServiceStub(channel)
    code = task_zip("print('ok')")
    start = time.perf_counter()

    async def client(index: int) -> None:
        for n in range(index, count, 4):
            reply = await master.UploadTask(pb.UploadTaskRequest(task_id=f"tp-{n}", task_zip=code, token=token))
            assert reply.success, reply.message

    await asyncio.gather(*(client(i) for i in range(4)))
    # Polled as our client polls: only what changed since the pool's time of the previous answer.
    seen: dict[str, str] = {}
    since = 0.0
    while True:
        reply = await master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token, updated_since=since))
        seen |= {t.task_id: t.status for t in reply.tasks if t.task_id.startswith("tp-")}
        since = reply.server_time - 1.0  # a margin for updates committed while the answer was built
        if sum(s in ("COMPLETED", "FAILED") for s in seen.values()) >= count:
            break
        await asyncio.sleep(0.2)
    return count / (time.perf_counter() - start)


async def latency_to_running(channel: grpc.aio.Channel, token: str, samples: int = 20) -> float:
    master = pb_grpc.MasterNodeServiceStub(channel)
    code = task_zip("import time; time.sleep(0.3)")
    values = []
    for n in range(samples):
        task_id = f"lat-{n}"
        start = time.perf_counter()
        await master.UploadTask(pb.UploadTaskRequest(task_id=task_id, task_zip=code, token=token))
        while (await statuses(master, token)).get(task_id) not in ("RUNNING", "COMPLETED", "FAILED"):
            await asyncio.sleep(0.005)
        values.append(time.perf_counter() - start)
        while (await statuses(master, token)).get(task_id) == "RUNNING":
            await asyncio.sleep(0.05)
    return statistics.median(values)


def write_and_fsync(folder: Path, data: bytes) -> None:
    """What the pool's disk alone needs for the zip: written in 1 MiB pieces, then fsync-ed."""
    path = folder / f"disk-{time.monotonic_ns()}"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        for start in range(0, len(data), UPLOAD_CHUNK):
            os.write(fd, data[start : start + UPLOAD_CHUNK])
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink()


async def upload_rate(address: str, token: str, bare_port: int, disk: Path) -> dict[str, float]:
    """MB/s, median of 5, of each way of sending the same 50 MiB zip, taken in turns."""
    import io
    import zipfile

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr("main.py", "print(1)")
        zf.writestr("blob.bin", os.urandom(50 * MIB - 200))
    data = buffer.getvalue()
    view = memoryview(data)
    client = PoolClient(Settings(max_upload_bytes=64 * MIB), address)
    rates: dict[str, list[float]] = {
        "ours": [],
        "unary UploadTask": [],
        "bare unary": [],
        "bare stream": [],
        "disk alone": [],
    }

    async def timed(name: str, send) -> None:
        start = time.perf_counter()
        await send()
        rates[name].append(len(data) / MIB / (time.perf_counter() - start))

    async with (
        grpc.aio.insecure_channel(address, options=OPTIONS) as channel,
        grpc.aio.insecure_channel(f"127.0.0.1:{bare_port}", options=OPTIONS) as bare_channel,
    ):
        master = pb_grpc.MasterNodeServiceStub(channel)
        put = bare_channel.unary_unary("/bare.Bare/Put")
        stream = bare_channel.stream_unary("/bare.Bare/Stream")
        for n in range(5):
            name = f"big-{time.monotonic_ns()}-{n}"

            async def unary(task_id: str = f"{name}-u") -> None:
                reply = await master.UploadTask(
                    pb.UploadTaskRequest(task_id=task_id, task_zip=data, token=token, memory_gb=100000)
                )
                assert reply.success, reply.message

            await timed("ours", lambda task_id=f"{name}-s": client.upload_task(token, task_id, data, memory_gb=100000))
            await timed("unary UploadTask", unary)
            await timed("bare unary", lambda: put(data))
            await timed(
                "bare stream",
                lambda: stream(bytes(view[i : i + UPLOAD_CHUNK]) for i in range(0, len(data), UPLOAD_CHUNK)),
            )
            await timed("disk alone", lambda: asyncio.to_thread(write_and_fsync, disk, data))
    await client.close()
    return {name: statistics.median(values) for name, values in rates.items()}


async def stop_rates(
    channel: grpc.aio.Channel, token: str, count: int = 5000, one_by_one: int = 500
) -> tuple[float, float]:
    """Tasks that cannot be placed (100,000 GB of memory) stay PENDING; stop them in batches, then one by one."""
    master = pb_grpc.MasterNodeServiceStub(channel)
    code = task_zip("print('never runs')")
    gate = asyncio.Semaphore(16)

    async def upload(task_id: str) -> None:
        async with gate:
            reply = await master.UploadTask(
                pb.UploadTaskRequest(task_id=task_id, task_zip=code, token=token, memory_gb=100_000)
            )
            assert reply.success, reply.message

    ids = [f"stop-{i:05d}" for i in range(count + one_by_one)]
    await asyncio.gather(*(upload(t) for t in ids))
    start = time.perf_counter()
    for n in range(0, count, 500):
        reply = await master.StopTasks(pb.StopTasksRequest(token=token, task_ids=ids[n : min(n + 500, count)]))
        assert reply.success and all(t.status == "STOPPED" for t in reply.tasks)
    batched = count / (time.perf_counter() - start)
    start = time.perf_counter()
    for task_id in ids[count:]:
        assert (await master.StopTask(pb.StopTaskRequest(task_id=task_id, token=token))).success
    single = one_by_one / (time.perf_counter() - start)
    return batched, single


async def node_list_latency(channel: grpc.aio.Channel, token: str, data: Path) -> float:
    secret = (data / "pool" / "worker-secret").read_text().strip()
    meta = (("x-hivemind-worker-secret", secret),)
    nodes = pb_grpc.NodeManagerServiceStub(channel)
    await asyncio.gather(
        *(
            nodes.RegisterWorkerNode(
                pb.RegisterWorkerNodeRequest(
                    node_id=f"bench-{i:04d}", hostname=f"h{i}", port=9, cpu_cores=8, memory_gb=32
                ),
                metadata=meta,
            )
            for i in range(1000)
        )
    )
    values = []
    for _ in range(20):
        start = time.perf_counter()
        reply = await nodes.GetNodeList(pb.GetNodeListRequest(token=token))
        values.append(time.perf_counter() - start)
    assert len(reply.nodes) >= 1000
    return statistics.median(values)


def start_pool(extra_env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int, Path]:
    data = Path(tempfile.mkdtemp(prefix="bench-pool-"))
    port = free_port()
    env = {
        **os.environ,
        "HIVEMIND_PASSWORD_HASH_COST": "min",
        "HIVEMIND_MAX_UPLOAD_BYTES": str(64 * MIB),
        "HIVEMIND_HEARTBEAT_TIMEOUT": "600",
        **extra_env,
    }
    command = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), "pool", "serve"]
    pool = subprocess.Popen(
        [*command, "--listen", f"127.0.0.1:{port}", "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    wait_port(port)
    return pool, port, data


async def two_workers_online(channel: grpc.aio.Channel, token: str) -> None:
    admin = pb_grpc.NodeManagerServiceStub(channel)
    while sum(n.online for n in (await admin.GetNodeList(pb.GetNodeListRequest(token=token))).nodes) < 2:
        await asyncio.sleep(0.1)


async def throughput_without_bwrap(count: int) -> float:
    """The same run with the sandbox's namespaces off (uid and limits stay): the sandbox's own cost."""
    pool, port, data = start_pool({"HIVEMIND_TASK_BWRAP": "false"})
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
            token = await login(channel, data)
            await two_workers_online(channel, token)
            return await throughput(channel, token, count)
    finally:
        pool.terminate()
        pool.wait(timeout=30)


async def run(count: int) -> None:
    bare_port = free_port()
    pool, port, data = start_pool({})
    bare = subprocess.Popen([sys.executable, "-c", BARE_SERVER, f"127.0.0.1:{bare_port}"])
    try:
        wait_port(bare_port)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}", options=OPTIONS) as channel:
            token = await login(channel, data)
            await two_workers_online(channel, token)
            latency = await latency_to_running(channel, token)
            print(
                f"upload-to-RUNNING latency, median of 20: {latency * 1000:.1f} ms "
                "(HiveMind's dispatcher polls every 10 s)"
            )
            rate = await throughput(channel, token, count)
            print(
                f"throughput: {rate:.1f} tasks/s for {count} trivial tasks, 4 clients, 2 workers "
                f"({os.cpu_count()} cores), sandbox as the worker finds it (goal >= 60/s with bwrap)"
            )
            rates = await upload_rate(f"127.0.0.1:{port}", token, bare_port, data / "pool")
            ours, baseline = rates["ours"], rates["bare unary"]
            print(
                f"50 MiB upload: ours {ours:.0f} MB/s, bare grpc.aio unary {baseline:.0f} MB/s, "
                f"ratio {ours / baseline:.2f} (goal >= 0.8); HiveMind's one-message UploadTask "
                f"{rates['unary UploadTask']:.0f} MB/s, bare grpc.aio stream of the same chunks (no disk) "
                f"{rates['bare stream']:.0f} MB/s, ratio {ours / rates['bare stream']:.2f}; the pool's disk "
                f"alone (write + fsync) {rates['disk alone']:.0f} MB/s"
            )
            batched, single = await stop_rates(channel, token)
            print(
                f"stop: {batched:.0f} subtasks/s with StopTasks (batches of 500; goal >= 2,000), "
                f"{single:.0f}/s with StopTask one id at a time"
            )
            nodes = await node_list_latency(channel, token, data)
            print(f"GetNodeList with 1,000 registered nodes: median {nodes * 1000:.1f} ms")
    finally:
        for proc in (pool, bare):
            proc.terminate()
            proc.wait(timeout=30)
    plain = await throughput_without_bwrap(count)
    print(f"throughput without bwrap (uid and limits only): {plain:.1f} tasks/s, same run")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    asyncio.run(run(parser.parse_args().tasks))


if __name__ == "__main__":
    main()
