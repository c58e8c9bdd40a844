"""A followed log that gains lines repaints itself and its scrollbar, and lays nothing else out: Textual laid
the whole screen out for every line a followed task printed."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Log, Static

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


async def test_a_log_paints_a_line_once_until_its_text_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual's `Log` painted every line on screen again at every repaint (a followed log repaints each
    second), each time with new styles for its selection offsets: Rich's style cache turned over, and the
    allocator's pools with it."""
    app = LogApp()
    async with app.run_test(size=(60, 12)) as pilot:
        log = app.query_one(GrowingLog)
        log.write("".join(f"line {i}\n" for i in range(5)) + "partial")
        await settle(pilot)
        painted = record_calls(monkeypatch, Log, "_render_line_strip", lambda log, y, style: y)
        for _ in range(3):
            log.refresh()
            await settle(pilot)
        assert painted == []
        log.write(" and more")  # the last line grows: painted again, alone
        await settle(pilot)
        assert painted == [5]
        assert log.render_line(5).text.rstrip() == "partial and more"
