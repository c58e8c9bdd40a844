"""Soak run of the console as it is used for weeks in tmux (prints figures; CI does not run it).

    python tests/perf/soak_console.py [--minutes 60] [--nodes 1000] [--refresh 1]

The real console, in a pseudo-terminal, on a real embedded pool with 2 local workers, 1 s refresh:
- 1,000 more nodes registered and heartbeating with changing figures (cordoned, so that they take no task);
- a task submitted every 2 s, each finishing within seconds (tasks finish all the time);
- the console shows the dashboard, then the tasks screen, then follows the log of a long task that prints a
  line a second, switching every 30 s.
Each console has a data dir of its own (its own `console.db`), logged in as the pool's admin.
The console's RSS (and its RssAnon, RSS less the pages of files) and CPU are sampled every 30 s. Printed: the
samples, and the growth from the 5-minute sample to the last (goal <= 5%), next to the growth of a minimal
Textual app left running in a pseudo-terminal as long, and the console's CPU in the first and the last 5
minutes.

`--beside "NAME=VALUE ..."` runs one more console with those environment variables beside the first, driven and
sampled the same way on the same pool: an A/B of a setting under the very same load (for example `--beside
PYTHONMALLOC=malloc`); given again, it adds another console (A/B/C). `--screens` names what the console walks
through (default `d,t,log`); `--beside-screens` gives the other consoles their own walk (which also starts one
without `--beside`), to find which screen's use grows: `--beside-screens d` keeps it on the dashboard.
`--allocators` puts `alloc_probe/` on each console's PYTHONPATH: each sample then says where the memory sits
(pymalloc's arenas and live blocks, glibc's heap and what of it is in use), and the end, how much of the growth
after minute 5 each holds: live objects, or memory an allocator keeps for reuse.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import pty
import select
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import NamedTuple

import grpc
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from tests.helpers import free_port, task_zip

MINIMAL = """
from textual.app import App
from textual.widgets import Static
class Minimal(App):
    def compose(self):
        yield Static("MINIMAL READY")
Minimal().run()
"""
SAMPLE_EVERY = 30.0
SWITCH_EVERY = 30.0
# What the console is shown in turn: the dashboard, the tasks screen, the log of the long task.
SCREENS = "d,t,log"
PROBE_DIR = Path(__file__).resolve().parent / "alloc_probe"
LONG_TASK = "import time\nfor i in range(100000):\n    print('line', i, flush=True)\n    time.sleep(1)\n"


class Terminal:
    """A process in a pseudo-terminal whose output is read (and dropped) so that it never blocks."""

    def __init__(self, command: list[str], env: dict[str, str], probe: Path | None = None) -> None:
        self.probe = probe  # where its allocator probe writes (alloc_probe/sitecustomize.py), if it has one
        if probe is not None:
            path = os.pathsep.join(filter(None, [str(PROBE_DIR), env.get("PYTHONPATH", "")]))
            env = {**env, "PYTHONPATH": path, "HIVEMIND_ALLOC_PROBE": str(probe)}
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
        os.close(slave)
        self.last_output = b""  # what it wrote last: a traceback, if it died
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        while True:
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    data = os.read(self.master, 65536)
                except OSError:
                    return
                self.last_output = (self.last_output + data)[-8192:]
            elif self.proc.poll() is not None:
                return

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            time.sleep(0.5)  # what it wrote last
            tail = self.last_output.decode(errors="replace")
            raise RuntimeError(f"the console exited ({self.proc.returncode}); its last output:\n{tail}")

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def show(self, target: str) -> None:
        """Brings up a screen by its key, or the long task's log (the tasks screen, its row, enter, the log)."""
        if target == "log":
            self.press("t")
            time.sleep(1.0)
            self.press("/soak-long\r")
            time.sleep(1.0)
            self.press("l")
        else:
            self.press("\x1b\x1b")
            time.sleep(0.5)
            self.press(target)

    def memory_mb(self) -> tuple[float, float]:
        """RSS, and the part of it that is the process's own memory (heap, arenas, stacks: RssAnon), without
        the pages of its libraries' files that it has touched so far, which grow as code runs the first time."""
        memory = psutil.Process(self.proc.pid).memory_info()
        return memory.rss / 2**20, (memory.rss - memory.shared) / 2**20

    def allocators(self) -> dict[str, float] | None:
        """The probe's latest figures (bytes), if the console has a probe and it has written."""
        if self.probe is None or not self.probe.exists():
            return None
        lines = self.probe.read_text().splitlines()
        return json.loads(lines[-1]) if lines else None

    def cpu_seconds(self) -> float:
        return float(sum(psutil.Process(self.proc.pid).cpu_times()[:2]))

    def close(self) -> None:
        self.proc.kill()
        self.proc.wait()
        os.close(self.master)


