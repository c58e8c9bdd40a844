"""Metric history in the store, kept bounded: raw node samples for an hour, minute averages for 7 days.

A refresh's raw samples are one row, a frame: each metric of every node packed as float32 in the order of
a roster (the node ids, a row of their own, shared by the frames until the fleet changes). One node's
series reads its four bytes of each frame (SQLite's substr on a blob). `compact()` folds frames older than
an hour into per-node minute averages and drops minutes older than a week. History exists for the time a
console or `watch` was running.
"""

from __future__ import annotations

import itertools
import json
import sys
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from hivemind_tui.services.models import NodeInfo
from hivemind_tui.services.store import Store

RAW_KEEP = 3600.0
MINUTES_KEEP = 7 * 86400.0
FLOAT = 4  # bytes of one packed value


def pack(values: Iterable[float]) -> bytes:
    """float32, little-endian whatever the host: a store copied to another machine reads the same."""
    packed = array("f", values)
    if sys.byteorder == "big":
        packed.byteswap()
    return packed.tobytes()


@lru_cache(maxsize=8)
def roster_ids(text: str) -> tuple[str, ...]:
    """A roster's node ids from its stored JSON, decoded once per roster, not once per frame that uses it."""
    return tuple(json.loads(text))


def unpack(blob: bytes) -> array[float]:
    values = array("f", blob)
    if sys.byteorder == "big":
        values.byteswap()
    return values


@dataclass(frozen=True)
class NodePoint:
    ts: float
    cpu: float
    memory: float
    gpu: float


