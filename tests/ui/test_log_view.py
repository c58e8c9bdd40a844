"""The full-screen log: follows by default, jumps, wraps, shows arrival times, searches with n/N."""

from __future__ import annotations

import gc
import tracemalloc
from typing import TYPE_CHECKING

from textual.widgets import Input, Log

from hivemind_tui.ui.screens.log_view import LogLine, LogViewScreen
from hivemind_tui.ui.screens.task_detail import TaskDetailScreen
from tests.ui.demo import CannedLog
from tests.ui.demo_shots import demo_app, settle

if TYPE_CHECKING:
    import pytest

    from hivemind_tui.ui.app import HivemindApp


def tasks_with_log(monkeypatch: pytest.MonkeyPatch, text: str) -> HivemindApp:
    """The demo console on its tasks screen, where every task's log is `text`."""
    app = demo_app(start="tasks")
    monkeypatch.setattr(app.backend, "log_follower", lambda task_id: CannedLog(text))
    return app


def numbered_log(lines: int) -> str:
    return "".join(f"[{i:05d}] rows {i * 100} loaded\n" for i in range(lines))


async def test_full_screen_log_from_the_tasks_list() -> None:
    app = demo_app(start="tasks")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("l")  # the cursor is on a split parent: its first subtask's log
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LogViewScreen) and screen.task_id == "etl-7f3a2c.0000"
        view = screen.query_one("#logview", Log)
        assert len(screen.lines) == 40 and screen.following
        assert view.scroll_y == view.max_scroll_y > 0  # following shows the end
        await pilot.press("g")
        await settle(pilot)
        assert view.scroll_y == 0 and not screen.following
        await pilot.press("G")
        await settle(pilot)
        assert view.scroll_y == view.max_scroll_y and screen.following
        await pilot.press("slash")
        screen.query_one("#logview-search", Input).value = "rows 5"
        await pilot.press("enter")
        await settle(pilot)
        assert [screen.lines[i].text[:5] for i in screen.matches] == ["[005]"]
        await pilot.press("t")
        await settle(pilot)
        assert "UTC" in view.lines[0] and "[000]" in view.lines[0]
        await pilot.press("w")
        await settle(pilot)
        assert screen.wrap and all(len(line) <= view.scrollable_content_region.width for line in view.lines)
        await pilot.press("escape")
        await settle(pilot)
        assert not isinstance(app.screen, LogViewScreen)


async def test_full_screen_log_from_a_task() -> None:
    app = demo_app(start="tasks")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        assert isinstance(app.screen, LogViewScreen) and app.screen.task_id == "render-b81e04"


async def test_wrapped_lines_fold_at_the_width_of_the_view_and_again_when_it_changes(monkeypatch) -> None:
    app = tasks_with_log(monkeypatch, "x" * 250 + "\nshort\n")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("l", "w")
        await settle(pilot)
        view = app.screen.query_one("#logview", Log)
        width = view.scrollable_content_region.width
        assert view.lines == ["x" * width, "x" * width, "x" * (250 - 2 * width), "short"]
        await pilot.resize_terminal(60, 30)
        await settle(pilot)
        width = view.scrollable_content_region.width
        assert view.lines[0] == "x" * width and len(view.lines) == -(-250 // width) + 1
        await pilot.press("w")
        await settle(pilot)
        assert view.lines == ["x" * 250, "short"]


async def test_the_log_view_keeps_a_line_in_about_the_memory_of_its_text(monkeypatch) -> None:
    """A log followed for an hour: the view kept each line as a painted strip with seven caches of its own,
    ~3.3 KB a line, so a console showing a task that prints a line a second grew ~12 MB an hour (the soak's
    growth: RSS 87 -> 104 MB in 20 minutes, against 78 -> 80 MB for a console left on the dashboard)."""
    lines = 5_000
    text = "".join(f"[{i:05d}] rows {i * 100} to {i * 100 + 99} loaded and checked\n" for i in range(lines))
    app = tasks_with_log(monkeypatch, text)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        gc.collect()
        tracemalloc.start()
        try:
            await pilot.press("l")
            await settle(pilot)
            screen = app.screen
            assert isinstance(screen, LogViewScreen) and len(screen.lines) == lines
            gc.collect()
            held = tracemalloc.get_traced_memory()[0]
        finally:
            tracemalloc.stop()
    # What the screen holds, its widgets included (~2 MB here), by line: ~700 B now, ~3,500 B in RichLog.
    assert held / lines < 1_000, f"{held / lines:.0f} bytes a line of ~55 characters"


async def test_a_dismissed_log_view_lets_go_of_its_lines_at_once(monkeypatch) -> None:
    """A dismissed screen is a reference cycle (a widget tree is one) that waits for the collector, which a
    console with a large heap runs about once a minute or two. With the lines in it, each log view the soak
    opened and closed left its whole log to the collector: ~700 B a line, megabytes after an hour of a task
    that prints a line a second, more each time."""
    lines = 2_000
    app = tasks_with_log(monkeypatch, numbered_log(lines))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LogViewScreen) and len(screen.lines) == lines
        view = screen.query_one("#logview", Log)
        del screen
        gc.collect()
        gc.disable()
        try:
            await pilot.press("escape")
            await settle(pilot)
            assert not isinstance(app.screen, LogViewScreen)
            kept = sum(isinstance(o, LogLine) for o in gc.get_objects())
        finally:
            gc.enable()
    assert (kept, view.line_count) == (0, 0)


async def test_a_dismissed_task_screen_lets_go_of_its_log_at_once(monkeypatch) -> None:
    """The task screen's log tail (up to 5,000 lines, twice: its own and its view's) went the same way."""
    app = tasks_with_log(monkeypatch, numbered_log(1_000))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("down", "enter")
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TaskDetailScreen) and len(screen.log_lines) == 1_000
        view = screen.query_one("#task-log", Log)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not screen
    assert (len(screen.log_lines), view.line_count, screen.log_source) == (0, 0, None)
