"""Benchmark of the pool and the CLI at cluster scale (prints figures next to baselines; CI does not run it).

    python tests/perf/bench_pool_scale.py [--tasks 100000] [--nodes 1000]

A real pool process whose pool.db holds 100,000 tasks of the admin and 1,000 registered nodes. Measured:
- `hivemind-tui tasks list --json`: process start to the end of its output (goal <= 1 s), next to a bare
  grpc.aio GetAllUserTasks of the same list in this process (the transport's own cost);
- the pool's CPU for one console refresh, as the monitor makes it (Health, GetAllUserTasks after the last
  answer's change number, GetNodeList, GetBalance) with 1% of the tasks and a fifth of the nodes changed
  between refreshes (goal <= 20 ms), and each of those rpcs alone.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.nodepool.storage import PoolPaths, PoolStorage
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from tests.helpers import free_port

OPTIONS = [("grpc.max_receive_message_length", 256 << 20), ("grpc.max_send_message_length", 256 << 20)]
STATUSES = ("COMPLETED", "COMPLETED", "RUNNING", "PENDING", "FAILED")
STEPS = 30


async def seed(data: Path, tasks: int, nodes: int) -> None:
    storage = PoolStorage(PoolPaths(data / "pool"))
    await storage.open()
    now = time.time()
    async with storage.write() as conn:
        await conn.executemany(
            "INSERT INTO tasks (task_id, owner, status, created_at, updated_at, worker) "
            "VALUES (?, 'admin', ?, ?, ?, ?)",
            [
                (f"task-{i:06d}", STATUSES[i % 5], now - 86400 + i * 0.1, now - 3600, f"n{i % nodes}")
                for i in range(tasks)
            ],
        )
        await conn.executemany(
            "INSERT INTO nodes (node_id, hostname, address, port, cpu_cores, memory_gb, slots, state, registered_at, "
            "last_heartbeat) VALUES (?, ?, '127.0.0.1', 9, 8, 32, 4, 'cordoned', ?, ?)",
            [(f"n{i}", f"h{i}", now, now + 86400) for i in range(nodes)],
        )
    await storage.close()


async def refresh_cpu(address: str, token: str, pool_pid: int, data: Path, tasks: int) -> dict[str, float]:
    """Pool CPU per console refresh and per rpc in it (means over STEPS refreshes: the kernel counts CPU in
    10 ms ticks), 1% of the tasks changed (by the pool's own clock) between refreshes."""
    pool = psutil.Process(pool_pid)
    used: dict[str, float] = {}

    def cpu() -> float:
        return float(sum(pool.cpu_times()[:2]))

    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        master = pb_grpc.MasterNodeServiceStub(channel)
        nodes = pb_grpc.NodeManagerServiceStub(channel)
        users = pb_grpc.UserServiceStub(channel)
        seq = (await master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))).seq
        for step in range(STEPS):
            db = PoolStorage(PoolPaths(data / "pool"))
            await db.open()
            async with db.write() as conn:
                # Running and finished tasks change; a waiting one is changed by the scheduler alone, whose
                # own sweep (a tick's work, not the refresh's) would then run inside the measured window.
                await conn.execute(
                    "UPDATE tasks SET updated_at = ? WHERE rowid IN "
                    "(SELECT rowid FROM tasks WHERE status != 'PENDING' LIMIT ? OFFSET ?)",
                    (time.time(), tasks // 100, step * (tasks // 100)),
                )
                # A fifth of the nodes heartbeat between two refreshes (5 s heartbeats, a 1 s refresh).
                await conn.execute(
                    "UPDATE nodes SET cpu_usage = ?, last_heartbeat = last_heartbeat + 1 WHERE rowid % 5 = ?",
                    (step % 100, step % 5),
                )
            await db.close()
            calls = {
                "Health": lambda: master.Health(pb.HealthRequest()),
                "GetAllUserTasks": lambda after=seq: master.GetAllUserTasks(
                    pb.GetAllUserTasksRequest(token=token, after_seq=after)
                ),
                "GetNodeList": lambda: nodes.GetNodeList(pb.GetNodeListRequest(token=token)),
                "GetBalance": lambda: users.GetBalance(pb.GetBalanceRequest(token=token)),
            }
            for name, call in calls.items():
                before = cpu()
                reply = await call()
                used[name] = used.get(name, 0.0) + (cpu() - before) / STEPS
                if name == "GetAllUserTasks":
                    assert len(reply.tasks) == tasks // 100, len(reply.tasks)
                    seq = reply.seq
    return used


async def bare_list(address: str, token: str) -> tuple[float, int]:
    async with grpc.aio.insecure_channel(address, options=OPTIONS) as channel:
        start = time.perf_counter()
        reply = await pb_grpc.MasterNodeServiceStub(channel).GetAllUserTasks(pb.GetAllUserTasksRequest(token=token))
        return time.perf_counter() - start, len(reply.tasks)


def settled(pid: int, timeout: float = 120.0) -> None:
    """Until the pool's start-up work is done (its first sweeps word why 20,000 seeded tasks wait): the
    figures are those of a pool that runs, not of one that starts."""
    pool = psutil.Process(pid)
    deadline = time.monotonic() + timeout
    while pool.cpu_percent(interval=1.0) > 5.0 and time.monotonic() < deadline:
        pass


async def login(address: str, data: Path) -> str:
    password = (data / "pool" / "admin-password").read_text().strip()
    async with grpc.aio.insecure_channel(address) as channel:
        return str(
            (await pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(username="admin", password=password))).token
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=100_000)
    parser.add_argument("--nodes", type=int, default=1000)
    args = parser.parse_args()
    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    env = {**os.environ, "HIVEMIND_PASSWORD_HASH_COST": "min", "HIVEMIND_HEARTBEAT_TIMEOUT": "600"}
    base = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data)]
    asyncio.run(seed(data, args.tasks, args.nodes))
    address = f"127.0.0.1:{free_port()}"
    pool = subprocess.Popen([*base, "pool", "serve", "--listen", address, "--workers", "0"], env=env)
    try:
        while not (data / "pool" / "pool.json").exists():
            time.sleep(0.1)
        password = (data / "pool" / "admin-password").read_text().strip()
        subprocess.run(
            [*base, "login", "--user", "admin", "--password-stdin"],
            env=env,
            input=password + "\n",
            capture_output=True,
            text=True,
            check=True,
        )
        token = asyncio.run(login(address, data))
        settled(pool.pid)
        bare, count = asyncio.run(bare_list(address, token))
        # Byte-compiled like an installed package (pip compiles at install; an editable install under
        # PYTHONDONTWRITEBYTECODE would otherwise compile our modules from source on every run).
        compileall.compile_dir(Path(__file__).resolve().parents[2] / "hivemind_tui", quiet=1)
        runs = []
        for _ in range(3):
            start = time.perf_counter()
            out = subprocess.run([*base, "tasks", "list", "--json"], env=env, capture_output=True, check=True)
            runs.append(time.perf_counter() - start)
        cpu = asyncio.run(refresh_cpu(address, token, pool.pid, data, args.tasks))
    finally:
        pool.terminate()
        pool.wait(timeout=30)
    print(
        f"tasks list --json, {count:,} tasks: median of 3 {statistics.median(runs):.2f} s, "
        f"{len(out.stdout) / 2**20:.1f} MiB (goal <= 1 s); a bare grpc.aio GetAllUserTasks of the same list "
        f"{bare:.2f} s"
    )
    each = ", ".join(f"{name} {seconds * 1000:.1f}" for name, seconds in cpu.items())
    print(
        f"pool CPU per console refresh ({args.tasks:,} tasks, 1% changed; {args.nodes:,} nodes): "
        f"{sum(cpu.values()) * 1000:.1f} ms (goal <= 20 ms); by rpc, ms: {each}"
    )


if __name__ == "__main__":
    main()
