"""Keeping console.db and staging/ bounded for a client that runs for months: parents finished longer ago
than `retention_days` go with their subtasks and staged zips, and so do audit rows and cleared alerts of that
age. `watch`, the console (at start and hourly) and `hivemind-tui prune` call the one function here."""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from hivemind_tui.core.datadir import remove_tree_inside
from hivemind_tui.services.store import Store

DAY = 86400.0
# How often the long-running loops (watch, the console) prune.
PRUNE_EVERY = 3600.0


@dataclass(frozen=True)
class Pruned:
    parents: int
    subtasks: int
    audit: int
    alerts: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def text(self) -> str:
        return (
            f"pruned {self.parents} finished parent(s) with {self.subtasks} subtask(s), "
            f"{self.audit} audit row(s), {self.alerts} cleared alert(s)"
        )


async def prune_store(store: Store, now: float, retention_days: float, staging_root: Path) -> Pruned:
    """Remove what is older than the retention; with a retention of 0, nothing is ever removed. A pruned
    parent's staged zips go too, if its folder is under `staging_root` (the data dir's staging/)."""
    if retention_days <= 0:
        return Pruned(0, 0, 0, 0)
    cutoff = now - retention_days * DAY
    async with store.write() as conn:
        old = await conn.execute_fetchall(
            "SELECT parent_id, staging FROM parents WHERE finished_at IS NOT NULL AND finished_at < ?", (cutoff,)
        )
        ids = [row["parent_id"] for row in old]
        subtasks = 0
        for start in range(0, len(ids), 500):
            batch = ids[start : start + 500]
            marks = ",".join("?" * len(batch))
            cursor = await conn.execute(f"DELETE FROM subtasks WHERE parent_id IN ({marks})", batch)  # noqa: S608
            subtasks += cursor.rowcount
            await conn.execute(f"DELETE FROM parents WHERE parent_id IN ({marks})", batch)  # noqa: S608
        audit = (await conn.execute("DELETE FROM audit WHERE ts < ?", (cutoff,))).rowcount
        alerts = (
            await conn.execute("DELETE FROM alerts WHERE cleared_at IS NOT NULL AND cleared_at < ?", (cutoff,))
        ).rowcount
    for row in old:
        await asyncio.to_thread(remove_tree_inside, row["staging"], staging_root)
    return Pruned(len(ids), subtasks, audit, alerts)
