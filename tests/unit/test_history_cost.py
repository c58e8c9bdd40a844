"""What a refresh reads and writes of the history costs about the same with 5 or 200 nodes' hour of samples.

It did not: the dashboard's cluster CPU trend averaged every node's raw samples of the last hour at each
refresh (1,000 nodes at a 1 s refresh: 3.6 million rows by the end of the first hour, ~0.4 s of CPU a
refresh), the sustained-CPU alert grouped every sample of its window, and each refresh wrote a row per node
into an index by node (~20 ms of CPU a refresh at 1,000 nodes). Counted in SQLite's own VM instructions (a
progress handler), not in time.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from hivemind_tui.core.sqlite_db import Database
from hivemind_tui.services.history import History, SustainedCpu
from hivemind_tui.services.models import NodeInfo
from hivemind_tui.services.store import MIGRATIONS, Store

NOW = 1_800_000_000.0
HOUR_OF_5S = 720


async def refresh_steps(tmp_path: Path, nodes: int) -> tuple[int, list[float], list[str]]:
    """VM instructions of one refresh's history reads after an hour of 5 s refreshes of `nodes` nodes."""
    async with Store(tmp_path / f"console-{nodes}.db") as store:
        history = History(store)
        sustained = SustainedCpu(history)
        fleet = [NodeInfo(f"n{i}", online=True, cpu_usage=95.0 if i == 0 else 10.0 + i % 50) for i in range(nodes)]
        for step in range(HOUR_OF_5S):
            now = NOW - 5 * (HOUR_OF_5S - 1 - step)
            await history.record_nodes(fleet, now)
            await sustained.nodes(fleet, 90.0, 300.0, now)
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        reader = store._reader  # the connection the reads go through
        assert reader is not None
        await reader.set_progress_handler(count, 100)
        trend = await history.cluster_cpu(NOW - 3600, 5.0)
        held = await sustained.nodes(fleet, 90.0, 300.0, NOW)
        await reader.set_progress_handler(None, 100)
        return steps, trend, held


async def test_a_refreshs_history_reads_do_not_grow_with_the_number_of_nodes(tmp_path: Path) -> None:
    few, few_trend, few_held = await refresh_steps(tmp_path, 5)
    many, many_trend, many_held = await refresh_steps(tmp_path, 200)
    assert len(few_trend) == len(many_trend) == HOUR_OF_5S  # one point a refresh, either way
    assert few_trend[0] == (95.0 + 11 + 12 + 13 + 14) / 5
    assert few_held == many_held == ["n0"]  # n0 stayed above 90% for the whole window
    assert many < 2 * few, (few, many)


async def test_sustained_cpu_holds_after_its_window_clears_when_the_cpu_drops_and_survives_a_restart(
    tmp_path: Path,
) -> None:
    async with Store(tmp_path / "console.db") as store:
        history = History(store)
        sustained = SustainedCpu(history)
        hot, cool = NodeInfo("n1", online=True, cpu_usage=95.0), NodeInfo("n1", online=True, cpu_usage=50.0)
        held_at = []
        for step in range(80):  # 400 s of 5 s refreshes
            now = NOW + 5 * step
            await history.record_nodes([hot], now)
            if await sustained.nodes([hot], 90.0, 300.0, now):
                held_at.append(now - NOW)
        assert held_at[0] == 300.0 and len(held_at) == 80 - 60
        after_restart = SustainedCpu(history)  # a new console: the history says n1 is still hot
        assert await after_restart.nodes([hot], 90.0, 300.0, NOW + 400) == ["n1"]
        assert await after_restart.nodes([cool], 90.0, 300.0, NOW + 405) == []
        assert await after_restart.nodes([hot], 90.0, 300.0, NOW + 410) == []  # a new run starts from now


async def record_steps(tmp_path: Path, nodes: int) -> int:
    """VM instructions of recording one refresh of `nodes` nodes after an hour of 5 s refreshes."""
    async with Store(tmp_path / f"record-{nodes}.db") as store:
        history = History(store)
        fleet = [NodeInfo(f"n{i}", online=True, cpu_usage=10.0 + i % 50) for i in range(nodes)]
        for step in range(HOUR_OF_5S):
            await history.record_nodes(fleet, NOW - 5 * (HOUR_OF_5S - step))
        steps = 0

        def count() -> int:
            nonlocal steps
            steps += 1
            return 0

        writer = store._writer
        assert writer is not None
        await writer.set_progress_handler(count, 10)  # type: ignore[attr-defined]
        await history.record_nodes(fleet, NOW)
        await writer.set_progress_handler(None, 10)  # type: ignore[attr-defined]
        return steps


