"""One task: its subtasks, a log that follows new output, stop, retry, and the (aggregated) result.

The log viewer reads with GetTasklogSince from the last offset (so it never misses output), keeps a
bounded buffer, pauses with `f`, and searches with `/`. For a split task it shows the log of the subtask
under the cursor.
"""

from __future__ import annotations

from collections import deque
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.screen import Screen
from textual.widgets import Input, Log, Static

from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.log_follow import LogSource
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.services.task_manager import ParentState, SubtaskState
from hivemind_tui.ui.format import plain
from hivemind_tui.ui.hive import hive_of, watch_app
from hivemind_tui.ui.screens.confirm import ConfirmScreen, on_yes
from hivemind_tui.ui.snapshot_work import snapshot_work
from hivemind_tui.ui.widgets.footer import ConsoleFooter
from hivemind_tui.ui.widgets.grows_in_place import GrowingLog
from hivemind_tui.ui.widgets.header import ConsoleHeader, OutageBanner
from hivemind_tui.ui.widgets.virtual_table import Column, VirtualTable
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

LOG_LINES = 5000
LOG_POLL = 1.0
SUB_COLUMNS = [
    Column("id", "SUBTASK", 22),
    Column("status", "STATUS", 9),
    Column("worker", "WORKER", 14),
    Column("message", "MESSAGE", 40),
]


class FollowedLog(GrowingLog):
    """A log that, while it follows, keeps its last line in view when its size changes too (a table above
    it growing, the terminal shrinking), not only when lines arrive."""

    def on_resize(self) -> None:
        if self.auto_scroll:
            self.call_after_refresh(self.scroll_end, animate=False)


