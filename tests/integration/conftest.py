"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, start_pool
from tests.integration.cli_harness import CLI, serve
from tests.integration.cluster import Cluster, cluster_settings


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = cluster_settings(tmp_path, task_retry_limit=1)
    pool = await start_pool(settings)
    running = Cluster(pool, settings.data_path)
    running.token = await pool.add_user("alice")
    yield running
    await running.close()


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CLI]:
    data = tmp_path / "data"
    port = free_port()
    proc = serve(data, port)
    tool = CLI(data)
    tool.port = port  # type: ignore[attr-defined]
    tool.proc = proc  # type: ignore[attr-defined]
    yield tool
    if tool.proc.poll() is None:  # type: ignore[attr-defined]
        tool("pool", "stop")
    tool.proc.wait(timeout=20)  # type: ignore[attr-defined]
