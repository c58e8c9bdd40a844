"""`pool/pool.json`: how the console and the command line find the data dir's running embedded pool.

Shared by the pool (which writes it) and the client side (which reads it); a file left behind by a dead
pool is recognised by its pid, and a pid that a later, unrelated process reuses by that process's start
time and command line, which never match what the pool recorded.
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
    # The kernel's start time of the pool process (psutil's create_time); 0 in files of older versions.
    process_started: float = 0.0
    # Whether it serves TLS (with the data dir's certificates unless the settings name others).
    tls: bool = False
    # Under mutual TLS, where a worker without a certificate yet joins (JoinWorker only); else empty.
    join_address: str = ""


def pool_json(pool_dir: Path) -> Path:
    return pool_dir / "pool.json"


def write_pool_info(pool_dir: Path, info: PoolInfo) -> None:
    data = {
        "address": info.address,
        "pid": info.pid,
        "started_at": info.started_at,
        "process_started": info.process_started,
        "tls": info.tls,
        "join_address": info.join_address,
    }
    atomic_write(pool_json(pool_dir), json.dumps(data).encode(), mode=0o600)


def remove_pool_info(pool_dir: Path, pid: int) -> None:
    """Remove pool.json, but only if it still names `pid` (a newer pool may have replaced it)."""
    info = read_pool_info(pool_dir)
    if info is not None and info.pid == pid:
        pool_json(pool_dir).unlink(missing_ok=True)


def read_pool_info(pool_dir: Path) -> PoolInfo | None:
    try:
        data = json.loads(pool_json(pool_dir).read_text())
        return PoolInfo(
            str(data["address"]),
            int(data["pid"]),
            float(data.get("started_at", 0)),
            float(data.get("process_started", 0)),
            bool(data.get("tls", False)),
            str(data.get("join_address", "")),
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None


def process_started(pid: int) -> float:
    """The kernel's start time of process `pid`, to record in pool.json."""
    import psutil  # here, not at the top: the console's first frame should not wait for it

    return float(psutil.Process(pid).create_time())


def is_our_pool(info: PoolInfo) -> bool:
    """True while the process pool.json names runs and is that pool: same start time, a hivemind-tui
    command line. A zombie (exited, not yet reaped by its parent) counts as gone."""
    import psutil

    if info.pid <= 0:
        return False
    try:
        proc = psutil.Process(info.pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        if info.process_started and abs(proc.create_time() - info.process_started) > 0.05:
            return False
        command = " ".join(proc.cmdline())
    except psutil.NoSuchProcess:
        return False
    except psutil.AccessDenied:
        return True  # another user's process under our pid file: a pool run by root, say
    return "hivemind_tui" in command or "hivemind-tui" in command


def port_answers(address: str, timeout: float = 1.0) -> bool:
    host, _, port = address.rpartition(":")
    with contextlib.suppress(OSError, ValueError), socket.create_connection((host.strip("[]"), int(port)), timeout):
        return True
    return False


def running_pool(pool_dir: Path) -> PoolInfo | None:
    """The pool named by pool.json if it is alive and answering; None otherwise."""
    info = read_pool_info(pool_dir)
    if info is None or not is_our_pool(info) or not port_answers(info.address):
        return None
    return info


def stop_pool(pool_dir: Path, wait: float = 20.0) -> PoolInfo | None:
    """SIGTERM the pool named by pool.json and wait for it; None if none was running (a stale file goes)."""
    info = read_pool_info(pool_dir)
    if info is None or not is_our_pool(info):
        if info is not None:
            pool_json(pool_dir).unlink(missing_ok=True)
        return None
    os.kill(info.pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while is_our_pool(info) and time.monotonic() < deadline:
        time.sleep(0.1)
    if is_our_pool(info):
        raise TimeoutError(f"the pool (pid {info.pid}) did not stop within {wait:.0f} s")
    return info
