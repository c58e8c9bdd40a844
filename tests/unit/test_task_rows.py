"""The tasks screen's rows say which of them changed since the last list, so that a refresh with 1% of
100,000 tasks changed updates 1% of the table; whenever that is not all that changed, they say so."""

from __future__ import annotations

from hivemind_tui.services.models import TaskInfo
from hivemind_tui.services.task_manager import ParentState
from hivemind_tui.ui.backend import TaskRows


def tasks(n: int) -> list[TaskInfo]:
    return [TaskInfo(f"t-{i}", "RUNNING", created_at=1000.0 + i) for i in range(n)]


def parent(parent_id: str, status: str, created_at: float) -> ParentState:
    return ParentState(parent_id, "alice", "data_processing", 0, created_at, True, status, "", 0, 3, ())


def test_a_refresh_that_only_changes_some_tasks_names_those_rows_and_keeps_the_order() -> None:
    maker = TaskRows()
    loose = tasks(5)
    parents = [parent("job-a", "RUNNING", 1002.5)]
    first = maker.of(parents, loose)
    assert [r.task_id for r in first] == ["t-4", "t-3", "job-a", "t-2", "t-1", "t-0"]
    loose[1] = loose[1]._replace(status="COMPLETED")
    parents = [parent("job-a", "COMPLETED", 1002.5)]
    second = maker.of(parents, loose)
    assert [r.task_id for r in second] == [r.task_id for r in first]
    changed = second.changes_since(first.generation)
    assert changed is not None
    assert {(r.task_id, r.status) for r in changed} == {("t-1", "COMPLETED"), ("job-a", "COMPLETED")}
    assert (second[4].task_id, second[4].status) == ("t-1", "COMPLETED")
    assert all(new is old for new, old in zip(second, first, strict=True) if new.task_id not in ("t-1", "job-a"))


def test_the_second_asker_of_a_refresh_gets_the_same_list_and_still_learns_what_changed() -> None:
    maker = TaskRows()
    loose = tasks(3)
    seen_by_screen = maker.of([], loose)
    loose[0] = loose[0]._replace(status="FAILED")
    by_dashboard = maker.of([], loose)
    by_screen = maker.of([], loose)
    assert by_screen is by_dashboard
    assert [r.task_id for r in by_screen.changes_since(seen_by_screen.generation) or []] == ["t-0"]
    assert by_screen.changes_since(by_screen.generation) == []


def test_tasks_that_come_or_go_or_a_missed_list_say_that_the_changes_are_not_known() -> None:
    maker = TaskRows()
    loose = tasks(3)
    first = maker.of([], loose)
    grown = maker.of([], [*loose, TaskInfo("t-new", "PENDING", created_at=5000.0)])
    assert grown.changes_since(first.generation) is None
    assert grown[0].task_id == "t-new"
    shrunk = maker.of([], loose[1:])
    assert shrunk.changes_since(grown.generation) is None
    assert [r.task_id for r in shrunk] == ["t-2", "t-1"]
    loose[2] = loose[2]._replace(status="COMPLETED")
    changed = maker.of([], loose[1:])
    assert changed.changes_since(first.generation) is None  # two lists ago: not known
    moved = maker.of([], [loose[1]._replace(created_at=9999.0), loose[2]])
    assert moved.changes_since(changed.generation) is None  # a row whose place changes
    assert [r.task_id for r in moved] == ["t-1", "t-2"]
