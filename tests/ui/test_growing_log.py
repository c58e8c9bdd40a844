"""A followed log that gains lines repaints itself and its scrollbar, and lays nothing else out: Textual laid
the whole screen out for every line a followed task printed."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Static

from hivemind_tui.ui.widgets.grows_in_place import GrowingLog
from tests.ui.demo_shots import record_calls, settle


class LogApp(App[None]):
    CSS = "GrowingLog { height: 1fr; }"

    def compose(self) -> ComposeResult:
        yield Static("a task's log")
        yield GrowingLog(auto_scroll=True)


async def test_new_lines_scroll_the_log_without_laying_the_screen_out(monkeypatch: pytest.MonkeyPatch) -> None:
    app = LogApp()
    async with app.run_test(size=(60, 12)) as pilot:
        log = app.query_one(GrowingLog)
        log.write_lines([f"line {i}" for i in range(40)])  # more than the view
        await settle(pilot)
        assert log.scroll_y == log.max_scroll_y > 0

        laid_out = record_calls(monkeypatch, Screen, "_refresh_layout", lambda screen, *args, **kwargs: None)
        for i in range(40, 45):  # a line a second, as a followed task prints them
            log.write_line(f"line {i}")
            await settle(pilot)
        assert not laid_out
        assert log.vertical_scrollbar.window_virtual_size == 45
        assert log.scroll_y == log.max_scroll_y  # still following: the last line in view
        assert "line 44" in log.render_line(log.scrollable_content_region.height - 1).text
