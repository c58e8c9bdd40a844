"""Alerts in the store: raised once when a condition starts, cleared when it ends.

A condition is a key (`node_offline:n1`) with a message. `evaluate()` takes every condition that holds
now and returns what changed, so the console can toast and `watch` can run its hook.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hivemind_tui.services.store import Store


@dataclass(frozen=True)
class Condition:
    key: str
    kind: str
    subject: str
    message: str


@dataclass(frozen=True)
class Alert:
    id: int
    key: str
    kind: str
    subject: str
    message: str
    raised_at: float
    cleared_at: float | None

    @property
    def active(self) -> bool:
        return self.cleared_at is None

    def as_json(self) -> dict[str, Any]:
        return {**asdict(self), "active": self.active}


def _alert(row: Any) -> Alert:
    return Alert(
        row["id"], row["key"], row["kind"], row["subject"], row["message"], row["raised_at"], row["cleared_at"]
    )


class Alerts:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def evaluate(
        self, holding: list[Condition], now: float, kinds: set[str] | None = None
    ) -> tuple[list[Alert], list[Alert]]:
        """Raise alerts for new conditions and clear those that ended; only `kinds` are judged (all if None)."""
        wanted = {c.key: c for c in holding}
        raised, cleared = [], []
        async with self._store.write() as conn:
            active = [
                _alert(r)
                for r in await (await conn.execute("SELECT * FROM alerts WHERE cleared_at IS NULL")).fetchall()
            ]
            active_keys = {a.key for a in active}
            for alert in active:
                if alert.key not in wanted and (kinds is None or alert.kind in kinds):
                    await conn.execute("UPDATE alerts SET cleared_at = ? WHERE id = ?", (now, alert.id))
                    cleared.append(
                        Alert(alert.id, alert.key, alert.kind, alert.subject, alert.message, alert.raised_at, now)
                    )
            for key, c in wanted.items():
                if key not in active_keys:
                    cursor = await conn.execute(
                        "INSERT INTO alerts (key, kind, subject, message, raised_at) VALUES (?, ?, ?, ?, ?)",
                        (key, c.kind, c.subject, c.message, now),
                    )
                    raised.append(Alert(int(cursor.lastrowid or 0), key, c.kind, c.subject, c.message, now, None))
        return raised, cleared

    async def list(self, include_cleared: bool = False, limit: int = 500) -> list[Alert]:
        where = "" if include_cleared else "WHERE cleared_at IS NULL"
        rows = await self._store.fetchall(
            f"SELECT * FROM alerts {where} ORDER BY raised_at DESC LIMIT ?",  # noqa: S608
            (limit,),
        )
        return [_alert(r) for r in rows]
