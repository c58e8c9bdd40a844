"""Fixtures of the integration tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.helpers import start_pool
from tests.integration.cluster import Cluster, cluster_settings


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[Cluster]:
    settings = cluster_settings(tmp_path, task_retry_limit=1)
    pool = await start_pool(settings)
    running = Cluster(pool, settings.data_path)
    running.token = await pool.add_user("alice")
    yield running
    await running.close()
