"""`l`: one task's log on the whole screen, as `kubectl logs -f` in k9s: following by default, `w` folds long
lines at the screen's width (as `less` does), `t` shows when each line arrived, `G`/`g` jump to the
end/start, `/` searches and `n`/`N` step through the matches. The log is text, never markup.

The lines are shown by Textual's `Log`, which keeps text and paints only the rows on screen: `RichLog` kept
each line as a painted strip with seven caches of its own, ~3.3 KB a line (55 bytes of text), so a console
following a task that prints a line a second grew ~12 MB an hour.

The last log closed is kept (`show_log`): opening it again shows it as it was left and fetches only the lines
that came meanwhile. A new screen each time was ~1.7 MB of widgets and caches made and left to the collector,
and the whole log fetched again. (The soak's growth, which this was made for, did not change measurably.)"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass
from typing import Any

from rich.cells import chop_cells
from textual import events, on, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Input, Log, Static

from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.log_follow import LogSource
from hivemind_tui.ui.format import clock_text, plain
from hivemind_tui.ui.hive import hive_of
from hivemind_tui.ui.widgets.footer import ConsoleFooter
from hivemind_tui.ui.widgets.grows_in_place import GrowingLog
from hivemind_tui.ui.widgets.header import ConsoleHeader
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

KEPT_LINES = 20_000
POLL_SECONDS = 1.0
KEPT_VIEW = "log-view"
"""The name the last log view is installed under: an installed screen outlives its dismissal."""


def show_log(app: App[object], task_id: str) -> None:
    """Shows the log of `task_id` in the kept view when it is that task's and on no screen stack, else in a
    new view that is kept in its place. A view left open under another section (a mode's stack) stays there,
    and the one shown here is not kept: a screen may be on one stack only."""
    kept = app.get_screen(KEPT_VIEW, LogViewScreen) if app.is_screen_installed(KEPT_VIEW) else None
    if kept is not None and _on_a_stack(app, kept):
        app.push_screen(LogViewScreen(task_id))
        return
    if kept is not None and kept.task_id == task_id:
        app.push_screen(kept)
        return
    if kept is not None:
        app.uninstall_screen(kept)
        kept.remove()
    view = LogViewScreen(task_id)
    app.install_screen(view, KEPT_VIEW)
    app.push_screen(view)


def _on_a_stack(app: App[object], screen: Screen[Any]) -> bool:
    stacks = [app.screen_stack]
    for mode in app.MODES:
        with contextlib.suppress(KeyError):  # a section not shown yet has no stack
            stacks.append(app.get_screen_stack(mode))
    return any(screen in stack for stack in stacks)


def fold(text: str, width: int) -> list[str]:
    """A line cut into rows of `width` cells, words and all (tabs expanded first, as `Log` shows them)."""
    return chop_cells(text.expandtabs(), width) or [""]


@dataclass(frozen=True, slots=True)
class LogLine:
    arrived: float
    text: str


class LogViewScreen(ReportsWorkerErrors, Screen[None]):
    CSS_PATH = "log_view.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("f", "follow", "Follow"),
        Binding("w", "wrap", "Wrap"),
        Binding("t", "timestamps", "Times"),
        Binding("G", "end", "End", key_display="G"),
        Binding("g", "start", "Start"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("n", "next_match(1)", "Next"),
        Binding("N", "next_match(-1)", "Previous", key_display="N"),
    ]

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.lines: list[LogLine] = []
        self.following = True
        self.wrap = False
        self.timestamps = False
        self.matches: list[int] = []
        self.match = -1
        self._source: LogSource | None = None
        self._poller: Timer | None = None

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield Static("", id="logview-title")
        yield GrowingLog(id="logview", auto_scroll=True, max_lines=KEPT_LINES)
        yield Input(placeholder="search the log", id="logview-search")
        yield ConsoleFooter()

    @property
    def view(self) -> Log:
        return self.query_one("#logview", Log)

    def on_mount(self) -> None:
        self.query_one("#logview-search", Input).display = False

    def on_screen_resume(self) -> None:
        """Shown (first, or again): what came while it was hidden, then a poll a second."""
        self.poll()
        if self._poller is not None:
            self._poller.resume()
        elif not hive_of(self).deterministic:
            self._poller = self.set_interval(POLL_SECONDS, self.poll)

    def on_screen_suspend(self) -> None:
        """Hidden (closed, or under another screen or section) it asks the pool for nothing."""
        if self._poller is not None:
            self._poller.pause()

    def on_unmount(self) -> None:
        """Removed, the screen and its widgets are a reference cycle left to the collector: the lines (and
        the source's unfinished line) go now (`GrowingLog.on_unmount`)."""
        self.lines = []
        self.matches = []
        self._source = None

    @work(exclusive=True, group="log-view", exit_on_error=False)
    async def poll(self) -> None:
        if self._source is None:
            self._source = hive_of(self).backend.log_follower(self.task_id)
        try:
            complete = await self._source.poll()
        except HivemindError as exc:
            self.query_one("#logview-title", Static).update(f"[b red]log unavailable: {plain(exc.message)}[/]")
            return
        if complete:
            now = hive_of(self).backend.clock() if hive_of(self).deterministic else time.time()
            fresh = [LogLine(now, line) for line in complete]
            self.lines.extend(fresh)  # in place: two new lists as long as the log each second were churn
            del self.lines[:-KEPT_LINES]
            self.view.write_lines(self._rows(fresh), scroll_end=self.following)
        self._title()

    def _shown(self, line: LogLine) -> str:
        return f"{clock_text(line.arrived)}  {line.text}" if self.timestamps else line.text

    def _rows(self, lines: list[LogLine]) -> list[str]:
        """The view's rows for these lines: one each, or folded at its width when wrapping."""
        shown = [self._shown(line) for line in lines]
        width = self.view.scrollable_content_region.width
        if not self.wrap or width < 1:
            return shown
        return [row for text in shown for row in fold(text, width)]

    def _redraw(self) -> None:
        view = self.view
        view.clear()
        view.write_lines(self._rows(self.lines), scroll_end=False)
        if self.following:
            view.scroll_end(animate=False)

    def on_resize(self, event: events.Resize) -> None:
        if self.wrap:  # folded at the old width: once the view has its new size, fold again
            self.call_after_refresh(self._redraw)

    def _title(self) -> None:
        bits = ["following" if self.following else "paused (f follows)", f"{len(self.lines)} lines"]
        bits += ["wrapped"] if self.wrap else []
        if self.matches:
            bits.append(f"match {self.match + 1} of {len(self.matches)}")
        self.query_one("#logview-title", Static).update(
            f"log of [b]{plain(self.task_id)}[/] · {plain(' · '.join(bits))}"
        )

    def action_follow(self) -> None:
        self.following = not self.following
        self.view.auto_scroll = self.following
        if self.following:
            self.view.scroll_end(animate=False)
        self._title()

    def action_wrap(self) -> None:
        self.wrap = not self.wrap
        self._redraw()
        self._title()

    def action_timestamps(self) -> None:
        self.timestamps = not self.timestamps
        self._redraw()

    def action_end(self) -> None:
        self.following = True
        self.view.auto_scroll = True
        self.view.scroll_end(animate=False)
        self._title()

    def action_start(self) -> None:
        self._pause()
        self.view.scroll_home(animate=False)

    def _pause(self) -> None:
        self.following = False
        self.view.auto_scroll = False
        self._title()

    def action_search(self) -> None:
        field = self.query_one("#logview-search", Input)
        field.display = True
        field.focus()

    @on(Input.Submitted, "#logview-search")
    def _searched(self, event: Input.Submitted) -> None:
        event.input.display = False
        needle = event.value.strip().lower()
        self.matches = [i for i, line in enumerate(self.lines) if needle and needle in line.text.lower()]
        self.match = -1
        self.view.focus()
        if not self.matches:
            self.notify(f"{event.value.strip()!r} is not in the kept log")
            self._title()
            return
        self.action_next_match(1)

    def action_next_match(self, step: int) -> None:
        if not self.matches or self.wrap:  # wrapped lines no longer map one line to one row
            return
        self._pause()
        self.match = (self.match + step) % len(self.matches)
        self.view.scroll_to(y=self.matches[self.match], animate=False)
        self._title()

    def action_back(self) -> None:
        field = self.query_one("#logview-search", Input)
        if field.display:
            field.display = False
            self.view.focus()
            return
        self.app.pop_screen()
