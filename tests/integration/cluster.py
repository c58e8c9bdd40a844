"""A real pool with real worker processes, for tests of scheduling and task execution."""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from hivemind_tui.core.config import Settings
from hivemind_tui.proto import nodepool_pb2 as pb
from tests.conftest import fast_settings
from tests.helpers import Pool, spawn_worker, task_zip


@dataclass
class Cluster:
    pool: Pool
    data_dir: Path
    workers: dict[str, subprocess.Popen] = field(default_factory=dict)
    token: str = ""

    def worker(self, node_id: str, slots: int = 1, **env: str) -> subprocess.Popen:
        proc = spawn_worker(self.data_dir, self.pool.address, node_id, slots, env)
        self.workers[node_id] = proc
        return proc

    async def wait_online(self, *node_ids: str, timeout: float = 30) -> None:
        admin = await self.pool.admin_token()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            reply = await self.pool.nodes.GetNodeList(pb.GetNodeListRequest(token=admin))
            online = {n.node_id for n in reply.nodes if n.online}
            if set(node_ids) <= online:
                return
            for node_id in node_ids:
                proc = self.workers.get(node_id)
                if proc is not None and proc.poll() is not None:
                    raise AssertionError(f"worker {node_id} exited: {proc.stderr.read().decode()}")
            await asyncio.sleep(0.05)
        raise AssertionError(f"workers {node_ids} not online")

    async def submit(self, task_id: str, data: bytes | None = None, token: str | None = None, **fields: object) -> None:
        reply = await self.pool.master.UploadTask(
            pb.UploadTaskRequest(task_id=task_id, task_zip=data or task_zip(), token=token or self.token, **fields)
        )
        assert reply.success, reply.message

    async def task(self, task_id: str) -> pb.TaskInfo:
        admin = await self.pool.admin_token()
        for info in (await self.pool.master.GetAllUserTasks(pb.GetAllUserTasksRequest(token=admin))).tasks:
            if info.task_id == task_id:
                return info
        raise AssertionError(f"no task {task_id}")

    async def wait(self, task_id: str, statuses: Iterable[str], timeout: float = 30) -> pb.TaskInfo:
        wanted = set(statuses)
        deadline = time.monotonic() + timeout
        info = await self.task(task_id)
        while info.status not in wanted:
            if time.monotonic() > deadline:
                raise AssertionError(f"{task_id} is {info.status} ({info.message}), not {wanted}")
            await asyncio.sleep(0.05)
            info = await self.task(task_id)
        return info

    async def log(self, task_id: str) -> str:
        admin = await self.pool.admin_token()
        return (await self.pool.master.GetTasklog(pb.TasklogRequest(task_id=task_id, token=admin))).log

    async def close(self) -> None:
        for proc in self.workers.values():
            if proc.poll() is None:
                proc.terminate()
        # Waited for in a thread: the pool runs on this loop, and a worker that reports its last task while
        # it stops needs the pool to answer.
        for proc in self.workers.values():
            try:
                await asyncio.to_thread(proc.wait, 15)
            except subprocess.TimeoutExpired:
                proc.kill()
                await asyncio.to_thread(proc.wait)
        await self.pool.close()


def cluster_settings(tmp_path: Path, **overrides: object) -> Settings:
    return fast_settings(tmp_path / "data", **overrides)
