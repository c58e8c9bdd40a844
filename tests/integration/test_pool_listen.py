"""A taken port is a clear error: no second pool (or worker) shares a port through SO_REUSEPORT."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hivemind_tui.core.datadir import DataDir
from hivemind_tui.core.errors import UsageError
from hivemind_tui.nodepool.server import PoolServer
from tests.conftest import fast_settings
from tests.helpers import spawn_worker, start_pool


async def test_a_second_pool_on_the_same_port_is_refused(tmp_path: Path) -> None:
    first = await start_pool(fast_settings(tmp_path / "a"))
    try:
        settings = fast_settings(tmp_path / "b")
        second = PoolServer(settings, DataDir(settings.data_path), listen=first.address)
        with pytest.raises(UsageError, match=f"cannot listen on {first.address}"):
            await second.start()
    finally:
        await first.close()


async def test_a_worker_on_a_taken_port_says_so(tmp_path: Path) -> None:
    pool = await start_pool(fast_settings(tmp_path / "a"))
    try:
        secret = tmp_path / "secret"
        secret.write_text(pool.server.paths.worker_secret.read_text())
        proc = spawn_worker(
            tmp_path / "w", pool.address, "w-taken", extra=("--listen", pool.address, "--secret-file", str(secret))
        )
        _, stderr = await asyncio.to_thread(proc.communicate, timeout=60)
        assert proc.returncode == 2
        assert stderr.decode().strip().splitlines()[-1] == (
            f"hivemind-tui: cannot listen on {pool.address}: the port is in use or the address is not here"
        )
    finally:
        await pool.close()
