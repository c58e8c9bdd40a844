"""Shared fixtures: fast settings through the settings object, never by weakening production defaults."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hivemind_tui.core.config import Settings

# The developer's own config file and environment must not leak into tests.
for _name in list(os.environ):
    if _name.startswith("HIVEMIND_") and _name != "HIVEMIND_SYSTEM_TESTS":
        del os.environ[_name]
for _name in ("NODE_POOL_ADDRESS", "UPLOAD_FOLDER", "MAX_CONTENT_LENGTH", "VPN_SERVER_IP", "VPN_PORT", "DATABASE_URL"):
    os.environ.pop(_name, None)
os.environ["GRPC_VERBOSITY"] = "NONE"


def fast_settings(data_dir: Path, **overrides: object) -> Settings:
    """Settings for tests: cheap password hashing, short heartbeats and delays."""
    base = Settings(
        data_dir=str(data_dir),
        password_hash_cost="min",
        heartbeat_interval=0.2,
        heartbeat_timeout=2.0,
        login_delay_base=0.05,
        rpc_deadline=5.0,
        task_time_limit=60.0,
    )
    return base.with_overrides(**overrides) if overrides else base


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return fast_settings(tmp_path / "data")