class TaskDetailScreen(ReportsWorkerErrors, Screen[None]):
    CSS_PATH = "task_detail.tcss"
    BINDINGS = [
        Binding("escape", "back", "Back"),
        Binding("f", "follow", "Follow"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("s", "stop", "Stop"),
        Binding("R", "retry", "Retry", key_display="R"),
        Binding("o", "download", "Result"),
        Binding("y", "copy_id", "Copy"),
        Binding("l", "full_log", "Log"),
    ]

    def __init__(self, task_id: str) -> None:
        super().__init__()
        self.task_id = task_id
        self.task_parent: ParentState | None = None
        self.log_task = task_id
        self.log_source: LogSource | None = None
        self.following = True
        self.log_lines: deque[str] = deque(maxlen=LOG_LINES)

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield OutageBanner(id="banner")
        yield Static("", id="task-facts")
        yield VirtualTable[SubtaskState](
            SUB_COLUMNS,
            lambda s: s.task_id,
            lambda s: (s.task_id, s.status, s.worker or "-", s.message.split("\n")[0]),
            id="subtasks",
        )
        with Horizontal(id="log-bar"):
            yield Static("", id="log-title")
            yield Input(placeholder="search the log", id="log-search")
        yield FollowedLog(max_lines=LOG_LINES, id="task-log", auto_scroll=True)
        yield ConsoleFooter()

    def on_mount(self) -> None:
        self.query_one("#log-search", Input).display = False
        self.query_one("#subtasks", VirtualTable).display = False
        watch_app(self, "snapshot", self.show, init=True)
        self.poll_log()
        if not getattr(self.app, "deterministic", False):
            self.set_interval(LOG_POLL, self.poll_log)

    def on_unmount(self) -> None:
        """Dismissed, the screen and its widgets are a reference cycle left to the collector: the kept log
        lines go now (`GrowingLog.on_unmount`)."""
        self.log_lines.clear()
        self.log_source = None

    # -- facts and subtasks -----------------------------------------------------------------------
    def show(self, snap: ClusterSnapshot | None) -> None:
        if snap is not None:
            self.load(snap)

    @snapshot_work(group="task-detail", description="load")
    async def load(self, snap: ClusterSnapshot) -> None:
        backend = hive_of(self).backend
        self.task_parent = await backend.parent(self.task_id, snap.tasks)
        facts = self.query_one("#task-facts", Static)
        if self.task_parent is not None and self.task_parent.split:
            p = self.task_parent
            facts.update(
                f"[b]{plain(p.parent_id)}[/]  {plain(p.status)}  {p.done}/{p.total} subtasks done  "
                f"{plain(p.task_type)}  priority {p.priority}  owner {plain(p.owner)}\n{plain(p.message)}"
            )
            table = self.query_one("#subtasks", VirtualTable)
            table.display = True
            table.replace_rows(p.subtasks)
            return
        task = next((t for t in snap.tasks if t.task_id == self.task_id), None)
        if task is None:
            facts.update(f"[b]{plain(self.task_id)}[/]: not listed by the pool (pruned, or not yours)")
            return
        why = f"\n[yellow]{plain(task.message)}[/]" if task.message else ""
        exit_code = "-" if task.exit_code is None else task.exit_code
        facts.update(
            f"[b]{plain(task.task_id)}[/]  {plain(task.status)}  worker {plain(task.worker or '-')}  exit {exit_code}  "
            f"{plain(task.task_type or '-')}  priority {task.priority}  owner {plain(task.owner or '-')}{why}"
        )

    @on(VirtualTable.CursorMoved, "#subtasks")
    def _subtask(self, event: VirtualTable.CursorMoved) -> None:
        if event.key is not None and event.key != self.log_task:
            self.log_task = str(event.key)
            self.log_source = None
            self.log_lines.clear()
            self.query_one("#task-log", Log).clear()
            self.poll_log()

    # -- the log ----------------------------------------------------------------------------------
    @work(exclusive=True, group="task-log", exit_on_error=False)
    async def poll_log(self) -> None:
        title = self.query_one("#log-title", Static)
        if not self.following:
            self._title()
            return
        if self.log_source is None:
            self.log_source = hive_of(self).backend.log_follower(self.log_task)
        try:
            complete = await self.log_source.poll()
        except HivemindError as exc:
            title.update(f"log unavailable: {plain(exc.message)}")
            return
        if complete:
            self.log_lines.extend(complete)
            self.query_one("#task-log", Log).write_lines(complete)
        self._title()

    def _title(self) -> None:
        state = "following" if self.following else "paused (f follows)"
        self.query_one("#log-title", Static).update(
            f"log of [b]{plain(self.log_task)}[/] · {state} · {len(self.log_lines)} lines kept"
        )

    def action_follow(self) -> None:
        self.following = not self.following
        log = self.query_one("#task-log", Log)
        log.auto_scroll = self.following
        if self.following:
            log.scroll_end(animate=False)
        self.poll_log()

    def action_search(self) -> None:
        field = self.query_one("#log-search", Input)
        field.display = True
        field.focus()

    @on(Input.Submitted, "#log-search")
    def _find(self, event: Input.Submitted) -> None:
        needle = event.value.strip().lower()
        if not needle:
            return
        log = self.query_one("#task-log", Log)
        hits = [i for i, line in enumerate(self.log_lines) if needle in line.lower()]
        if not hits:
            self.notify(f"{needle!r} is not in the kept log")
            return
        self.following = False
        log.auto_scroll = False
        log.scroll_to(y=hits[-1], animate=False)
        self.notify(f"{len(hits)} line(s) match; showing the last (f resumes following)")

    # -- actions ----------------------------------------------------------------------------------
    def _may_change(self) -> bool:
        hive = hive_of(self)
        if hive.readonly:
            self.notify(
                f"read-only: you are {hive.backend.role}; stop, retry and uploads are disabled",
                severity="warning",
            )
            return False
        return True

    def action_stop(self) -> None:
        if not self._may_change():
            return
        if self.task_parent is not None and self.task_parent.split:
            running = [
                s.task_id for s in self.task_parent.subtasks if s.status not in ("COMPLETED", "FAILED", "STOPPED")
            ]
            details = running or ["(no subtask is still running)"]
        else:
            details = [self.task_id]
        self.app.push_screen(ConfirmScreen(f"Stop {self.task_id}? These will stop:", details), on_yes(self.stop))

    @work(group="task-actions", exit_on_error=False)
    async def stop(self) -> None:
        snap = hive_of(self).snapshot
        try:
            await hive_of(self).backend.stop_tasks([self.task_id], snap.tasks if snap else [])
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self.notify(f"{self.task_id}: stopping")
        hive_of(self).action_refresh()

    def action_retry(self) -> None:
        if not self._may_change():
            return
        if self.task_parent is None or not self.task_parent.split:
            self.notify("retry applies to split tasks; submit a plain task again to rerun it")
            return
        failed = [s.task_id for s in self.task_parent.subtasks if s.status in ("FAILED", "STOPPED")]
        if not failed:
            self.notify("no failed subtasks to retry")
            return
        self.app.push_screen(ConfirmScreen("Retry these subtasks (new ids)?", failed), on_yes(self.retry))

    @work(group="task-actions", exit_on_error=False)
    async def retry(self) -> None:
        snap = hive_of(self).snapshot
        try:
            new = await hive_of(self).backend.retry_tasks([self.task_id], snap.tasks if snap else [])
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self.notify(f"resubmitted {len(new)} subtask(s)")

    def action_download(self) -> None:
        default = str(hive_of(self).backend.exports_dir / f"{self.task_id}-result.zip")
        field = self.query_one("#log-search", Input)
        field.display = True
        field.placeholder = "save the result to (enter)"
        field.value = default
        field.focus()
        field.add_class("download")

    @on(Input.Submitted, "#log-search.download")
    def _download_to(self, event: Input.Submitted) -> None:
        event.stop()
        event.input.remove_class("download")
        event.input.display = False
        event.input.placeholder = "search the log"
        hive_of(self).download_result(self.task_id, Path(event.value.strip()).expanduser())

    def action_full_log(self) -> None:
        from hivemind_tui.ui.screens.log_view import show_log

        show_log(self.app, self.log_task)

    def action_copy_id(self) -> None:
        hive_of(self).copy(self.log_task, "the task id")

    def action_back(self) -> None:
        field = self.query_one("#log-search", Input)
        if field.display:
            field.display = False
            field.remove_class("download")
            return
        self.app.pop_screen()