def run(command: list[str], env: dict[str, str], stdin: str = "") -> str:
    done = subprocess.run(command, env=env, input=stdin, capture_output=True, text=True, timeout=60, check=True)
    return done.stdout


async def cluster_load(address: str, data: Path, nodes: int, tasks: bool, stop: asyncio.Event) -> None:
    """Extra nodes heartbeating with moving figures, and a short task every 2 s (unless `tasks` is false)."""
    secret = (data / "pool" / "worker-secret").read_text().strip()
    password = (data / "pool" / "admin-password").read_text().strip()
    meta = (("x-hivemind-worker-secret", secret),)
    async with grpc.aio.insecure_channel(address) as channel:
        token = (
            await pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(username="admin", password=password))
        ).token
        manager = pb_grpc.NodeManagerServiceStub(channel)
        master = pb_grpc.MasterNodeServiceStub(channel)
        ids = [f"soak-{i:04d}" for i in range(nodes)]
        for node_id in ids:
            await manager.RegisterWorkerNode(
                pb.RegisterWorkerNodeRequest(node_id=node_id, hostname=node_id, port=9, cpu_cores=8, memory_gb=32),
                metadata=meta,
            )
            await manager.SetNodeState(pb.SetNodeStateRequest(token=token, node_id=node_id, state="cordoned"))
        await master.UploadTask(pb.UploadTaskRequest(task_id="soak-long", task_zip=task_zip(LONG_TASK), token=token))
        short = task_zip("import time\nprint('working')\ntime.sleep(2)\nprint('done')\n")
        # Tasks and heartbeats go at their own pace: 1,000 heartbeats keep the pool busy for seconds (a core),
        # and a task waiting on them came every 6.5 s instead of 2.
        runs = [heartbeats(manager, meta, ids, stop)] + ([submit_tasks(master, token, short, stop)] if tasks else [])
        for name, (done, failed) in zip(("beats", "tasks"), await asyncio.gather(*runs), strict=False):
            print(f"load: {done} {name}, {failed} rpcs failed and were not retried", flush=True)


async def heartbeats(
    manager: pb_grpc.NodeManagerServiceStub, meta: tuple[tuple[str, str], ...], ids: list[str], stop: asyncio.Event
) -> tuple[int, int]:
    """Every node reports moving figures, then the next round 2 s later; the rounds and the failed rpcs."""
    beat = failed = 0
    while not stop.is_set():
        # An rpc that fails (1,000 heartbeats at once now and then meet CANCELLED) is counted and the load goes
        # on: it stopped for good at the first one, and nodes then went offline all at once.
        calls = [
            manager.ReportStatus(
                pb.RunningStatusRequest(
                    node_id=node_id, status="Idle", cpu_usage=float((i + beat) % 100), memory_usage=40.0
                ),
                metadata=meta,
            )
            for i, node_id in enumerate(ids)
        ]
        failed += count_failed(await asyncio.gather(*calls, return_exceptions=True))
        beat += 1
        await wait_or_stop(stop, 2.0)
    return beat, failed


async def submit_tasks(
    master: pb_grpc.MasterNodeServiceStub, token: str, task: bytes, stop: asyncio.Event
) -> tuple[int, int]:
    """A short task every 2 s; the tasks submitted and the uploads that failed."""
    submitted = failed = 0
    while not stop.is_set():
        upload = pb.UploadTaskRequest(task_id=f"soak-t{submitted:06d}", task_zip=task, token=token)
        try:
            await master.UploadTask(upload)
        except grpc.aio.AioRpcError:
            failed += 1
        submitted += 1
        await wait_or_stop(stop, 2.0)
    return submitted, failed


def count_failed(outcomes: list[object]) -> int:
    """How many rpcs failed; anything else raised is the load's own bug and stops the run."""
    if errors := [o for o in outcomes if isinstance(o, BaseException) and not isinstance(o, grpc.aio.AioRpcError)]:
        raise errors[0]
    return sum(isinstance(o, grpc.aio.AioRpcError) for o in outcomes)


async def wait_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)


class Sample(NamedTuple):
    minute: float
    rss: float
    cpu: float
    """% of a core used since the previous sample."""
    anon: float
    allocators: dict[str, float] | None
    """The console's allocator probe at about that time (--allocators), in bytes."""


