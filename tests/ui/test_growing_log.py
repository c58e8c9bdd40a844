"""A followed log that gains lines repaints itself and its scrollbar, and lays nothing else out: Textual laid
the whole screen out for every line a followed task printed."""

from __future__ import annotations

import pytest
from textual.app import App, ComposeResult
from textual.screen import Screen
from textual.widgets import Log, Static
from textual.worker import Worker

from hivemind_tui.ui.widgets.grows_in_place import MEASURED_ON_THE_LOOP, GrowingLog
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


async def test_a_few_new_lines_are_measured_on_the_loop_not_in_a_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual's `Log` measures the width of what is written in a thread worker it starts for each write: a
    worker a second for a followed log. A few lines are measured where they are written; a large write (a
    whole log at once) still goes to a thread."""
    app = LogApp()
    async with app.run_test(size=(60, 12)) as pilot:
        log = app.query_one(GrowingLog)
        await settle(pilot)
        started = record_calls(monkeypatch, Worker, "_start", lambda worker, *args: worker.name)
        for i in range(5):
            log.write_line(f"line {i} " + "x" * i * 10)
            await settle(pilot)
        assert started == []
        assert log.virtual_size.width == len("line 4 ") + 40
        log.write_lines([f"row {i}" for i in range(2 * MEASURED_ON_THE_LOOP)])
        await settle(pilot)
        assert len(started) == 1
