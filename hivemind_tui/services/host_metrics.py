"""This host's own figures from psutil: CPU, load, memory, swap, disks, disk and network rates, ourselves.

`PsutilMetrics.sample()` blocks briefly (psutil reads /proc), so callers run it in a thread. Rates come
from the difference to the previous sample. Connections are counted every `connections_every` samples, on
Linux from the kernel's socket counters (`inet_sockets`). Tests and snapshots pass a `MetricsSource` with fixed
figures instead of reading the live machine.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil


@dataclass(frozen=True)
class DiskUsage:
    mount: str
    percent: float
    used_bytes: int
    total_bytes: int


@dataclass(frozen=True)
class HostSample:
    taken_at: float
    cpu_percent: float
    per_core: tuple[float, ...]
    load: tuple[float, float, float]
    memory_percent: float
    memory_used_bytes: int
    memory_total_bytes: int
    swap_percent: float
    disks: tuple[DiskUsage, ...]
    disk_read_rate: float = 0.0
    disk_write_rate: float = 0.0
    net_sent_rate: float = 0.0
    net_recv_rate: float = 0.0
    process_cpu_percent: float = 0.0
    process_rss_bytes: int = 0
    connections: int | None = None

    @property
    def disk_percent(self) -> float:
        return self.disks[0].percent if self.disks else 0.0


PROC_NET = Path("/proc/net")


def inet_sockets(proc_net: Path = PROC_NET) -> int | None:
    """The host's TCP and UDP sockets, IPv4 and IPv6, those in TIME_WAIT included: the kernel's counters in
    /proc/net/sockstat and sockstat6, as `ss -s` reads them (None without them, as off Linux).

    `len(psutil.net_connections("inet"))` counts about the same, but reads the socket tables (the kernel walks
    its whole socket hash for them) and maps each socket to its process by walking every process's open
    files: 10-13 ms a call here, a tenth of an idle console's CPU. The counters cost 0.1 ms."""
    counters: dict[str, dict[str, str]] = {}
    for name in ("sockstat", "sockstat6"):
        try:
            text = (proc_net / name).read_text()
        except OSError:
            continue
        for line in text.splitlines():  # "TCP: inuse 5 orphan 0 tw 2 alloc 7 mem 1"
            protocol, _, fields = line.partition(":")
            words = fields.split()
            counters[protocol] = dict(zip(words[::2], words[1::2], strict=False))
    if not counters:
        return None
    counted = [counters.get(p, {}).get("inuse", "0") for p in ("TCP", "UDP", "TCP6", "UDP6")]
    counted.append(counters.get("TCP", {}).get("tw", "0"))  # TIME_WAIT is counted once, for both
    try:
        return sum(map(int, counted))
    except ValueError:
        return None


class MetricsSource(Protocol):
    def sample(self) -> HostSample: ...


class PsutilMetrics:
    """The live machine. Keep one instance: rates and CPU percentages need the previous reading."""

    def __init__(self, mounts: list[Path], connections_every: int = 12) -> None:
        self._mounts = mounts
        self._connections_every = max(1, connections_every)
        self._count = 0
        self._process = psutil.Process(os.getpid())
        self._last: tuple[float, Any, Any] | None = None
        self._connections: int | None = None
        psutil.cpu_percent(percpu=True)
        self._process.cpu_percent()

    def sample(self) -> HostSample:
        now = time.time()
        per_core = tuple(psutil.cpu_percent(percpu=True))
        disk_io = psutil.disk_io_counters()
        net_io = psutil.net_io_counters()
        rates = (0.0, 0.0, 0.0, 0.0)
        if self._last is not None:
            then, last_disk, last_net = self._last
            span = max(now - then, 1e-3)
            rates = (
                _rate(disk_io, last_disk, "read_bytes", span),
                _rate(disk_io, last_disk, "write_bytes", span),
                _rate(net_io, last_net, "bytes_sent", span),
                _rate(net_io, last_net, "bytes_recv", span),
            )
        self._last = (now, disk_io, net_io)
        if self._count % self._connections_every == 0:
            self._connections = inet_sockets()
            if self._connections is None:
                try:
                    self._connections = len(psutil.net_connections(kind="inet"))
                except (psutil.AccessDenied, OSError):
                    self._connections = None
        self._count += 1
        memory = psutil.virtual_memory()
        disks = []
        for mount in self._mounts:
            try:
                usage = psutil.disk_usage(str(mount))
            except OSError:
                continue
            disks.append(DiskUsage(str(mount), usage.percent, usage.used, usage.total))
        with self._process.oneshot():
            process_cpu = self._process.cpu_percent()
            rss = self._process.memory_info().rss
        return HostSample(
            taken_at=now,
            cpu_percent=sum(per_core) / max(len(per_core), 1),
            per_core=per_core,
            load=os.getloadavg(),
            memory_percent=memory.percent,
            memory_used_bytes=memory.total - memory.available,
            memory_total_bytes=memory.total,
            swap_percent=psutil.swap_memory().percent,
            disks=tuple(disks),
            disk_read_rate=rates[0],
            disk_write_rate=rates[1],
            net_sent_rate=rates[2],
            net_recv_rate=rates[3],
            process_cpu_percent=process_cpu,
            process_rss_bytes=rss,
            connections=self._connections,
        )


def _rate(now: Any, then: Any, name: str, span: float) -> float:
    if now is None or then is None:
        return 0.0
    return max(0.0, float(getattr(now, name) - getattr(then, name)) / span)
