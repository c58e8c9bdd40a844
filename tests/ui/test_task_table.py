"""The tasks table: rows follow the model (deleted rows stay deleted under a filter, new ones come in where
the list puts them), ages move with the clock, and cut values keep what matters."""

from __future__ import annotations

import pytest
from textual.screen import Screen

from hivemind_tui.core.config import Settings
from hivemind_tui.services.models import TaskInfo
from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.backend import TaskRow, TaskRowList, TaskRows
from hivemind_tui.ui.screens.tasks import TasksScreen
from hivemind_tui.ui.widgets.virtual_table import VirtualTable, _fit
from tests.ui.demo import DEMO_NOW, DemoBackend
from tests.ui.demo_shots import record_calls, settle


class NewestFirstBackend(DemoBackend):
    """Rows newest first, as the live backend gives them."""

    def __init__(self) -> None:
        super().__init__(Settings(refresh_interval=3600.0))

    async def task_rows(self, tasks: list[TaskInfo]) -> list[TaskRow]:
        rows = await super().task_rows(tasks)
        return sorted(rows, key=lambda r: r.created_at or 0, reverse=True)


class RowMakerBackend(DemoBackend):
    """Rows made as the live backend makes them (TaskRows): a refresh that only changes tasks says which."""

    def __init__(self) -> None:
        super().__init__(Settings(refresh_interval=3600.0))
        self.maker = TaskRows()
        self.lists: list[TaskRowList] = []

    async def task_rows(self, tasks: list[TaskInfo]) -> list[TaskRow]:
        self.lists.append(self.maker.of([], [t for t in tasks if not t.parent_task_id]))
        return self.lists[-1]


def table(app: HivemindApp) -> VirtualTable[TaskRow]:
    return app.screen.query_one("#task-table", VirtualTable)


async def test_rows_follow_the_model_through_filters_and_new_tasks_come_first() -> None:
    backend = NewestFirstBackend()
    app = HivemindApp(backend, deterministic=True, start="tasks")
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        assert isinstance(app.screen, TasksScreen)
        assert "montecarlo-5d" in table(app).visible_keys()
        await pilot.press("f", "f", "f", "f")  # status filter: COMPLETED
        await settle(pilot)
        assert app.screen._status_filter == "COMPLETED"
        backend.tasks = [t for t in backend.tasks if t.task_id != "montecarlo-5d"]  # pruned while filtered
        app.action_refresh()
        await settle(pilot)
        await pilot.press("escape")  # clear the filter
        await settle(pilot)
        assert "montecarlo-5d" not in table(app).visible_keys()
        backend.tasks.append(TaskInfo("fresh-01", "PENDING", "", "", "alice", DEMO_NOW - 5, DEMO_NOW - 5, 5000))
        app.action_refresh()
        await settle(pilot)
        assert table(app).visible_keys()[0] == "fresh-01"


async def test_a_refresh_that_only_changes_tasks_updates_their_rows_under_the_filter_and_sorting() -> None:
    backend = RowMakerBackend()
    at = {t.task_id: i for i, t in enumerate(backend.tasks)}
    app = HivemindApp(backend, deterministic=True, start="tasks")
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        while screen._status_filter != "PENDING":
            await pilot.press("f")
        await pilot.press("2")  # sorted by type
        await settle(pilot)
        assert table(app).visible_keys() == ["sweep-19c2d0"]
        retried = backend.tasks[at["render-b81e04"]]._replace(status="PENDING")  # FAILED before: comes in
        backend.tasks[at["render-b81e04"]] = retried
        backend.tasks[at["sweep-19c2d0"]] = backend.tasks[at["sweep-19c2d0"]]._replace(message="no node free")
        backend.tasks[at["montecarlo-5d"]] = backend.tasks[at["montecarlo-5d"]]._replace(status="FAILED")
        app.action_refresh()
        await settle(pilot)
        assert backend.lists[-1].changes_since(backend.lists[-2].generation) is not None  # the path under test
        assert sorted(table(app).visible_keys()) == ["render-b81e04", "sweep-19c2d0"]
        assert "no node free" in table(app)._line("sweep-19c2d0")
        assert screen.rows["montecarlo-5d"].status == "FAILED"
        await pilot.press("escape")
        await settle(pilot)
        assert " FAILED " in table(app)._line("montecarlo-5d")


