"""The full-screen log: follows by default, jumps, wraps, shows arrival times, searches with n/N."""

from __future__ import annotations

import gc
import tracemalloc
from typing import TYPE_CHECKING

from textual.widgets import Input, Log

from hivemind_tui.ui.screens.log_view import KEPT_LINES, LogViewScreen
from hivemind_tui.ui.screens.task_detail import TaskDetailScreen
from tests.ui.demo import CannedLog
from tests.ui.demo_shots import demo_app, settle
from tests.ui.test_memory import live_widgets

if TYPE_CHECKING:
    import pytest
    from textual.pilot import Pilot

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


class CountedLog(CannedLog):
    """A canned log that counts its polls and gives one more line at each poll after the first."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.polls = 0

    async def poll(self) -> list[str]:
        self.polls += 1
        return await super().poll() if self.polls == 1 else [f"more {self.polls}"]


def counted_logs(monkeypatch: pytest.MonkeyPatch, app: HivemindApp, text: str) -> dict[str, list[CountedLog]]:
    """The log sources made for each task, in order: one for each view made."""
    made: dict[str, list[CountedLog]] = {}

    def follower(task_id: str) -> CountedLog:
        made.setdefault(task_id, []).append(CountedLog(text))
        return made[task_id][-1]

    monkeypatch.setattr(app.backend, "log_follower", follower)
    return made


async def open_log(pilot: Pilot[None]) -> LogViewScreen:
    """`l` on the tasks screen's cursor row: the log view it shows."""
    await pilot.press("l")
    await settle(pilot)
    screen = pilot.app.screen
    assert isinstance(screen, LogViewScreen)
    return screen


async def test_a_reopened_log_is_the_same_view_and_fetches_only_new_lines(monkeypatch) -> None:
    """Each `l` made a whole screen (~1.7 MB of widgets and caches) and fetched the whole log again, and each
    escape left it all to the collector: the soak opens and closes a log every 90 s, and its console grew with
    that walk (75 -> 77 MB in ten minutes) where consoles that walked only the dashboard and the tasks screen
    stayed at 70 MB. The last log closed is kept, not polled while hidden, and shown again as it was left."""
    app = demo_app(start="tasks")
    sources = counted_logs(monkeypatch, app, numbered_log(100))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        first = await open_log(pilot)
        assert len(first.lines) == 100
        await pilot.press("g", "escape")  # paused at the start, then closed
        await settle(pilot)
        assert not isinstance(app.screen, LogViewScreen) and sources[first.task_id][0].polls == 1
        widgets = live_widgets()
        await pilot.press("l")
        await settle(pilot)
        assert app.screen is first and not first.following
        assert [line.text for line in first.lines[-2:]] == ["[00099] rows 9900 loaded", "more 2"]
        assert first.view.line_count == 101 and [source.polls for source in sources[first.task_id]] == [2]
        await pilot.press("escape")
        await settle(pilot)
        assert live_widgets() == widgets


async def test_another_tasks_log_replaces_the_kept_view_and_its_lines_go_at_once(monkeypatch) -> None:
    """The kept view is one task's: opening another's removes it, and its lines go then, not with the
    collector (a widget tree is a reference cycle, collected a minute or more later in a large heap)."""
    app = demo_app(start="tasks")
    counted_logs(monkeypatch, app, numbered_log(2_000))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        first = await open_log(pilot)
        assert len(first.lines) == 2_000
        view = first.view
        await pilot.press("escape", "down", "down", "l")
        await settle(pilot)
        second = app.screen
        assert isinstance(second, LogViewScreen) and second.task_id != first.task_id
        assert (len(first.lines), view.line_count, first.is_attached) == (0, 0, False)
        await pilot.press("escape")
        await settle(pilot)
        assert app.screen is not second and len(second.lines) == 2_000


async def test_a_log_left_open_under_another_section_is_not_shown_twice(monkeypatch) -> None:
    """A log left open on the tasks section stays on that section's stack; a log opened from another section
    meanwhile is a view of its own, and the one left open catches up when its section is shown again."""
    app = demo_app(start="tasks")
    counted_logs(monkeypatch, app, numbered_log(10))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        left_open = await open_log(pilot)
        await app.switch_mode("dashboard")
        await settle(pilot)
        app.push_screen(TaskDetailScreen(left_open.task_id))
        await settle(pilot)
        await pilot.press("l")
        await settle(pilot)
        assert isinstance(app.screen, LogViewScreen) and app.screen is not left_open
        await pilot.press("escape", "escape")
        await settle(pilot)
        await app.switch_mode("tasks")
        await settle(pilot)
        assert app.screen is left_open and left_open.lines[-1].text == "more 2"  # what came meanwhile


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


async def test_a_line_that_comes_to_a_long_log_is_added_to_its_lines_not_to_a_copy(monkeypatch) -> None:
    """Each poll made the kept lines anew twice (the old and new ones added up, then the last KEPT_LINES cut
    from that): two lists as long as the log every second, in the C library's heap (lists that size are not
    pymalloc's), each a little longer than the last. They grow in place now, and the oldest go from the
    front."""
    app = demo_app(start="tasks")
    sources = counted_logs(monkeypatch, app, numbered_log(KEPT_LINES))
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = await open_log(pilot)
        assert len(screen.lines) == KEPT_LINES
        kept = screen.lines
        for _ in range(2):
            await screen.poll().wait()
        assert screen.lines is kept and len(kept) == KEPT_LINES and sources[screen.task_id][0].polls == 3
        assert [line.text for line in kept[:1] + kept[-2:]] == ["[00002] rows 200 loaded", "more 2", "more 3"]