def drive(consoles: list[Terminal], walks: list[list[str]], minutes: float, samples: list[list[Sample]]) -> None:
    """Samples of each console, every SAMPLE_EVERY seconds."""
    start = time.monotonic()
    next_sample = next_switch = start
    last = [(console.cpu_seconds(), start) for console in consoles]
    screen = 0
    while (now := time.monotonic()) - start < minutes * 60:
        for console in consoles:
            console.check_alive()
        if now >= next_switch:
            pairs = zip(consoles, walks, strict=False)
            shows = [threading.Thread(target=c.show, args=(w[screen % len(w)],)) for c, w in pairs]
            for show in shows:
                show.start()
            for show in shows:
                show.join()
            screen += 1
            next_switch = now + SWITCH_EVERY
        if now >= next_sample:
            line = []
            for n, console in enumerate(consoles):
                cpu = console.cpu_seconds()
                used = 100 * (cpu - last[n][0]) / max(now - last[n][1], 1e-9) if samples[n] else 0.0
                last[n] = (cpu, now)
                rss, anon = console.memory_mb()
                sample = Sample((now - start) / 60, rss, used, anon, console.allocators())
                samples[n].append(sample)
                line.append(f"RSS {sample.rss:.0f} MB (anon {sample.anon:.0f}), CPU {used:.1f}%")
                if sample.allocators:
                    line[-1] += " " + allocator_text(sample.allocators)
            print(f"  {(now - start) / 60:5.1f} min: console " + " | beside: ".join(line), flush=True)
            next_sample = now + SAMPLE_EVERY
        time.sleep(0.5)


def allocator_text(figures: dict[str, float]) -> str:
    mb = {name: value / 2**20 for name, value in figures.items()}
    return (
        f"[pymalloc {mb['pymalloc_arenas']:.0f} MB, live {mb['pymalloc_live']:.1f}; "
        f"glibc heap {mb['glibc_heap']:.1f} MB, in use {mb['glibc_in_use']:.1f}]"
    )


def allocator_growth(samples: list[Sample]) -> str:
    """How each allocator figure moved from the 5-minute sample to the last (MB): where the growth sits."""
    probed = [sample for sample in samples if sample.allocators]
    if not probed:
        return ""
    first = next((sample for sample in probed if sample.minute >= 5.0), probed[0]).allocators or {}
    last = probed[-1].allocators or {}
    names = ("pymalloc_arenas", "pymalloc_live", "pymalloc_free_blocks", "pymalloc_empty_pools", "glibc_heap")
    names += ("glibc_in_use", "glibc_free", "glibc_mmapped")
    return ", ".join(f"{name} {(last[name] - first[name]) / 2**20:+.1f}" for name in names)


def growth(samples: list[Sample], figure: str = "rss") -> float:
    """Growth (%) of a figure of the samples ("rss", "anon") from the 5-minute sample to the last."""
    after_five = next((sample for sample in samples if sample.minute >= 5.0), samples[0])
    return 100 * (getattr(samples[-1], figure) - getattr(after_five, figure)) / getattr(after_five, figure)


def median_growth(samples: list[Sample]) -> tuple[float, float]:
    """RSS (MB) as the median of the samples of minutes 5 to 8 and of the last 5 minutes. The RSS rises and
    falls by a few MB with the collector's sweeps a minute or two apart, so two single samples differ by their
    moment too: in one 30-minute run, +11.3% and +4.9% from sample to sample, +9.6% and +4.1% by medians."""
    end = samples[-1].minute
    early = [sample.rss for sample in samples if 5.0 <= sample.minute <= 8.0] or [samples[0].rss]
    late = [sample.rss for sample in samples if sample.minute >= end - 5.0]
    return statistics.median(early), statistics.median(late)


def cpu_between(samples: list[Sample], first: float, last: float) -> float:
    """The console's mean CPU (% of a core) over the samples from minute `first` to minute `last`."""
    used = [sample.cpu for sample in samples if first < sample.minute <= last]
    return sum(used) / max(len(used), 1)


