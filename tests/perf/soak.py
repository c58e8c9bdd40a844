"""Soak run of the embedded pool under crashes (prints figures; CI does not run it).

    python tests/perf/soak.py [--tasks 2000] [--clients 8] [--workers 2] [--crashes 8]

N tasks are uploaded by M concurrent clients (each its own pool user) and run by K worker processes,
while C crash cycles kill -9 a worker (restarted with the same node id, as systemd would) and kill -9 the
pool (restarted on the same data dir). Clients retry what a crash cut off; an upload answered TASK_EXISTS
was stored before the crash. At the end every task is checked: lost (the pool does not know it), stuck (not
finished by the deadline), failed, wrong or missing output, and run more than once (attempts > 1: allowed,
execution is at-least-once, but counted). Then SQLite's integrity_check of pool.db and the pool's RSS over
time. Defaults finish in under 5 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from tests.helpers import free_port, task_zip

ENV = {
    **os.environ,
    "HIVEMIND_PASSWORD_HASH_COST": "min",
    "HIVEMIND_HEARTBEAT_INTERVAL": "0.5",
    "HIVEMIND_HEARTBEAT_TIMEOUT": "4",
    "HIVEMIND_TASK_RETRY_LIMIT": "10",
    "HIVEMIND_RPC_DEADLINE": "5",
}
PASSWORD = "soak-pass-1"
MAIN = "import os\nn = int(os.environ['HIVEMIND_TASK_ID'].rsplit('-', 1)[1])\n"
MAIN += "os.makedirs('output', exist_ok=True)\nopen('output/square.txt', 'w').write(str(n * n))\n"
MAIN += "print('ran', os.environ['HIVEMIND_TASK_ID'])\n"


def hivemind(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), *args]
    return subprocess.run(command, env=ENV, input=stdin, capture_output=True, text=True, timeout=60, check=True)


@dataclass
class Soak:
    data: Path
    port: int
    workers: int
    pool: subprocess.Popen[bytes] | None = None
    nodes: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    rss: list[float] = field(default_factory=list)
    crashes: list[str] = field(default_factory=list)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start_pool(self) -> None:
        command = ["pool", "serve", "--listen", self.address, "--workers", "0"]
        self.pool = subprocess.Popen(
            [sys.executable, "-m", "hivemind_tui", "--data-dir", str(self.data), *command],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def start_worker(self, node_id: str) -> None:
        secret = self.data / "pool" / "worker-secret"
        command = ["worker", "--pool", self.address, "--node-id", node_id, "--slots", "2", "--secret-file", str(secret)]
        self.nodes[node_id] = subprocess.Popen(
            [sys.executable, "-m", "hivemind_tui", "--data-dir", str(self.data / node_id), *command],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def sample(self) -> None:
        if self.pool is not None and self.pool.poll() is None:
            with contextlib.suppress(psutil.NoSuchProcess):
                self.rss.append(psutil.Process(self.pool.pid).memory_info().rss / 1e6)

    def kill_pool(self) -> None:
        assert self.pool is not None
        self.pool.send_signal(signal.SIGKILL)
        self.pool.wait()
        self.crashes.append("pool")
        self.start_pool()

    def kill_worker(self, rng: random.Random) -> None:
        node_id = rng.choice(sorted(self.nodes))
        self.nodes[node_id].send_signal(signal.SIGKILL)
        self.nodes[node_id].wait()
        self.crashes.append(node_id)
        self.start_worker(node_id)

    def stop(self) -> None:
        for proc in [*self.nodes.values(), *([self.pool] if self.pool else [])]:
            if proc.poll() is None:
                proc.terminate()
        for proc in [*self.nodes.values(), *([self.pool] if self.pool else [])]:
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


async def call_until_answered(make_call, deadline: float):  # type: ignore[no-untyped-def]
    """Retry through crashes: the pool is away for a moment after each kill."""
    while True:
        try:
            return await make_call()
        except grpc.aio.AioRpcError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.2)


async def client(address: str, user: str, ids: list[str], deadline: float) -> int:
    code = task_zip(MAIN)
    retried = 0
    async with grpc.aio.insecure_channel(address) as channel:
        users, master = pb_grpc.UserServiceStub(channel), pb_grpc.MasterNodeServiceStub(channel)
        login = await call_until_answered(
            lambda: users.Login(pb.LoginRequest(username=user, password=PASSWORD), timeout=5), deadline
        )
        for task_id in ids:
            while True:
                reply = await call_until_answered(
                    lambda t=task_id: master.UploadTask(
                        pb.UploadTaskRequest(task_id=t, task_zip=code, token=login.token), timeout=10
                    ),
                    deadline,
                )
                if reply.success or reply.message.startswith("TASK_EXISTS"):
                    break
                retried += 1
                await asyncio.sleep(0.2)
    return retried


async def wait_all(soak: Soak, admin_token: str, ids: list[str], deadline: float) -> dict[str, pb.TaskInfo]:
    async with grpc.aio.insecure_channel(soak.address) as channel:
        master = pb_grpc.MasterNodeServiceStub(channel)
        while True:
            soak.sample()
            try:
                reply = await master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=admin_token), timeout=10)
                known = {t.task_id: t for t in reply.tasks if t.task_id in set(ids)}
            except grpc.aio.AioRpcError:
                known = {}
            if len(known) == len(ids) and all(t.status in ("COMPLETED", "FAILED") for t in known.values()):
                return known
            if time.monotonic() > deadline:
                return known
            await asyncio.sleep(0.5)


async def check_outputs(soak: Soak, admin_token: str, ids: list[str]) -> list[str]:
    wrong = []
    async with grpc.aio.insecure_channel(soak.address) as channel:
        master = pb_grpc.MasterNodeServiceStub(channel)
        for task_id in ids:
            reply = await master.GetTaskResult(pb.GetTaskResultRequest(task_id=task_id, token=admin_token))
            n = int(task_id.rsplit("-", 1)[1])
            try:
                with zipfile.ZipFile(io.BytesIO(reply.result_zip)) as zf:
                    ok = zf.read("output/square.txt").decode() == str(n * n)
            except (zipfile.BadZipFile, KeyError):
                ok = False
            if not ok:
                wrong.append(task_id)
    return wrong


async def run(tasks: int, clients: int, workers: int, crashes: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="soak-"))
    rng = random.Random(7)
    soak = Soak(data, free_port(), workers)
    for index in range(clients):
        hivemind(data, "pool", "add-user", f"client{index}", "--password-stdin", stdin=PASSWORD + "\n")
    started = time.monotonic()
    soak.start_pool()
    try:
        for n in range(workers):
            soak.start_worker(f"soak-w{n}")
        ids = [f"soak-{i}" for i in range(tasks)]
        deadline = started + 240
        uploads = asyncio.gather(
            *(client(soak.address, f"client{c}", ids[c::clients], deadline) for c in range(clients))
        )

        async def sample_every_second() -> None:
            while True:
                soak.sample()
                await asyncio.sleep(1)

        sampler = asyncio.ensure_future(sample_every_second())
        for cycle in range(crashes):
            await asyncio.sleep(3 + rng.random() * 3)
            soak.kill_worker(rng)
            await asyncio.sleep(1 + rng.random() * 2)
            if cycle % 2 == 1 or crashes == 1:
                soak.kill_pool()
        refused = sum(await uploads)
        password = (data / "pool" / "admin-password").read_text().strip()
        async with grpc.aio.insecure_channel(soak.address) as channel:
            admin = await call_until_answered(
                lambda: pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(username="admin", password=password)),
                deadline,
            )
        known = await wait_all(soak, admin.token, ids, deadline)
        elapsed = time.monotonic() - started
        lost = [t for t in ids if t not in known]
        stuck = [t for t, info in known.items() if info.status not in ("COMPLETED", "FAILED")]
        failed = [f"{t} ({info.message[:120]})" for t, info in known.items() if info.status == "FAILED"]
        wrong = await check_outputs(soak, admin.token, [t for t, i in known.items() if i.status == "COMPLETED"])
        sampler.cancel()
    finally:
        soak.stop()
    with sqlite3.connect(data / "pool" / "pool.db") as db:
        integrity = db.execute("PRAGMA integrity_check").fetchone()[0]
        attempts = dict(db.execute("SELECT task_id, attempts FROM tasks").fetchall())
    twice = [t for t in ids if attempts.get(t, 0) > 1]
    rss = soak.rss or [0.0]
    print(
        f"{tasks} tasks from {clients} clients on {workers} workers, {len(soak.crashes)} kills "
        f"({soak.crashes.count('pool')} of the pool) in {elapsed:.0f} s; uploads refused and retried: {refused}"
    )
    print(
        f"lost {len(lost)}, stuck {len(stuck)}, failed {len(failed)}, wrong or missing output {len(wrong)}, "
        f"run more than once {len(twice)} (at-least-once: allowed, one result counts)"
    )
    print(
        f"pool.db integrity_check: {integrity}; pool RSS {rss[len(rss) // 10]:.0f} MB a tenth of the way in, "
        f"{rss[-1]:.0f} MB at the end, {max(rss):.0f} MB max over {len(rss)} samples (one a second)"
    )
    for name, items in (("lost", lost), ("stuck", stuck), ("failed", failed), ("wrong", wrong)):
        if items:
            print(f"  {name}: {', '.join(sorted(items)[:10])}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--crashes", type=int, default=8)
    args = parser.parse_args()
    asyncio.run(run(args.tasks, args.clients, args.workers, args.crashes))


if __name__ == "__main__":
    main()
