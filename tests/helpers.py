"""Test helpers: a clock tests can move, task zips, and a real embedded pool on an ephemeral port."""

from __future__ import annotations

import gc
import io
import itertools
import os
import socket
import weakref
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir
from hivemind_tui.nodepool.server import PoolServer, grpc_options
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

SECRET_HEADER = "x-hivemind-worker-secret"


class FakeClock:
    """A clock that stands still until a test moves it."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def make_zip(files: dict[str, str | bytes], compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    """The same bytes for the same files, whenever it is called: a name alone would be stamped with the
    current time (two calls on either side of a 2-second tick differed)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression) as zf:
        for name, content in files.items():
            info = zipfile.ZipInfo(name, date_time=(2026, 1, 1, 0, 0, 0))
            info.compress_type = compression
            # What writestr gives a bare name: a directory, or a file its owner reads and writes.
            info.external_attr = (0o40775 << 16 | 0x10) if name.endswith("/") else 0o600 << 16
            zf.writestr(info, content)
    return buffer.getvalue()


def task_zip(main: str = "print('hello')\n", **extra: str | bytes) -> bytes:
    return make_zip({"main.py": main, **extra})


@dataclass
class Pool:
    """A running embedded pool plus stubs on one client channel."""

    server: PoolServer
    settings: Settings
    clock: FakeClock | None
    channel: grpc.aio.Channel
    admin_password: str
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def address(self) -> str:
        return self.server.address

    @property
    def users(self) -> pb_grpc.UserServiceStub:
        return pb_grpc.UserServiceStub(self.channel)

    @property
    def master(self) -> pb_grpc.MasterNodeServiceStub:
        return pb_grpc.MasterNodeServiceStub(self.channel)

    @property
    def nodes(self) -> pb_grpc.NodeManagerServiceStub:
        return pb_grpc.NodeManagerServiceStub(self.channel)

    @property
    def workers(self) -> pb_grpc.WorkerNodeServiceStub:
        return pb_grpc.WorkerNodeServiceStub(self.channel)

    @property
    def worker_secret(self) -> str:
        return self.server.paths.worker_secret.read_text().strip()

    def worker_metadata(self, node_id: str = "") -> tuple[tuple[str, str], ...]:
        meta = ((SECRET_HEADER, self.worker_secret),)
        return (*meta, ("x-hivemind-node-id", node_id)) if node_id else meta

    async def add_user(
        self, name: str, role: str = "operator", password: str = "pw-" + "x" * 8, balance: int = 1000
    ) -> str:
        assert self.server.parts is not None
        await self.server.parts.accounts.create_user(name, password, role, balance)
        reply = await self.users.Login(pb.LoginRequest(username=name, password=password))
        assert reply.success, reply.message
        self.tokens[name] = reply.token
        return reply.token

    async def admin_token(self) -> str:
        if "admin" not in self.tokens:
            reply = await self.users.Login(pb.LoginRequest(username="admin", password=self.admin_password))
            assert reply.success
            self.tokens["admin"] = reply.token
        return self.tokens["admin"]

    async def close(self) -> None:
        await self.channel.close()
        await self.server.stop(grace=1)


async def start_pool(settings: Settings, clock: FakeClock | None = None) -> Pool:
    kwargs = {"clock": clock} if clock is not None else {}
    server = PoolServer(settings, DataDir(settings.data_path), listen="127.0.0.1:0", **kwargs)
    await server.start()
    channel = grpc.aio.insecure_channel(server.address, options=grpc_options(settings))
    password = server.paths.admin_password.read_text().strip()
    return Pool(server, settings, clock, channel, password)


def files_in(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.exists() else set()


def _own_ports() -> Iterator[int]:
    """Below the kernel's ephemeral range, where connect() draws source ports, one stretch per xdist worker:
    a port the kernel handed out as free (bind to 0) could be any outgoing connection's before a pool binds it,
    which made `pool serve` fail now and then with "the port is in use"."""
    low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
    stretch = (low - 10_000) // 16
    start = 10_000 + (worker % 16) * stretch
    return itertools.cycle(range(start, start + stretch))


_PORTS = _own_ports()


def free_port() -> int:
    """A loopback port nothing listens on, that no other test of this run is handed."""
    while True:
        port = next(_PORTS)
        with socket.socket() as sock:
            try:
                sock.bind(("127.0.0.1", port))
            except OSError:
                continue
        return port


FAST_ENV = {
    "HIVEMIND_PASSWORD_HASH_COST": "min",
    "HIVEMIND_HEARTBEAT_INTERVAL": "0.2",
    "HIVEMIND_HEARTBEAT_TIMEOUT": "2",
    "HIVEMIND_RPC_DEADLINE": "5",
}


def spawn_worker(
    data_dir: Path,
    pool_address: str,
    node_id: str,
    slots: int = 1,
    env: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
):
    """A real `hivemind-tui worker` process."""
    import os
    import subprocess
    import sys

    full_env = {**os.environ, **FAST_ENV, **(env or {})}
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hivemind_tui",
            "--data-dir",
            str(data_dir),
            "worker",
            "--pool",
            pool_address,
            "--node-id",
            node_id,
            "--slots",
            str(slots),
            *extra,
        ],
        env=full_env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


class Cycle:
    """Garbage only the cyclic collector frees: it refers to itself."""

    def __init__(self) -> None:
        self.me = self


def extra_malloc_arenas(pid: int) -> int:
    """glibc's malloc arenas of a process beyond its main heap: each reserves 64 MiB of address space, the part
    in use and the unusable rest side by side in /proc/PID/maps."""
    spans = []
    for line in Path(f"/proc/{pid}/maps").read_text().splitlines():
        addresses, perms, *_ = line.split()
        start, end = (int(part, 16) for part in addresses.split("-"))
        spans.append((start, end, perms))
    return sum(
        1
        for (start, end, perms), (later, last, rest) in itertools.pairwise(spans)
        if perms == "rw-p" and rest == "---p" and end == later and last - start == 64 << 20
    )


def old_cyclic_garbage() -> weakref.ref[Cycle]:
    """A cycle that lived through collections (as a finished Textual worker or a dismissed screen does) and then
    became garbage: it sits in the oldest generation, which only a full collection walks."""
    cycle = Cycle()
    gc.collect()
    return weakref.ref(cycle)
