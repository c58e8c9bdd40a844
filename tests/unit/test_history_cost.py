"""What a refresh reads of the history costs the same with 5 or 200 nodes' hour of samples.

It did not: the dashboard's cluster CPU trend averaged every node's raw samples of the last hour at each
refresh (1,000 nodes at a 1 s refresh: 3.6 million rows by the end of the first hour, ~0.4 s of CPU a
refresh), and the sustained-CPU alert grouped every sample of its window. Counted in SQLite's own VM
instructions (a progress handler), not in time.
"""

from __future__ import annotations

from pathlib import Path

from hivemind_tui.services.history import History, SustainedCpu
from hivemind_tui.services.models import NodeInfo
from hivemind_tui.services.store import Store

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
        trend = [cpu for _, cpu in await history.cluster_cpu(NOW - 3600)]
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
