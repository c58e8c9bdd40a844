"""Benchmark of the console (prints figures next to baselines from the same run; CI does not run it).

    python tests/perf/bench_console.py [--idle-seconds 60]

1. Process start to the first painted login screen in a real pseudo-terminal, median of 5, next to a
   minimal Textual app with one Static (goal: at most 1.15x).
2. CPU of the idle console on the dashboard with 1,000 nodes and a 5 s refresh over N seconds, in a
   pseudo-terminal (goal: at most 0.5% of a core), and the bytes it writes to the terminal: the UI alone (the
   demo backend), and the real console on a real pool with 1,000 quiet nodes and an hour of their history in
   its store (what it costs after its first hour: the history it records and reads at each refresh).
3. 50,000 nodes (--nodes), headless: time to first display of the monitor (goal < 0.5 s), time to apply a
   refresh with 10% of rows changed (goal < 0.1 s), the latency of a key press right after a refresh, and RSS.
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import os
import pty
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

MINIMAL = """
from textual.app import App
from textual.widgets import Static
class Minimal(App):
    def compose(self):
        yield Static("MINIMAL READY")
Minimal().run()
"""
IDLE = """
import sys
sys.path.insert(0, {root!r})
from hivemind_tui.core.config import Settings
from hivemind_tui.core.heap import collect_less_often, one_malloc_arena
from hivemind_tui.ui.app import HivemindApp
from tests.ui.demo import DemoBackend
import time
one_malloc_arena()  # as the console does
collect_less_often()
backend = DemoBackend(Settings(refresh_interval=5.0), nodes=1000)
backend.clock = time.time  # the header's clock ticks, as it does live
HivemindApp(backend).run()
"""


def until_painted(command: list[str], marker: bytes, env: dict[str, str], timeout: float = 30) -> float:
    """Seconds from spawn until `marker` appears on the pseudo-terminal; the process is then ended."""
    master, slave = pty.openpty()
    os.set_blocking(master, False)
    start = time.perf_counter()
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    seen = b""
    try:
        while time.perf_counter() - start < timeout:
            ready, _, _ = select.select([master], [], [], 0.01)
            if ready:
                try:
                    seen += os.read(master, 65536)
                except OSError:
                    break
                if marker in seen:
                    return time.perf_counter() - start
        raise RuntimeError(f"{marker!r} never appeared")
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


def start_to_paint() -> tuple[float, float]:
    # Byte-compiled like an installed package (pip compiles at install; an editable install under
    # PYTHONDONTWRITEBYTECODE would otherwise compile our modules from source on every start).
    compileall.compile_dir(ROOT / "hivemind_tui", quiet=1)
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    data = tempfile.mkdtemp(prefix="bench-console-")
    ours_cmd = [sys.executable, "-m", "hivemind_tui", "--data-dir", data, "--pool", "127.0.0.1:9"]
    until_painted(ours_cmd, b"Log in", env)  # warm-up of each, not counted: files into the page cache
    until_painted([sys.executable, "-c", MINIMAL], b"MINIMAL READY", env)
    ours, minimal = [], []
    for _ in range(5):  # interleaved, so that a busy moment of the machine falls on both
        ours.append(until_painted(ours_cmd, b"Log in", env))
        minimal.append(until_painted([sys.executable, "-c", MINIMAL], b"MINIMAL READY", env))
    return statistics.median(ours), statistics.median(minimal)


def idle_cpu(seconds: float) -> tuple[float, float]:
    """% of a core, and bytes written to the terminal per second, while nothing changes but the clock."""
    env = {**os.environ, "TERM": "xterm-256color"}
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", IDLE.format(root=str(ROOT))],
        stdin=slave,
        stdout=slave,
        stderr=slave,
        env=env,
        close_fds=True,
    )
    os.close(slave)
    try:
        drain_until = time.monotonic() + 8
        while time.monotonic() < drain_until:  # let it start and paint
            if select.select([master], [], [], 0.1)[0]:
                os.read(master, 65536)
        info = psutil.Process(proc.pid)
        before = sum(info.cpu_times()[:2])
        written = 0
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if select.select([master], [], [], 0.2)[0]:
                written += len(os.read(master, 65536))
        used = sum(info.cpu_times()[:2]) - before
        return 100 * used / seconds, written / seconds
    finally:
        proc.kill()
        proc.wait()
        os.close(master)


async def seed_live(data: Path, address: str, nodes: int) -> None:
    """The live console's world for the idle figure: `nodes` registered (cordoned, online, quiet) on a real
    pool, and an hour of their history in the console's store, as after an hour of 5 s refreshes."""
    import grpc

    from hivemind_tui.proto import nodepool_pb2 as pb
    from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
    from hivemind_tui.services.history import History
    from hivemind_tui.services.models import NodeInfo
    from hivemind_tui.services.store import Store

    secret = (data / "pool" / "worker-secret").read_text().strip()
    password = (data / "pool" / "admin-password").read_text().strip()
    async with grpc.aio.insecure_channel(address) as channel:
        token = (
            await pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(username="admin", password=password))
        ).token
        manager = pb_grpc.NodeManagerServiceStub(channel)
        meta = (("x-hivemind-worker-secret", secret),)
        for i in range(nodes):
            node_id = f"idle-{i:04d}"
            await manager.RegisterWorkerNode(
                pb.RegisterWorkerNodeRequest(node_id=node_id, hostname=node_id, port=9, cpu_cores=8, memory_gb=32),
                metadata=meta,
            )
            await manager.SetNodeState(pb.SetNodeStateRequest(token=token, node_id=node_id, state="cordoned"))
    now = time.time()
    async with Store(data / "console.db") as store:
        history = History(store)
        fleet = [
            NodeInfo(f"idle-{i:04d}", online=True, cpu_usage=float(i % 100), memory_usage=40.0) for i in range(nodes)
        ]
        for k in range(720, 0, -1):
            await history.record_nodes(fleet, now - 5 * k)


