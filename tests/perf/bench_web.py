"""Benchmark of the HTTP face (prints figures; CI does not run it).

    python tests/perf/bench_web.py [--health 200] [--tasks 50]

A pool with one local worker and 100 finished tasks, `hivemind-tui serve` in front of it, each in its own
process; then N concurrent GET /health and M concurrent GET /api/tasks on loopback, all answered, with
p50/p99 latency. A bare aiohttp handler answering `{}` in the same process as the clients is the baseline.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
from aiohttp import web

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from tests.helpers import free_port, task_zip

MODULE = [sys.executable, "-m", "hivemind_tui"]
ENV = {**os.environ, "HIVEMIND_PASSWORD_HASH_COST": "min", "HIVEMIND_REFRESH_INTERVAL": "1"}


def hivemind(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    command = [*MODULE, "--data-dir", str(data), *args]
    return subprocess.run(command, env=ENV, input=stdin, capture_output=True, text=True, check=True, timeout=300)


async def timed(http: aiohttp.ClientSession, url: str, count: int, headers: dict[str, str]) -> list[float]:
    async def one() -> float:
        start = time.perf_counter()
        async with http.get(url, headers=headers) as reply:
            await reply.read()
            assert reply.status in (200, 503), reply.status
        return time.perf_counter() - start

    return list(await asyncio.gather(*(one() for _ in range(count))))


def figures(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]
    return f"{name}: {len(seconds)} answered, p50 {statistics.median(ordered) * 1000:.1f} ms, p99 {p99 * 1000:.1f} ms"


async def bare_baseline(count: int) -> list[float]:
    app = web.Application()

    async def empty(request: web.Request) -> web.Response:
        return web.json_response({})

    app.router.add_get("/", empty)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            return await timed(http, f"http://127.0.0.1:{port}/", count, {})
    finally:
        await runner.cleanup()


async def run(health_count: int, task_count: int) -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-web-"))
    pool_port, web_port = free_port(), free_port()
    pool = subprocess.Popen(
        [*MODULE, "--data-dir", str(data), "pool", "serve", "--listen", f"127.0.0.1:{pool_port}", "--workers", "1"],
        env=ENV,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    serve = None
    try:
        while not (data / "pool" / "pool.json").exists():
            await asyncio.sleep(0.1)
        password = (data / "pool" / "admin-password").read_text().strip()
        hivemind(data, "login", "--user", "admin", "--password-stdin", stdin=password + "\n")
        job = data / "job.zip"
        job.write_bytes(task_zip())
        for _ in range(100):
            hivemind(data, "tasks", "submit", str(job))
        serve = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hivemind_tui",
                "--data-dir",
                str(data),
                "serve",
                "--listen",
                f"127.0.0.1:{web_port}",
            ],
            env=ENV,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        base = f"http://127.0.0.1:{web_port}"
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
            while True:
                try:
                    async with http.get(base + "/health") as reply:
                        if reply.status in (200, 503):
                            break
                except aiohttp.ClientError:
                    await asyncio.sleep(0.1)
            async with http.post(base + "/api/login", json={"user": "admin", "password": password}) as reply:
                token = (await reply.json())["token"]
            print(
                figures(f"{health_count} concurrent GET /health", await timed(http, base + "/health", health_count, {}))
            )
            auth = {"Authorization": f"Bearer {token}"}
            print(
                figures(
                    f"{task_count} concurrent GET /api/tasks (100 tasks)",
                    await timed(http, base + "/api/tasks", task_count, auth),
                )
            )
        print(
            figures(
                f"baseline: {health_count} concurrent GET on a bare aiohttp handler", await bare_baseline(health_count)
            )
        )
    finally:
        for proc in (serve, pool):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--health", type=int, default=200)
    parser.add_argument("--tasks", type=int, default=50)
    args = parser.parse_args()
    asyncio.run(run(args.health, args.tasks))


if __name__ == "__main__":
    main()
