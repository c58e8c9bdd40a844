"""Finding, and when asked starting, the data dir's embedded pool.

Services may not import the pool's code, so the pool is started as its own process (`hivemind-tui pool
serve`) in a new session, with its output in its log file; it is found through `pool/pool.json`.
"""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from hivemind_tui.core.datadir import make_private_dir
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.core.poolfile import running_pool

START_TIMEOUT = 60.0


async def find_pool(pool_dir: Path) -> str | None:
    info = await asyncio.to_thread(running_pool, pool_dir)
    return None if info is None else info.address


async def start_pool(data_dir: Path, config_file: Path | None = None, workers: int | None = None) -> str:
    """Start `pool serve` for `data_dir` in the background and wait until it answers; return its address."""
    command = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data_dir), "pool", "serve"]
    if workers is not None:
        command += ["--workers", str(workers)]
    if config_file is not None:
        command += ["--config", str(config_file)]
    # Its stderr goes to a file, not a pipe: the pool outlives us, and a closed pipe would kill it.
    errors = make_private_dir(data_dir / "logs") / "pool-start.err"
    with errors.open("wb") as err_file:
        proc = await asyncio.create_subprocess_exec(
            *command,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=err_file,
            start_new_session=True,
        )
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        address = await find_pool(data_dir / "pool")
        if address is not None:
            return address
        if proc.returncode is not None:
            lines = errors.read_text(errors="replace").strip().splitlines()
            raise HivemindError(f"the embedded pool did not start: {lines[-1] if lines else 'no reason given'}")
        await asyncio.sleep(0.1)
    raise HivemindError(f"the embedded pool did not answer within {START_TIMEOUT:.0f} s")
