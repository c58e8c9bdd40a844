"""Workers that `pool serve --workers N` starts beside itself, and stops when it stops.

A pool that is killed cannot stop them: they watch their parent (`--parent-pid`) and end when it is gone.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
from pathlib import Path

STOP_GRACE = 10.0


def local_node_ids(count: int, node_id: str) -> list[str]:
    return [node_id] if count == 1 else [f"{node_id}-{index + 1}" for index in range(count)]


async def start_local_workers(
    node_ids: list[str],
    pool_address: str,
    data_dir: Path,
    config_file: Path | None,
    hivemind_logins: dict[str, Path] | None = None,
) -> list[asyncio.subprocess.Process]:
    """Start one worker process per node id (their output goes to their own log files, not to ours).

    With `hivemind_logins` (node id -> password file; a compat pool) they are HiveMind-style workers that
    log in as the user named after their node, on 127.0.0.2: HiveMind never dials 127.0.0.1."""
    procs = []
    for node_id in node_ids:
        command = [
            sys.executable,
            "-m",
            "hivemind_tui",
            "--data-dir",
            str(data_dir),
            "worker",
            "--pool",
            pool_address,
            "--parent-pid",
            str(os.getpid()),
        ]
        if hivemind_logins is None:
            command += ["--node-id", node_id]
        else:
            command += ["--hivemind", "--user", node_id, "--password-file", str(hivemind_logins[node_id])]
            command += ["--listen", "127.0.0.2:0"]
        if config_file is not None:
            command += ["--config", str(config_file)]
        procs.append(
            await asyncio.create_subprocess_exec(
                *command,
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
        )
    return procs


async def stop_local_workers(procs: list[asyncio.subprocess.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            await asyncio.wait_for(proc.wait(), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()
