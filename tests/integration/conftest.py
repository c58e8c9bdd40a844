"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, start_pool
from tests.integration.cli_harness import CLI, serve
from tests.integration.cluster import Cluster, cluster_settings


async def _cluster(tmp_path: Path, **overrides: object) -> AsyncIterator[Cluster]:
    settings = cluster_settings(tmp_path, task_retry_limit=1, **overrides)
    pool = await start_pool(settings)
    running = Cluster(pool, settings.data_path)
    running.token = await pool.add_user("alice")
    yield running
    await running.close()


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    async for running in _cluster(tmp_path):
        yield running


@pytest.fixture
async def patient_cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    """The production heartbeat timeout and rpc deadline (30 s, 10 s): a worker starved of CPU by the tests
    running beside this one is not taken for lost, nor an ExecuteTask for refused, so a test of exactly-once
    runs sees no re-queue it did not cause."""
    async for running in _cluster(tmp_path, heartbeat_timeout=30.0, rpc_deadline=10.0):
        yield running


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