def console_command(data: Path, n: int, address: str) -> list[str]:
    """Console `n` in a data dir of its own, logged in as the pool's admin (the login's tokens copied), as an
    operator runs one console per data dir: consoles sharing one `console.db` each wrote their history into
    it (137 MB after an hour of three) and read back each other's."""
    own = data / f"console-{n}"
    shutil.copytree(data / "tokens", own / "tokens")
    return [sys.executable, "-m", "hivemind_tui", "--data-dir", str(own), "--pool", address]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=60.0)
    parser.add_argument("--nodes", type=int, default=1000)
    parser.add_argument("--refresh", type=float, default=1.0)
    parser.add_argument(
        "--beside",
        action="append",
        default=[],
        metavar="'NAME=VALUE ...'",
        help="one more console with this environment (repeatable: one console each)",
    )
    parser.add_argument(
        "--no-tasks", action="store_true", help="submit no short tasks: whether growth follows the tasks or the use"
    )
    parser.add_argument("--screens", default=SCREENS, help=f"what the console walks through (default {SCREENS})")
    parser.add_argument("--beside-screens", help="what the other consoles walk through (default: --screens)")
    parser.add_argument(
        "--allocators", action="store_true", help="probe each console's allocators (alloc_probe/sitecustomize.py)"
    )
    args = parser.parse_args()
    # Stopped with SIGTERM (kill, pkill), it still closes its consoles, pool and minimal app: left behind
    # with their terminal gone, they spun at up to 70% of a core each.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    besides = [dict(pair.split("=", 1) for pair in item.split()) for item in args.beside]
    if args.beside_screens and not besides:
        besides = [{}]
    walks = [args.screens.split(",")] + [(args.beside_screens or args.screens).split(",")] * len(besides)
    data = Path(tempfile.mkdtemp(prefix="soak-console-"))
    port = free_port()
    address = f"127.0.0.1:{port}"
    env = {
        **os.environ,
        "TERM": "xterm-256color",
        "HIVEMIND_PASSWORD_HASH_COST": "min",
        "HIVEMIND_HEARTBEAT_TIMEOUT": "600",
        "HIVEMIND_REFRESH_INTERVAL": str(args.refresh),
    }
    base = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data)]
    pool = subprocess.Popen(
        [*base, "pool", "serve", "--listen", address, "--workers", "2"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    stop = asyncio.Event()
    loop = asyncio.new_event_loop()
    try:
        while not (data / "pool" / "pool.json").exists():
            time.sleep(0.1)
        password = (data / "pool" / "admin-password").read_text().strip()
        run([*base, "login", "--user", "admin", "--password-stdin"], env, password + "\n")
        work = cluster_load(address, data, args.nodes, not args.no_tasks, stop)
        load = threading.Thread(target=lambda: loop.run_until_complete(work))
        load.start()
        probes = [data / f"alloc-probe-{n}.jsonl" if args.allocators else None for n in range(1 + len(besides))]
        consoles = [
            Terminal(console_command(data, n, address), {**env, **beside}, probe)
            for n, (beside, probe) in enumerate(zip([{}, *besides], probes, strict=True))
        ]
        minimal = Terminal([sys.executable, "-c", MINIMAL], env)
        samples: list[list[Sample]] = [[] for _ in consoles]
        minimal_start = 0.0
        try:
            time.sleep(5)
            minimal_start = minimal.memory_mb()[0]
            drive(consoles, walks, args.minutes, samples)
            minimal_end = minimal.memory_mb()[0]
        finally:
            for console in consoles:
                console.close()
            minimal.close()
            loop.call_soon_threadsafe(stop.set)
            load.join(timeout=30)
    finally:
        pool.terminate()
        pool.wait(timeout=30)
    tasks = "no short tasks" if args.no_tasks else "a task every 2 s"
    names = ["console"] + [f"console beside, with {item or 'the same environment'}" for item in args.beside or [""]]
    for name, taken, walk in zip(names, samples, walks, strict=False):
        print(
            f"{name}, {args.minutes:g} min, {args.nodes:,} extra nodes, {args.refresh:g} s refresh, {tasks}, "
            f"showing {' / '.join(walk)}: RSS {taken[0].rss:.0f} -> {taken[-1].rss:.0f} MB, growth after "
            f"the first 5 min {growth(taken):+.1f}% (goal <= 5%); of which its own (RssAnon) "
            f"{taken[0].anon:.0f} -> {taken[-1].anon:.0f} MB, {growth(taken, 'anon'):+.1f}%"
        )
        early, late = median_growth(taken)
        print(
            f"  median RSS of minutes 5-8 -> of the last 5: {early:.0f} -> {late:.0f} MB, "
            f"{100 * (late - early) / early:+.1f}%"
        )
        if held := allocator_growth(taken):
            print(f"  after the first 5 min, in MB: {held}")
        end = taken[-1].minute
        print(
            f"  its CPU: {cpu_between(taken, 0.0, 5.0):.1f}% of a core in the first 5 min, "
            f"{cpu_between(taken, end - 5.0, end):.1f}% in the last 5 (a refresh must not cost more as history grows)"
        )
    print(f"a minimal Textual app in the same run: {minimal_start:.0f} -> {minimal_end:.0f} MB")


if __name__ == "__main__":
    main()
