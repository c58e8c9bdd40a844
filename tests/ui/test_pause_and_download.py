"""Paused is visible and `r` still refreshes; a download outlives the screen it was started from."""

from __future__ import annotations

import asyncio
from pathlib import Path

from textual.widgets import Input, Static

from hivemind_tui.core.config import Settings
from hivemind_tui.services.models import TaskInfo
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.services.task_manager import Progress, ProgressCallback
from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.screens.task_detail import TaskDetailScreen
from tests.ui.demo import DemoBackend
from tests.ui.demo_shots import settle


class CountingBackend(DemoBackend):
    def __init__(self) -> None:
        super().__init__(Settings(refresh_interval=3600.0))
        self.refreshes = 0
        self.release = asyncio.Event()

    async def refresh(self) -> ClusterSnapshot:
        self.refreshes += 1
        return await super().refresh()

    async def download(
        self, task_id: str, tasks: list[TaskInfo], path: Path, on_progress: ProgressCallback | None
    ) -> int:
        if on_progress is not None:
            on_progress(Progress(1, 2, 1, 2))
        await self.release.wait()
        await asyncio.to_thread(path.write_bytes, b"result")
        return 6


def header(app: HivemindApp) -> str:
    return " ".join(str(app.screen.query_one(f"#{part}", Static).render()) for part in ("pool", "transfers"))


async def test_paused_shows_in_the_header_and_r_still_refreshes() -> None:
    backend = CountingBackend()
    app = HivemindApp(backend, deterministic=True)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert "connected" in header(app) and "paused" not in header(app)
        await pilot.press("p")
        await settle(pilot)
        assert "paused" in header(app) and "connected" not in header(app)
        before = backend.refreshes
        await pilot.press("r")
        await settle(pilot)
        assert backend.refreshes == before + 1 and app.paused
        app.scheduled_refresh()  # the timer's tick while paused: nothing
        await settle(pilot)
        assert backend.refreshes == before + 1
        await pilot.press("p")
        await settle(pilot)
        assert "paused" not in header(app)


async def test_a_download_goes_on_after_escape(tmp_path: Path) -> None:
    backend = CountingBackend()
    app = HivemindApp(backend, deterministic=True, start="tasks")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TaskDetailScreen)
        await pilot.press("o")
        target = tmp_path / "result.zip"
        app.screen.query_one("#log-search", Input).value = str(target)
        await pilot.press("enter")
        await pilot.pause()
        await pilot.press("escape")
        await pilot.pause()
        assert not isinstance(app.screen, TaskDetailScreen)
        assert "↓ 1/2" in header(app)
        backend.release.set()
        await settle(pilot)
        assert target.read_bytes() == b"result"
        assert any("saved 6 bytes" in n.message for n in app._notifications)
        assert "↓" not in header(app)


async def test_exports_and_results_default_to_the_data_dirs_exports_folder() -> None:
    app = HivemindApp(CountingBackend(), deterministic=True, start="vpn")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter", "e")
        await settle(pilot)
        assert (
            app.screen.query_one("#export-path", Input).value == "~/.local/share/hivemind-tui/exports/laptop-alice.conf"
        )
        await pilot.press("escape", "t")
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        await pilot.press("o")
        value = app.screen.query_one("#log-search", Input).value
        assert value == "~/.local/share/hivemind-tui/exports/etl-7f3a2c-result.zip"


async def test_a_followed_log_shows_its_last_line_after_the_layout_changes() -> None:
    from textual.widgets import Log

    app = HivemindApp(CountingBackend(), deterministic=True, start="tasks")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("enter")
        await settle(pilot)
        log = app.screen.query_one("#task-log", Log)
        assert log.line_count == 40 and log.scroll_y == log.max_scroll_y
        await pilot.resize_terminal(100, 24)
        await settle(pilot)
        assert log.scroll_y == log.max_scroll_y > 0
