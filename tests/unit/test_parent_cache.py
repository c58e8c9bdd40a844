"""The console keeps its parents between refreshes: a refresh judges again only the parents whose subtasks'
entries changed, and a change another process makes to the store (a stop, a retry, a prune) is seen on the
next refresh all the same."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from hivemind_tui.core.config import Settings
from hivemind_tui.core.sqlite_db import StoreBusy
from hivemind_tui.services.models import TaskInfo, TaskListing
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.retention import prune_store
from hivemind_tui.services.session import Session, SessionData
from hivemind_tui.services.store import Store
from hivemind_tui.services.task_manager import TaskManager

POOL = "127.0.0.1:50051"
NOW = 1_800_000_000.0


async def seed(store: Store, staging: Path, parents: int) -> list[TaskInfo]:
    tasks = []
    async with store.write() as conn:
        for p in range(parents):
            await conn.execute(
                "INSERT INTO parents (parent_id, pool, owner, source, task_type, priority, total, plan, resources, "
                "concat, header, staging, created_at) VALUES (?, ?, 'alice', 's', 'simulation', 0, 2, '[]', '{}', "
                "'[]', 0, ?, ?)",
                (f"p{p}", POOL, str(staging / f"p{p}"), NOW + p),
            )
            for i in range(2):
                await conn.execute(
                    "INSERT INTO subtasks (task_id, parent_id, idx, attempt, zip_path, size, params, uploaded, "
                    "created_at) VALUES (?, ?, ?, 0, '', 1, 'null', 1, ?)",
                    (f"p{p}.{i}", f"p{p}", i, NOW),
                )
                tasks.append(TaskInfo(f"p{p}.{i}", "RUNNING", owner="alice", parent_task_id=f"p{p}"))
    return tasks


def manager(store: Store, tmp_path: Path, settle_in_background: bool = False) -> TaskManager:
    settings = Settings()
    session = Session(PoolClient(settings, POOL), tmp_path / "tokens")
    session.data = SessionData(POOL, "alice", "operator", "token", NOW, None)
    return TaskManager(settings, session, store, tmp_path / "staging", settle_in_background=settle_in_background)


async def test_a_refresh_judges_only_the_parents_of_changed_entries(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        tasks = await seed(store, tmp_path / "staging", 3)
        console = manager(store, tmp_path)
        before = {p.parent_id: p for p in await console.parents(tasks)}
        assert {p.status for p in before.values()} == {"RUNNING"}
        tasks = [t._replace(status="COMPLETED") if t.parent_task_id == "p1" else t for t in tasks]
        after = {p.parent_id: p for p in await console.parents(tasks)}
        assert after["p1"].status == "COMPLETED" and after["p1"] is not before["p1"]
        assert after["p0"] is before["p0"] and after["p2"] is before["p2"]  # kept, not worked out again
        # Equal entries in new objects (the monitor's full list now and then) change nothing either.
        again = {p.parent_id: p for p in await console.parents([t._replace() for t in tasks])}
        assert all(again[k] is after[k] for k in after)
        # A subtask that drops out of the list keeps its last finished status.
        dropped = {p.parent_id: p for p in await console.parents([t for t in tasks if t.task_id != "p1.0"])}
        assert dropped["p1"].status == "COMPLETED"


async def test_changes_from_another_process_are_seen(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        tasks = await seed(store, tmp_path / "staging", 3)
        console = manager(store, tmp_path)
        assert len(await console.parents(tasks)) == 3
        async with Store(tmp_path / "console.db") as other:  # the CLI, on the same data dir
            async with other.write() as conn:
                await conn.execute("UPDATE parents SET stopped = 1 WHERE parent_id = 'p0'")
            states = {p.parent_id: p for p in await console.parents(tasks)}
            assert states["p0"].status == "STOPPED"
            async with other.write() as conn:
                await conn.execute("UPDATE parents SET finished_at = ? WHERE parent_id = 'p0'", (NOW - 90 * 86400,))
            await prune_store(other, NOW, 30, tmp_path / "staging")
        assert [p.parent_id for p in await console.parents(tasks)] == ["p2", "p1"]
        _, loose = await console.overview(tasks)
        assert {t.task_id for t in loose} == {"p0.0", "p0.1"}  # their parent is gone: loose tasks now


async def test_a_monitor_listing_names_what_changed(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        tasks = await seed(store, tmp_path / "staging", 3)
        console = manager(store, tmp_path)
        monitor = object()
        first = TaskListing({t.task_id: t for t in tasks}, monitor, 1, None)
        before = {p.parent_id: p for p in await console.parents(first)}
        by_id = dict(first.by_id)
        by_id["p2.0"] = by_id["p2.0"]._replace(status="FAILED")
        by_id["p2.1"] = by_id["p2.1"]._replace(status="COMPLETED")
        second = TaskListing(by_id, monitor, 2, frozenset({"p2.0", "p2.1"}))
        after = {p.parent_id: p for p in await console.parents(second)}
        assert after["p2"].status == "FAILED" and after["p0"] is before["p0"]
        # A listing that does not follow the last one seen (a refresh in between went elsewhere) is compared
        # entry by entry, whatever it says changed.
        later = dict(by_id)
        later["p0.0"] = later["p0.0"]._replace(status="COMPLETED")
        later["p0.1"] = later["p0.1"]._replace(status="COMPLETED")
        skipped = TaskListing(later, monitor, 5, frozenset())
        assert {p.parent_id: p for p in await console.parents(skipped)}["p0"].status == "COMPLETED"


async def test_what_a_console_refresh_notes_is_written_behind_it_and_a_failure_shows_at_the_next(
    tmp_path: Path,
) -> None:
    """The console's manager writes finished statuses and finished parents while its refresh goes on. If that
    write fails (here: another process holds the store longer than the busy timeout), the next refresh says
    so, and the one after it writes everything again."""

    def finished_in_store(path: Path) -> tuple[int, int]:
        with sqlite3.connect(path) as db:
            statuses = db.execute("SELECT COUNT(*) FROM subtasks WHERE last_status = 'COMPLETED'").fetchone()[0]
            parents = db.execute("SELECT COUNT(*) FROM parents WHERE finished_at IS NOT NULL").fetchone()[0]
        return statuses, parents

    path = tmp_path / "console.db"
    async with Store(path, busy_timeout=0.05) as store:
        tasks = await seed(store, tmp_path / "staging", 3)
        console = manager(store, tmp_path, settle_in_background=True)
        done = [t._replace(status="COMPLETED") if t.parent_task_id == "p0" else t for t in tasks]
        assert {p.parent_id: p.status for p in await console.parents(done)}["p0"] == "COMPLETED"
        await console.settled()
        assert finished_in_store(path) == (2, 1)

        done = [t._replace(status="COMPLETED") for t in tasks]
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process's write, held past the busy timeout
        assert all(p.status == "COMPLETED" for p in await console.parents(done))  # shown without waiting
        with pytest.raises(StoreBusy):
            await console.parents(done)
        other.execute("ROLLBACK")
        other.close()
        assert finished_in_store(path) == (2, 1)
        assert all(p.status == "COMPLETED" for p in await console.parents(done))
        await console.settled()
        assert finished_in_store(path) == (6, 3)