def idle_live_cpu(seconds: float, nodes: int) -> float:
    """% of a core of the real console on a real pool (not counted) with `nodes` quiet nodes and an hour of
    their history, on the dashboard, 5 s refresh: what an idle console costs after its first hour."""
    from tests.helpers import free_port
    from tests.perf.soak_console import Terminal, run

    data = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    address = f"127.0.0.1:{free_port()}"
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "HIVEMIND_PASSWORD_HASH_COST": "min",
        "HIVEMIND_HEARTBEAT_TIMEOUT": "86400",  # the quiet nodes stay online
        "HIVEMIND_REFRESH_INTERVAL": "5",
    }
    base = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data)]
    pool = subprocess.Popen([*base, "pool", "serve", "--listen", address, "--workers", "0"], env=env)
    try:
        while not (data / "pool" / "pool.json").exists():
            time.sleep(0.1)
        password = (data / "pool" / "admin-password").read_text().strip()
        run([*base, "login", "--user", "admin", "--password-stdin"], env, password + "\n")
        asyncio.run(seed_live(data, address, nodes))
        console = Terminal([*base, "--pool", address], env)
        try:
            time.sleep(15)  # it starts, logs in, judges and paints
            info = psutil.Process(console.proc.pid)
            before = sum(info.cpu_times()[:2])
            time.sleep(seconds)
            return 100 * (sum(info.cpu_times()[:2]) - before) / seconds
        finally:
            console.close()
    finally:
        pool.terminate()
        pool.wait(timeout=30)


async def scale(count: int) -> tuple[float, float, float, float, float]:
    from hivemind_tui.core.heap import collect_less_often, one_malloc_arena
    from hivemind_tui.ui.screens.nodes import NodesScreen
    from hivemind_tui.ui.widgets.virtual_table import VirtualTable
    from tests.ui.demo_shots import demo_app, settle

    one_malloc_arena()
    collect_less_often()  # as the console does (commands/console_cmd.py)
    app = demo_app(nodes=count)
    async with app.run_test(size=(120, 40)) as pilot:
        await settle(pilot)
        start = time.perf_counter()
        await pilot.press("n")
        while not (
            isinstance(app.screen, NodesScreen) and app.screen.query_one("#node-table", VirtualTable).row_count == count
        ):
            await pilot.pause(0.001)
        await pilot.pause()
        first = time.perf_counter() - start
        screen = app.screen
        backend = app.backend
        timings = []
        for step in range(5):
            backend.change_nodes(0.1, step)
            snap = await backend.refresh()
            begin = time.perf_counter()
            screen.show(snap)
            await pilot.pause()
            timings.append(time.perf_counter() - begin)
        # As the live client hands them over: every node a new object (equal to the last one for 90% of them).
        copied = []
        for step in range(5, 10):
            backend.change_nodes(0.1, step)
            snap = await backend.refresh()
            assert snap.nodes is not None
            snap.nodes.nodes[:] = [n._replace() for n in snap.nodes.nodes]
            begin = time.perf_counter()
            screen.show(snap)
            await pilot.pause()
            copied.append(time.perf_counter() - begin)
        table = screen.query_one("#node-table", VirtualTable)
        backend.change_nodes(0.1, 9)
        snap = await backend.refresh()
        screen.show(snap)
        before = table.cursor
        start = time.perf_counter()
        await pilot.press("down")
        while table.cursor == before:
            await pilot.pause(0.001)
        key = time.perf_counter() - start
        rss = psutil.Process().memory_info().rss / 2**20
    return first, statistics.median(timings), statistics.median(copied), key, rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--idle-seconds", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=50_000)
    args = parser.parse_args()
    ours, minimal = start_to_paint()
    print(
        f"start to first painted login screen, median of 5: ours {ours:.3f} s, minimal Textual app "
        f"{minimal:.3f} s, ratio {ours / minimal:.2f} (goal <= 1.15)"
    )
    cpu, written = idle_cpu(args.idle_seconds)
    print(
        f"idle console, dashboard, 1,000 nodes, 5 s refresh, {args.idle_seconds:.0f} s: {cpu:.2f}% of a core "
        f"(goal <= 0.5%), {written:.0f} B/s written to the terminal (goal <= 500)"
    )
    live = idle_live_cpu(args.idle_seconds, 1000)
    print(
        f"idle live console (a real pool, 1,000 quiet nodes, an hour of their history), dashboard, 5 s refresh, "
        f"{args.idle_seconds:.0f} s: {live:.2f}% of a core (goal <= 0.5%)"
    )
    first, refresh, copied, key, rss = asyncio.run(scale(args.nodes))
    print(
        f"{args.nodes:,} nodes: first display {first * 1000:.0f} ms (goal < 500), refresh with 10% changed "
        f"{refresh * 1000:.1f} ms (goal < 100; {copied * 1000:.1f} ms when every node is a new object, as the "
        f"live client gives them), key press after a refresh {key * 1000:.1f} ms, RSS {rss:.0f} MB"
    )


if __name__ == "__main__":
    main()
