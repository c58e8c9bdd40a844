"""Tasks: parents and plain tasks with real progress; filter, search, sort, mark, stop and retry.

Keys: `f` cycles the status filter, `/` searches by id, `1`-`8` sort, space marks, `s` stops the marked
(or current) tasks after one confirmation listing them, `R` retries failed subtasks, enter opens a task,
`y` copies its id, right (or `+`) expands a split parent into its subtasks and left (or `-`) folds it
again. A PENDING task shows why it waits in its message.

A split task is one row (its progress counts its subtasks), so a job of 10,000 shards does not flood the
list; expanded, its subtasks follow it in shard order wherever sorting puts it, and hide with it.
"""

from __future__ import annotations

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import Input, Static

from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.models import KNOWN_STATUSES, TaskInfo, TaskListing
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.backend import TaskRow, TaskRowList
from hivemind_tui.ui.format import age, bar, duration, plain
from hivemind_tui.ui.screens.base import Section
from hivemind_tui.ui.screens.confirm import ConfirmScreen, on_yes
from hivemind_tui.ui.snapshot_work import snapshot_work
from hivemind_tui.ui.widgets.virtual_table import Column, VirtualTable

TREE = Column("tree", "", 1)
COLUMNS = [
    Column("id", "TASK", 20, middle=True),
    Column("type", "TYPE", 10),
    Column("status", "STATUS", 9),
    Column("progress", "PROGRESS", 14),
    Column("prio", "PRI", 5, right=True),
    Column("owner", "OWNER", 8),
    Column("age", "AGE", 6, right=True),
    Column("message", "WHY / MESSAGE", 40),
]
# The split types in a word, so the TYPE column never shows a cut one ("data_proce").
SHORT_TYPES = {"data_processing": "data", "machine_learning": "ml grid", "simulation": "simulation"}
FILTERS = ("", *KNOWN_STATUSES)
FINISHED = ("COMPLETED", "FAILED", "STOPPED")


def task_cells(row: TaskRow, now: float, tree: str = "") -> tuple[object, ...]:
    progress = f"{bar(100 * row.done / max(row.total, 1), 6)} {row.done}/{row.total}"
    finished = row.status in FINISHED
    # A finished task shows how long it took; where the pool gives no times (HiveMind), its age since submit.
    when = duration(row.created_at, row.updated_at) if finished and row.updated_at else age(row.created_at, now)
    return (
        tree,
        row.task_id,
        SHORT_TYPES.get(row.task_type, row.task_type or "-"),
        row.status,
        progress,
        row.priority,
        row.owner or "-",
        when,
        row.message.splitlines()[0] if row.message else "",
    )


