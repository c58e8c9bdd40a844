"""The full-screen log: follows by default, jumps, wraps, shows arrival times, searches with n/N."""

from __future__ import annotations

from textual.widgets import Input, RichLog

from hivemind_tui.ui.screens.log_view import LogViewScreen
from tests.ui.demo_shots import demo_app, settle


async def test_full_screen_log_from_the_tasks_list() -> None:
    app = demo_app(start="tasks")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("l")  # the cursor is on a split parent: its first subtask's log
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, LogViewScreen) and screen.task_id == "etl-7f3a2c.0000"
        view = screen.query_one("#logview", RichLog)
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
        assert "UTC" in str(view.lines[0].text) and "[000]" in str(view.lines[0].text)
        await pilot.press("w")
        await settle(pilot)
        assert screen.wrap and view.wrap
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
