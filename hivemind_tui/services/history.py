"""Metric history in the store, kept bounded: raw node samples for an hour, minute averages for 7 days.

1,000 nodes every 5 s is 17 M raw rows a day, so `compact()` folds raw samples older than an hour into
per-minute averages and drops minutes older than a week. History exists for the time a console or
`watch` was running.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from hivemind_tui.services.models import NodeInfo
from hivemind_tui.services.store import Store

RAW_KEEP = 3600.0
MINUTES_KEEP = 7 * 86400.0


@dataclass(frozen=True)
class NodePoint:
    ts: float
    cpu: float
    memory: float
    gpu: float


class History:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def record_nodes(self, nodes: Iterable[NodeInfo], now: float) -> None:
        rows = [(n.node_id, now, n.cpu_usage, n.memory_usage, n.gpu_usage, int(n.online)) for n in nodes]
        online = [row[2] for row in rows if row[5]]
        if rows:
            async with self._store.write() as conn:
                await conn.executemany(
                    "INSERT INTO node_samples (node_id, ts, cpu, memory, gpu, online) VALUES (?, ?, ?, ?, ?, ?)", rows
                )
                if online:
                    await conn.execute(
                        "INSERT OR REPLACE INTO cluster_samples (ts, cpu, online) VALUES (?, ?, ?)",
                        (now, sum(online) / len(online), len(online)),
                    )

    async def record_task_counts(self, counts: dict[str, int], now: float) -> None:
        async with self._store.write() as conn:
            await conn.executemany(
                "INSERT OR REPLACE INTO task_counts (ts, status, count) VALUES (?, ?, ?)",
                [(now, status, count) for status, count in counts.items()],
            )

    async def compact(self, now: float) -> None:
        cutoff = now - RAW_KEEP
        async with self._store.write() as conn:
            await conn.execute(
                "INSERT INTO node_minutes (node_id, minute, cpu, memory, gpu, samples) "
                "SELECT node_id, CAST(ts / 60 AS INTEGER) * 60, AVG(cpu), AVG(memory), AVG(gpu), COUNT(*) "
                "FROM node_samples WHERE ts < ? GROUP BY node_id, CAST(ts / 60 AS INTEGER) "
                "ON CONFLICT(node_id, minute) DO UPDATE SET "
                "cpu = (cpu * samples + excluded.cpu * excluded.samples) / (samples + excluded.samples), "
                "memory = (memory * samples + excluded.memory * excluded.samples) / (samples + excluded.samples), "
                "gpu = (gpu * samples + excluded.gpu * excluded.samples) / (samples + excluded.samples), "
                "samples = samples + excluded.samples",
                (cutoff,),
            )
            await conn.execute("DELETE FROM node_samples WHERE ts < ?", (cutoff,))
            await conn.execute("DELETE FROM cluster_samples WHERE ts < ?", (cutoff,))
            await conn.execute("DELETE FROM node_minutes WHERE minute < ?", (now - MINUTES_KEEP,))
            await conn.execute("DELETE FROM task_counts WHERE ts < ?", (now - MINUTES_KEEP,))

    async def node_history(self, node_id: str, since: float) -> list[NodePoint]:
        """Raw samples where they are kept, minute averages before that; oldest first."""
        minutes = await self._store.fetchall(
            "SELECT minute AS ts, cpu, memory, gpu FROM node_minutes WHERE node_id = ? AND minute >= ? ORDER BY minute",
            (node_id, since),
        )
        raw = await self._store.fetchall(
            "SELECT ts, cpu, memory, gpu FROM node_samples WHERE node_id = ? AND ts >= ? ORDER BY ts", (node_id, since)
        )
        return [NodePoint(r["ts"], r["cpu"], r["memory"], r["gpu"]) for r in (*minutes, *raw)]

    async def cluster_cpu(self, since: float) -> list[tuple[float, float]]:
        """The online nodes' average CPU, one point a refresh, oldest first."""
        query = "SELECT ts, cpu FROM cluster_samples WHERE ts >= ? ORDER BY ts"
        rows = await self._store.fetchall_tuples(query, (since,))
        return [(ts, cpu) for ts, cpu in rows]

    async def task_counts(self, since: float) -> list[tuple[float, dict[str, int]]]:
        rows = await self._store.fetchall(
            "SELECT ts, status, count FROM task_counts WHERE ts >= ? ORDER BY ts", (since,)
        )
        series: dict[float, dict[str, int]] = {}
        for r in rows:
            series.setdefault(r["ts"], {})[r["status"]] = r["count"]
        return sorted(series.items())

    async def sustained_cpu(self, threshold: float, window: float, now: float) -> list[str]:
        """Nodes whose every sample over the last `window` seconds is above `threshold` (and cover it): what
        the samples kept say, read once after a start (`SustainedCpu` follows it from there)."""
        rows = await self._store.fetchall(
            "SELECT node_id, MIN(cpu) AS low, MIN(ts) AS first FROM node_samples WHERE ts >= ? GROUP BY node_id",
            (now - window,),
        )
        older = {
            r["node_id"]
            for r in await self._store.fetchall(
                "SELECT DISTINCT node_id FROM node_samples WHERE ts < ? AND ts >= ?", (now - window, now - window - 120)
            )
        }
        return [r["node_id"] for r in rows if r["low"] > threshold and r["node_id"] in older]

    async def row_counts(self) -> tuple[int, int]:
        raw = await self._store.fetchvalue("SELECT COUNT(*) FROM node_samples")
        minutes = await self._store.fetchvalue("SELECT COUNT(*) FROM node_minutes")
        return int(raw), int(minutes)


class SustainedCpu:
    """Which nodes' CPU stayed above a threshold for a whole window, followed from one refresh to the next in
    memory: since when each online node has been above it. Grouping the window's samples at every refresh
    read 300,000 rows a refresh (1,000 nodes, 1 s, 5 min). The first look after a start reads the history
    once, so that an alert that held before a restart holds on."""

    def __init__(self, history: History) -> None:
        self._history = history
        self._above_since: dict[str, float] | None = None
        self._threshold: float | None = None

    async def nodes(self, nodes: Iterable[NodeInfo], threshold: float, window: float, now: float) -> list[str]:
        if self._above_since is None or threshold != self._threshold:
            held = await self._history.sustained_cpu(threshold, window, now)
            self._above_since, self._threshold = dict.fromkeys(held, now - window), threshold
        previous = self._above_since
        self._above_since = {
            n.node_id: previous.get(n.node_id, now) for n in nodes if n.online and n.cpu_usage > threshold
        }
        return [node_id for node_id, since in self._above_since.items() if since <= now - window]