class TasksScreen(Section):
    CSS_PATH = "tasks.tcss"
    BINDINGS = [
        Binding("f", "cycle_filter", "Filter"),
        Binding("slash", "search", "Search", key_display="/"),
        Binding("escape", "clear", "Clear", show=False),
        *(Binding(str(i + 1), f"sort({i})", f"Sort by {c.label}", show=False) for i, c in enumerate(COLUMNS)),
        Binding("s", "stop", "Stop"),
        Binding("R", "retry", "Retry", key_display="R"),
        Binding("y", "copy_id", "Copy"),
        Binding("l", "full_log", "Log"),
        Binding("right,plus", "expand", "Expand", key_display="→"),
        Binding("left,minus", "collapse", "Fold", show=False),
    ]

    def __init__(self) -> None:
        super().__init__()
        self._status_filter = ""
        self._search = ""
        self.rows: dict[str, TaskRow] = {}
        self._expanded: set[str] = set()
        self._last_under: set[str] = set()  # the last subtask shown under each expanded parent
        self._shown: int | None = None  # the generation of the rows shown (TaskRowList), when known

    def body(self) -> ComposeResult:
        yield Input(placeholder="search task ids", id="task-search")
        yield Static("", id="task-header")
        yield VirtualTable[TaskRow](
            [TREE, *COLUMNS],
            lambda r: r.task_id,
            self._cells,
            lambda r: r.status in ("COMPLETED", "STOPPED"),
            group_of=lambda r: r.under or None,
            id="task-table",
        )
        yield Static("", id="task-status")

    def _cells(self, row: TaskRow) -> tuple[object, ...]:
        if row.under:
            tree = "└" if row.task_id in self._last_under else "├"
        else:
            tree = ("▾" if row.task_id in self._expanded else "▸") if row.split else ""
        return task_cells(row, self.hive.backend.clock(), tree)

    @property
    def table(self) -> VirtualTable[TaskRow]:
        return self.query_one("#task-table", VirtualTable)

    def on_mount(self) -> None:
        super().on_mount()
        if not self.hive.deterministic:
            self.set_interval(1.0, self.tick_ages)
        self.query_one("#task-search", Input).display = False
        self.query_one("#task-header", Static).update(" " + self.table.header_text())
        self.table.focus()

    def show(self, snap: ClusterSnapshot) -> None:
        self.load_rows(snap)

    @snapshot_work(group="task-rows", description="load rows")
    async def load_rows(self, snap: ClusterSnapshot) -> None:
        rows = await self.hive.backend.task_rows(snap.tasks)
        generation = rows.generation if isinstance(rows, TaskRowList) else None
        changes = rows.changes_since(self._shown) if isinstance(rows, TaskRowList) else None
        if changes is not None and self._expanded.isdisjoint(r.task_id for r in changes):
            # The same tasks in the same order: only the changed rows (an expanded parent's subtasks change
            # only with it).
            self.rows.update((r.task_id, r) for r in changes)
            self.table.update_rows(changes)
            self._shown = generation
            self._status()
            return
        self._expanded &= {r.task_id for r in rows if r.split}  # parents that are gone fold away
        shown: list[TaskRow] = []
        last: set[str] = set()
        by_id = snap.tasks.by_id if isinstance(snap.tasks, TaskListing) else None
        for row in rows:
            shown.append(row)
            if row.task_id in self._expanded:
                subtasks = await self._subtask_rows(row.task_id, snap.tasks, by_id)
                shown += subtasks
                last.update(s.task_id for s in subtasks[-1:])
        self._last_under = last
        self.rows = {r.task_id: r for r in shown}
        self.table.replace_rows(shown)
        self._shown = generation
        self._status()

    async def _subtask_rows(
        self, parent_id: str, tasks: list[TaskInfo], by_id: dict[str, TaskInfo] | None
    ) -> list[TaskRow]:
        parent = await self.hive.backend.parent(parent_id, tasks)
        if parent is None:
            return []
        if by_id is None:
            by_id = {t.task_id: t for t in tasks}
        return [TaskRow.of_subtask(sub, by_id.get(sub.task_id), parent) for sub in parent.subtasks]

    def action_expand(self) -> None:
        row = self.rows.get(str(self.table.cursor_key))
        if row is None or not row.split or row.task_id in self._expanded:
            return
        self._expanded.add(row.task_id)
        self._fold_changed(row.task_id)

    def action_collapse(self) -> None:
        row = self.rows.get(str(self.table.cursor_key))
        parent = row and (row.under or (row.task_id if row.task_id in self._expanded else ""))
        if not parent:
            return
        self._expanded.discard(parent)
        self.table.move_to(parent)
        self._fold_changed(parent)

    def _fold_changed(self, parent_id: str) -> None:
        self.table.repaint([parent_id])  # its ▸ / ▾
        self._shown = None  # the same rows, with subtasks shown or hidden: the next load lays them all out
        if self.hive.snapshot is not None:
            self.load_rows(self.hive.snapshot)

    def tick_ages(self) -> None:
        """Unfinished tasks' ages grow with the clock, not with refreshes."""
        self.table.repaint(k for k, r in self.rows.items() if r.status not in FINISHED or not r.updated_at)

    def _status(self) -> None:
        t = self.table
        bits = [f"{t.row_count} of {t.total_count} tasks"]
        if self._status_filter:
            bits.append(f"status {self._status_filter}")
        if self._search:
            bits.append(f"search {self._search!r}")
        if t.marked:
            bits.append(f"{len(t.marked)} marked")
        if self.hive.readonly:
            bits.append("read-only: stop and retry are disabled")
        self.set_text("#task-status", plain(" · ".join(bits)))

    def _apply_filter(self) -> None:
        status, search = self._status_filter, self._search.lower()
        if not status and not search:
            self.table.set_filter(None)
        else:
            self.table.set_filter(lambda r: (not status or r.status == status) and search in r.task_id.lower())
        self._status()

    def action_cycle_filter(self) -> None:
        self._status_filter = FILTERS[(FILTERS.index(self._status_filter) + 1) % len(FILTERS)]
        self._apply_filter()

    def action_search(self) -> None:
        field = self.query_one("#task-search", Input)
        field.display = True
        field.focus()

    @on(Input.Changed, "#task-search")
    def _search_changed(self, event: Input.Changed) -> None:
        self._search = event.value.strip()
        self._apply_filter()

    @on(Input.Submitted, "#task-search")
    def _search_done(self) -> None:
        self.table.focus()

    def action_clear(self) -> None:
        self._search, self._status_filter = "", ""
        field = self.query_one("#task-search", Input)
        field.value, field.display = "", False
        self._apply_filter()
        self.table.focus()

    def action_sort(self, index: int) -> None:
        key = COLUMNS[index].key
        current = self.table.sort_state
        self.table.sort_by(key, reverse=bool(current and current[0] == key and not current[1]))
        self.query_one("#task-header", Static).update(" " + self.table.header_text())

    @on(VirtualTable.Selected, "#task-table")
    def _open(self, event: VirtualTable.Selected) -> None:
        from hivemind_tui.ui.screens.task_detail import TaskDetailScreen

        self.app.push_screen(TaskDetailScreen(str(event.key)))

    @work(group="task-actions", exit_on_error=False)
    async def action_full_log(self) -> None:
        """The log of the task under the cursor; of a split parent's first subtask."""
        key = self.table.cursor_key
        if key is None:
            return
        task_id = str(key)
        snap = self.hive.snapshot
        parent = await self.hive.backend.parent(task_id, snap.tasks if snap else [])
        if parent is not None and parent.split and parent.subtasks:
            task_id = parent.subtasks[0].task_id
        from hivemind_tui.ui.screens.log_view import show_log

        show_log(self.app, task_id)

    def _targets(self) -> list[str]:
        return sorted(map(str, self.table.marked)) or ([str(self.table.cursor_key)] if self.table.cursor_key else [])

    def _may_change(self) -> bool:
        if self.hive.readonly:
            self.notify(f"read-only: changing tasks is disabled (you are {self.hive.backend.role})", severity="warning")
            return False
        return True

    def action_stop(self) -> None:
        targets = [
            t
            for t in self._targets()
            if self.rows.get(t) and self.rows[t].status not in ("COMPLETED", "FAILED", "STOPPED")
        ]
        if not self._may_change() or not targets:
            if not targets:
                self.notify("nothing to stop: the chosen tasks have finished")
            return
        details = [f"{t} ({self.rows[t].total} subtask(s), {self.rows[t].status})" for t in targets]
        self.app.push_screen(
            ConfirmScreen(f"Stop {len(targets)} task(s)?", details), on_yes(lambda: self.stop(targets))
        )

    @work(group="task-actions", exit_on_error=False, description="stop")
    async def stop(self, targets: list[str]) -> None:
        snap = self.hive.snapshot
        try:
            stopped = await self.hive.backend.stop_tasks(targets, snap.tasks if snap else [])
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self.table.marked.clear()
        self.notify(f"stopped {len(stopped)} task(s)")
        self.hive.action_refresh()

    def action_retry(self) -> None:
        targets = [
            t
            for t in self._targets()
            if self.rows.get(t) and self.rows[t].split and self.rows[t].status in ("FAILED", "RUNNING", "STOPPED")
        ]
        if not self._may_change() or not targets:
            if not targets:
                self.notify("retry applies to split tasks with failed subtasks")
            return
        self.app.push_screen(
            ConfirmScreen(f"Retry the failed subtasks of {len(targets)} task(s)?", targets),
            on_yes(lambda: self.retry(targets)),
        )

    @work(group="task-actions", exit_on_error=False, description="retry")
    async def retry(self, targets: list[str]) -> None:
        snap = self.hive.snapshot
        try:
            new = await self.hive.backend.retry_tasks(targets, snap.tasks if snap else [])
        except HivemindError as exc:
            self.notify(exc.message, severity="error")
            return
        self.notify(f"resubmitted {len(new)} subtask(s)")
        self.hive.action_refresh()

    def action_copy_id(self) -> None:
        if self.table.cursor_key is not None:
            self.hive.copy(str(self.table.cursor_key), "the task id")
