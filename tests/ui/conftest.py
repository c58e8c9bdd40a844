"""UI test fixtures: a real pool in a subprocess (never a second gRPC loop in a thread), and the app."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir
from hivemind_tui.services.host_metrics import DiskUsage, HostSample
from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.backend import LiveBackend
from tests.conftest import fast_settings
from tests.helpers import free_port
from tests.integration.cli_harness import CLI, serve


class FixedMetrics:
    """A metrics source with fixed figures, so tests never read the live machine."""

    def sample(self) -> HostSample:
        return HostSample(1.0, 10.0, (10.0, 10.0), (0.1, 0.1, 0.1), 50.0, 1, 2, 0.0, (DiskUsage("/", 40.0, 4, 10),))


class PoolProcess:
    def __init__(self, data: Path, *extra: str) -> None:
        self.data = data
        self.port = free_port()
        self.extra = extra
        self.proc = serve(data, self.port, *extra)
        self.cli = CLI(data)

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def admin_password(self) -> str:
        return (self.data / "pool" / "admin-password").read_text().strip()

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(timeout=10)
        (self.data / "pool" / "pool.json").unlink(missing_ok=True)

    def restart(self) -> None:
        self.proc = serve(self.data, self.port, *self.extra)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=20)


@pytest.fixture
def pool(tmp_path: Path) -> Iterator[PoolProcess]:
    running = PoolProcess(tmp_path / "pool-data")
    yield running
    running.stop()


def make_app(pool: PoolProcess, tmp_path: Path, **overrides: object) -> HivemindApp:
    settings: Settings = fast_settings(tmp_path / "console-data", refresh_interval=0.5, rpc_deadline=1.0, **overrides)
    data = DataDir(settings.data_path)
    data.ensure("tokens")
    backend = LiveBackend(settings, data, pool.address, True, FixedMetrics())
    return HivemindApp(backend, deterministic=False)