async def test_recording_a_refresh_costs_about_the_same_with_5_or_200_nodes(tmp_path: Path) -> None:
    few = await record_steps(tmp_path, 5)
    many = await record_steps(tmp_path, 200)
    assert many < 2 * few, (few, many)


async def test_a_frame_keeps_each_nodes_samples_and_compact_folds_them_into_minutes(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        history = History(store)
        first = [NodeInfo("a", online=True, cpu_usage=10.0, memory_usage=20.0), NodeInfo("b", cpu_usage=30.0)]
        later = [NodeInfo("c", online=True, cpu_usage=70.0), NodeInfo("a", online=True, cpu_usage=12.0)]
        await history.record_nodes(first, NOW)
        await history.record_nodes(later, NOW + 5)  # the fleet changed: a new roster, "a" elsewhere in it
        points = await history.node_history("a", NOW - 60)
        assert [(p.ts, p.cpu, p.memory) for p in points] == [(NOW, 10.0, 20.0), (NOW + 5, 12.0, 0.0)]
        assert [p.cpu for p in await history.node_history("c", NOW - 60)] == [70.0]
        assert await history.row_counts() == (4, 0)
        await history.compact(NOW + 5 + 3600.5)
        assert await history.row_counts() == (0, 3)
        minute = await history.node_history("a", NOW - 60)
        assert [(p.ts, p.cpu) for p in minute] == [(NOW // 60 * 60, 11.0)]  # both samples fall in one minute
        assert await store.fetchvalue("SELECT COUNT(*) FROM node_rosters") == 0


async def test_the_raw_samples_of_an_older_store_become_minute_averages(tmp_path: Path) -> None:
    path = tmp_path / "console.db"
    async with Database(path, MIGRATIONS[:9]) as old, old.write() as conn:
        await conn.executemany(
            "INSERT INTO node_samples (node_id, ts, cpu, memory, gpu, online) VALUES (?, ?, ?, 0, 0, 1)",
            [("a", NOW, 10.0), ("a", NOW + 5, 20.0), ("b", NOW, 50.0)],
        )
    async with Store(path) as store:
        history = History(store)
        assert [(p.ts, p.cpu) for p in await history.node_history("a", NOW - 60)] == [(NOW // 60 * 60, 15.0)]
        assert await history.row_counts() == (0, 2)
    with sqlite3.connect(path) as db:
        assert not db.execute("SELECT name FROM sqlite_master WHERE name = 'node_samples'").fetchall()


async def test_the_dashboards_trends_are_a_point_a_step_however_many_samples_the_hour_holds(tmp_path: Path) -> None:
    """An hour of 1 s refreshes holds 3,600 CPU samples and 7,200 task counts: the dashboard read and decoded
    all of them at every refresh (more each second of the first hour) to draw charts a few dozen cells wide."""
    async with Store(tmp_path / "console.db") as store:
        history = History(store)
        async with store.write() as conn:
            await conn.executemany(
                "INSERT INTO cluster_samples (ts, cpu, online) VALUES (?, ?, 1)",
                [(NOW - 3600 + s, float(s % 100)) for s in range(3600)],
            )
            await conn.executemany(  # a task done every 2 s, and 3 running all along
                "INSERT INTO task_counts (ts, status, count) VALUES (?, ?, ?)",
                [
                    (NOW - 3600 + s, status, s // 2 if status == "COMPLETED" else 3)
                    for s in range(3600)
                    for status in ("COMPLETED", "RUNNING")
                ],
            )
        cpu = await history.cluster_cpu(NOW - 3600, 30.0)
        done = await history.finished(NOW - 3600, 30.0)
    assert len(cpu) == 120 and len(done) == 119  # done: the growth from each step's end to the next one's
    assert cpu[:4] == [29.0, 59.0, 89.0, 99.0]  # the highest of each 30 s (s % 100 over 0-29, 30-59, ...)
    assert set(done) == {15.0}
