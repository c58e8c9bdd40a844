"""Benchmark of the client services (prints figures; CI does not run it).

    python tests/perf/bench_client.py

- `status --json` cold start: process start to the JSON on stdout, median of 5;
- client-side cost of listing 10,000 tasks and 1,000 nodes: ms to turn the replies into our dataclasses,
  and the RSS they add;
- a tiny rpc's round trip through PoolClient next to a bare grpc.aio stub call in the same run.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.services.nodepool_client import PoolClient, node_from_pb, task_from_pb
from tests.conftest import fast_settings
from tests.helpers import start_pool


def cold_status(data: Path, address: str) -> float:
    values = []
    env = {**os.environ, "HIVEMIND_DATA_DIR": str(data)}
    for _ in range(5):
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "hivemind_tui", "--pool", address, "status", "--json"],
            env=env,
            capture_output=True,
            check=False,
        )
        values.append(time.perf_counter() - start)
    return statistics.median(values)


def listing_cost() -> tuple[float, float, float, float]:
    tasks = pb.GetAllTasksResponse(
        tasks=[
            pb.TaskInfo(
                task_id=f"task-{i}", status="RUNNING", owner="alice", created_at=1.0, updated_at=2.0, message="x" * 40
            )
            for i in range(10_000)
        ]
    ).SerializeToString()
    node_list = [
        pb.NodeInfo(node_id=f"node-{i}", hostname=f"h{i}", online=True, cpu_usage=50.0, slots=4) for i in range(1000)
    ]
    nodes = pb.GetNodeListResponse(nodes=node_list).SerializeToString()
    proc = psutil.Process()
    rss0 = proc.memory_info().rss
    start = time.perf_counter()
    parsed_tasks = [task_from_pb(t) for t in pb.GetAllTasksResponse.FromString(tasks).tasks]
    task_ms = (time.perf_counter() - start) * 1000
    rss1 = proc.memory_info().rss
    start = time.perf_counter()
    parsed_nodes = [node_from_pb(n) for n in pb.GetNodeListResponse.FromString(nodes).nodes]
    node_ms = (time.perf_counter() - start) * 1000
    rss2 = proc.memory_info().rss
    assert len(parsed_tasks) == 10_000 and len(parsed_nodes) == 1000
    return task_ms, (rss1 - rss0) / 2**20, node_ms, (rss2 - rss1) / 2**20


async def round_trips(address: str, settings: object) -> tuple[float, float]:
    import grpc

    from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

    client = PoolClient(settings, address)  # type: ignore[arg-type]
    ours, bare = [], []
    async with grpc.aio.insecure_channel(address) as channel:
        stub = pb_grpc.MasterNodeServiceStub(channel)
        await stub.Health(pb.HealthRequest())
        await client.check_health()
        for _ in range(500):
            start = time.perf_counter()
            await stub.Health(pb.HealthRequest(), timeout=5)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            await client.check_health()
            ours.append(time.perf_counter() - start)
    await client.close()
    return statistics.median(ours) * 1000, statistics.median(bare) * 1000


async def main() -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-client-"))
    pool = await start_pool(fast_settings(data / "pool-data"))
    try:
        ours, bare = await round_trips(pool.address, pool.settings)
        print(
            f"tiny rpc (Health) round trip, median of 500: ours {ours:.3f} ms, bare grpc.aio {bare:.3f} ms, "
            f"overhead {ours - bare:.3f} ms (goal < 0.5 ms)"
        )
        cold = await asyncio.to_thread(cold_status, data / "cli-data", pool.address)
        print(f"`status --json` cold start, median of 5: {cold * 1000:.0f} ms")
    finally:
        await pool.close()
    task_ms, task_mb, node_ms, node_mb = listing_cost()
    print(
        f"client cost of 10,000 tasks: {task_ms:.0f} ms, +{task_mb:.1f} MB RSS; "
        f"1,000 nodes: {node_ms:.1f} ms, +{node_mb:.1f} MB RSS"
    )


if __name__ == "__main__":
    asyncio.run(main())