async def test_a_split_parent_expands_into_its_subtasks_and_folds_again() -> None:
    backend = NewestFirstBackend()
    subtasks = [t.task_id for t in backend.tasks if t.parent_task_id == "etl-7f3a2c"]
    assert len(subtasks) >= 2
    app = HivemindApp(backend, deterministic=True, start="tasks")
    async with app.run_test(size=(140, 40)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        keys = table(app).visible_keys()
        assert "etl-7f3a2c" in keys and not set(subtasks) & set(keys)  # one row for the whole job
        assert table(app)._line("etl-7f3a2c").startswith("▸ ")
        table(app).move_to("etl-7f3a2c")
        await pilot.press("right")
        await settle(pilot)
        keys = table(app).visible_keys()
        at = keys.index("etl-7f3a2c")
        assert keys[at + 1 : at + 1 + len(subtasks)] == subtasks  # right under it, in shard order
        assert table(app)._line("etl-7f3a2c").startswith("▾ ")
        assert table(app)._line(subtasks[0]).startswith("├ ") and table(app)._line(subtasks[-1]).startswith("└ ")
        await pilot.press("7")  # sort by age: the subtasks move with their parent
        await settle(pilot)
        keys = table(app).visible_keys()
        at = keys.index("etl-7f3a2c")
        assert keys[at + 1 : at + 1 + len(subtasks)] == subtasks
        await pilot.press("f", "f", "f", "f")  # COMPLETED only: the RUNNING parent hides, its subtasks too
        await settle(pilot)
        assert not ({"etl-7f3a2c", *subtasks} & set(table(app).visible_keys()))
        await pilot.press("escape")
        await settle(pilot)
        table(app).move_to(subtasks[-1])
        await pilot.press("left")  # folding from a subtask goes back to its parent
        await settle(pilot)
        assert not set(subtasks) & set(table(app).visible_keys())
        assert table(app).cursor_key == "etl-7f3a2c" and table(app)._line("etl-7f3a2c").startswith("▸ ")


async def test_ages_move_with_the_clock_and_wide_values_fit() -> None:
    backend = NewestFirstBackend()
    backend.tasks.append(TaskInfo("fresh-01", "PENDING", "", "", "alice", DEMO_NOW - 2, DEMO_NOW - 2, 5000))
    # As a HiveMind pool lists it: finished, no times of its own; the submit here knew when it was made.
    backend.tasks.append(TaskInfo("hm-done", "COMPLETED", "", "", "alice", DEMO_NOW - 90, None))
    app = HivemindApp(backend, deterministic=True, start="tasks")
    async with app.run_test(size=(140, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, TasksScreen)
        line = table(app)._line("fresh-01")
        assert " 5000 " in line and "    2s " in line
        backend.clock.now += 31
        screen.tick_ages()
        assert "   33s " in table(app)._line("fresh-01")
        assert " 2m" in table(app)._line("hm-done")  # its age, not "-"
        finished = table(app)._line("montecarlo-5d")
        assert " 10m00s " in finished  # a finished task shows how long it ran, whole


def test_cells_are_cut_by_terminal_width_and_ids_in_the_middle() -> None:
    assert _fit("very-long-task-name-491a66", 20, False, True) == "very-long-…me-491a66"
    assert _fit("数据数据数据数据", 9, False, False) == "数据数据…"  # wide characters count two cells
    assert _fit("é", 3, True, False) == "  é"


async def test_a_new_task_repaints_the_table_without_laying_the_screen_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """Textual lays the whole screen out at any change of a virtual size; a tasks screen gains a row with each
    task submitted (every few seconds on a busy pool) and its table's region stays as it was."""
    backend = NewestFirstBackend()
    backend.tasks += [
        TaskInfo(f"older-{i:02d}", "COMPLETED", "", "", "alice", DEMO_NOW - 900 - i, DEMO_NOW - 800) for i in range(12)
    ]
    app = HivemindApp(backend, deterministic=True, start="tasks")
    async with app.run_test(size=(120, 14)) as pilot:  # fewer lines than tasks: the scrollbar shows
        await settle(pilot)
        shown = table(app)
        assert shown.show_vertical_scrollbar
        before = shown.row_count
        laid_out = record_calls(monkeypatch, Screen, "_refresh_layout", lambda screen, *args, **kwargs: None)
        backend.tasks.append(TaskInfo("fresh-01", "PENDING", "", "", "alice", DEMO_NOW - 5, DEMO_NOW - 5, 5000))
        app.action_refresh()
        await settle(pilot)
        assert shown.row_count == before + 1 and shown.visible_keys()[0] == "fresh-01"
        assert shown.vertical_scrollbar.window_virtual_size == before + 1
        assert not laid_out
        shown.action_jump(-1)  # to the last row, then most tasks go: the view comes back within the rows
        await settle(pilot)
        backend.tasks = backend.tasks[:2]
        app.action_refresh()
        await settle(pilot)
        assert shown.row_count <= 2 and shown.scroll_y == 0 and not shown.show_vertical_scrollbar
