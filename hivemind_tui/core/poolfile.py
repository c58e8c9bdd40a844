"""`pool/pool.json`: how the console and the command line find the data dir's running embedded pool.

Shared by the pool (which writes it) and the client side (which reads it); a file left behind by a dead
pool is recognised by its pid and by its port not answering.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from hivemind_tui.core.datadir import atomic_write


@dataclass(frozen=True)
class PoolInfo:
    address: str
    pid: int
    started_at: float


def pool_json(pool_dir: Path) -> Path:
    return pool_dir / "pool.json"


def write_pool_info(pool_dir: Path, info: PoolInfo) -> None:
    data = {"address": info.address, "pid": info.pid, "started_at": info.started_at}
    atomic_write(pool_json(pool_dir), json.dumps(data).encode(), mode=0o600)


def remove_pool_info(pool_dir: Path, pid: int) -> None:
    """Remove pool.json, but only if it still names `pid` (a newer pool may have replaced it)."""
    info = read_pool_info(pool_dir)
    if info is not None and info.pid == pid:
        pool_json(pool_dir).unlink(missing_ok=True)


def read_pool_info(pool_dir: Path) -> PoolInfo | None:
    try:
        data = json.loads(pool_json(pool_dir).read_text())
        return PoolInfo(str(data["address"]), int(data["pid"]), float(data.get("started_at", 0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def pid_alive(pid: int) -> bool:
    """True while `pid` runs; a zombie (exited, not yet reaped by its parent) counts as gone."""
    import psutil  # here, not at the top: the console's first frame should not wait for it

    if pid <= 0:
        return False
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True


def port_answers(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    with contextlib.suppress(OSError, ValueError), socket.create_connection((host.strip("[]"), int(port)), timeout):
        return True
    return False


def running_pool(pool_dir: Path) -> PoolInfo | None:
    """The pool named by pool.json if it is alive and answering; None otherwise."""
    info = read_pool_info(pool_dir)
    if info is None or not pid_alive(info.pid) or not port_answers(info.address):
        return None
    return info


def stop_pool(pool_dir: Path, wait: float = 20.0) -> PoolInfo | None:
    """SIGTERM the pool named by pool.json and wait for it; None if none was running (a stale file goes)."""
    info = read_pool_info(pool_dir)
    if info is None or not pid_alive(info.pid):
        if info is not None:
            pool_json(pool_dir).unlink(missing_ok=True)
        return None
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while pid_alive(info.pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    if pid_alive(info.pid):
        raise TimeoutError(f"the pool (pid {info.pid}) did not stop within {wait:.0f} s")
    return info
