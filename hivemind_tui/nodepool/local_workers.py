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


async def start_local_workers(
    count: int, pool_address: str, data_dir: Path, node_id: str, config_file: Path | None
) -> list[asyncio.subprocess.Process]:
    """Start `count` worker processes (their output goes to their own log files, not to ours)."""
    procs = []
    for index in range(count):
        command = [
            sys.executable,
            "-m",
            "hivemind_tui",
            "--data-dir",
            str(data_dir),
            "worker",
            "--pool",
            pool_address,
            "--node-id",
            node_id if count == 1 else f"{node_id}-{index + 1}",
            "--parent-pid",
            str(os.getpid()),
        ]
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