class History:
    def __init__(self, store: Store) -> None:
        self._store = store
        self._roster: tuple[tuple[str, ...], str] = ((), "[]")  # the last fleet's ids, and as stored

    async def record_nodes(self, nodes: Sequence[NodeInfo], now: float) -> None:
        if not nodes:
            return
        nodes = sorted(nodes, key=lambda n: n.node_id)  # one roster for one fleet, in whatever order it came
        ids = tuple(n.node_id for n in nodes)
        online = [n.cpu_usage for n in nodes if n.online]
        if self._roster[0] != ids:
            self._roster = (ids, json.dumps(ids))
        text = self._roster[1]
        async with self._store.write() as conn:
            # Looked up at each refresh, not kept: another process's compact() may have dropped an old one.
            await conn.execute("INSERT OR IGNORE INTO node_rosters (node_ids) VALUES (?)", (text,))
            (roster,) = await conn.execute_fetchall("SELECT id FROM node_rosters WHERE node_ids = ?", (text,))
            await conn.execute(
                "INSERT OR REPLACE INTO node_frames (ts, roster, cpu, memory, gpu, online) VALUES (?, ?, ?, ?, ?, ?)",
                (
                    now,
                    roster[0],
                    pack(n.cpu_usage for n in nodes),
                    pack(n.memory_usage for n in nodes),
                    pack(n.gpu_usage for n in nodes),
                    bytes(n.online for n in nodes),
                ),
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
        """Frames older than RAW_KEEP become minute averages, in the transaction that drops them: two
        processes on one store (a console and `watch`) never fold the same frame twice."""
        cutoff = now - RAW_KEEP
        async with self._store.write() as conn:
            frames = await conn.execute_fetchall(
                "SELECT f.ts, r.node_ids, f.cpu, f.memory, f.gpu FROM node_frames f "
                "JOIN node_rosters r ON r.id = f.roster WHERE f.ts < ?",
                (cutoff,),
            )
            await conn.executemany(
                "INSERT INTO node_minutes (node_id, minute, cpu, memory, gpu, samples) VALUES (?, ?, ?, ?, ?, ?) "
                "ON CONFLICT(node_id, minute) DO UPDATE SET "
                "cpu = (cpu * samples + excluded.cpu * excluded.samples) / (samples + excluded.samples), "
                "memory = (memory * samples + excluded.memory * excluded.samples) / (samples + excluded.samples), "
                "gpu = (gpu * samples + excluded.gpu * excluded.samples) / (samples + excluded.samples), "
                "samples = samples + excluded.samples",
                _minute_averages(frames),
            )
            await conn.execute("DELETE FROM node_frames WHERE ts < ?", (cutoff,))
            await conn.execute("DELETE FROM node_rosters WHERE id NOT IN (SELECT roster FROM node_frames)")
            await conn.execute("DELETE FROM cluster_samples WHERE ts < ?", (cutoff,))
            await conn.execute("DELETE FROM node_minutes WHERE minute < ?", (now - MINUTES_KEEP,))
            await conn.execute("DELETE FROM task_counts WHERE ts < ?", (now - MINUTES_KEEP,))

    async def node_history(self, node_id: str, since: float) -> list[NodePoint]:
        """Raw samples where they are kept, minute averages before that; oldest first."""
        minutes = await self._store.fetchall_tuples(
            "SELECT minute, cpu, memory, gpu FROM node_minutes WHERE node_id = ? AND minute >= ? ORDER BY minute",
            (node_id, since),
        )
        raw: list[tuple[float, float, float, float]] = []
        for roster, ids in await self._rosters():
            if node_id not in ids:
                continue
            at = ids.index(node_id) * FLOAT + 1
            rows = await self._store.fetchall_tuples(
                "SELECT ts, substr(cpu, ?, 4), substr(memory, ?, 4), substr(gpu, ?, 4) FROM node_frames "
                "WHERE roster = ? AND ts >= ?",
                (at, at, at, roster, since),
            )
            raw += [(ts, *unpack(cpu + memory + gpu)) for ts, cpu, memory, gpu in rows]
        raw.sort()
        return [NodePoint(*row) for row in (*minutes, *raw)]

    async def _rosters(self) -> list[tuple[int, tuple[str, ...]]]:
        rows = await self._store.fetchall_tuples("SELECT id, node_ids FROM node_rosters")
        return [(roster, roster_ids(ids)) for roster, ids in rows]

    async def cluster_cpu(self, since: float, step: float) -> list[float]:
        """The online nodes' average CPU, the highest of each `step` seconds (epoch-aligned), oldest first.

        A chart a few dozen cells wide draws no more points than that; an hour of 1 s refreshes is 3,600
        samples, which the dashboard read and decoded at every refresh, more each second of the hour."""
        rows = await self._store.fetchall_tuples(
            "SELECT CAST(ts / ? AS INTEGER) AS step, MAX(cpu) FROM cluster_samples WHERE ts >= ? "
            "GROUP BY step ORDER BY step",
            (step, since),
        )
        return [cpu for _, cpu in rows]

    async def finished(self, since: float, step: float) -> list[float]:
        """Tasks that finished in each `step` seconds (epoch-aligned), oldest first: the growth of the
        COMPLETED and FAILED counts from the last sample of one step to the last of the next, never negative
        (pruned tasks leave the counts). Summed in SQLite, so a refresh decodes a row a step, not every
        status of every sample of the hour."""
        rows = await self._store.fetchall_tuples(
            # SQLite gives the bare column `done` from the row where MAX(ts) is found: each step's last sample.
            "SELECT CAST(ts / ? AS INTEGER) AS step, MAX(ts), done FROM ("
            "SELECT ts, SUM(CASE WHEN status IN ('COMPLETED', 'FAILED') THEN count ELSE 0 END) AS done "
            "FROM task_counts WHERE ts >= ? GROUP BY ts) GROUP BY step ORDER BY step",
            (step, since),
        )
        return [float(max(later[2] - earlier[2], 0)) for earlier, later in itertools.pairwise(rows)]

    async def sustained_cpu(self, threshold: float, window: float, now: float) -> list[str]:
        """Nodes whose every sample over the last `window` seconds is above `threshold` (and cover it): what
        the samples kept say, read once after a start (`SustainedCpu` follows it from there)."""
        frames = await self._store.fetchall_tuples(
            "SELECT f.ts, r.node_ids, f.cpu FROM node_frames f JOIN node_rosters r ON r.id = f.roster WHERE f.ts >= ?",
            (now - window - 120,),
        )
        low: dict[str, float] = {}
        older: set[str] = set()
        for ts, ids, cpu in frames:
            nodes = roster_ids(ids)
            if ts < now - window:
                older.update(nodes)
                continue
            for node_id, value in zip(nodes, unpack(cpu), strict=True):
                low[node_id] = min(low.get(node_id, value), value)
        return [node_id for node_id, value in low.items() if value > threshold and node_id in older]

    async def row_counts(self) -> tuple[int, int]:
        """Raw samples (nodes times frames) and minute averages kept."""
        frames = await self._store.fetchall_tuples(
            "SELECT r.node_ids, COUNT(*) FROM node_frames f JOIN node_rosters r ON r.id = f.roster GROUP BY f.roster"
        )
        minutes = await self._store.fetchvalue("SELECT COUNT(*) FROM node_minutes")
        return sum(len(roster_ids(ids)) * count for ids, count in frames), int(minutes)


def _minute_averages(frames: Iterable[Any]) -> list[tuple[str, float, float, float, float, int]]:
    """Rows for node_minutes from frames (ts, roster's ids as JSON, cpu, memory, gpu)."""
    sums: dict[tuple[str, float], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
    for ts, ids, cpu, memory, gpu in frames:
        minute = float(int(ts // 60) * 60)
        for node_id, c, m, g in zip(roster_ids(ids), unpack(cpu), unpack(memory), unpack(gpu), strict=True):
            total = sums[(node_id, minute)]
            total[0] += c
            total[1] += m
            total[2] += g
            total[3] += 1
    return [(node_id, minute, c / n, m / n, g / n, int(n)) for (node_id, minute), (c, m, g, n) in sums.items()]


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
