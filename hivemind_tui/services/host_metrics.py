"""This host's own figures from psutil: CPU, load, memory, swap, disks, disk and network rates, ourselves.

`PsutilMetrics.sample()` blocks briefly (psutil reads /proc), so callers run it in a thread. Rates come
from the difference to the previous sample. Connections are costly to count (9 ms a call here), so they
are sampled only every `connections_every` samples. Tests and snapshots pass a `MetricsSource` with fixed
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
