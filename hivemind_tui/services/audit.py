"""The audit log: who did what, to what, when. Any command or screen that changes something writes here."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.logging_setup import redact
from hivemind_tui.core.sqlite_db import Connection
from hivemind_tui.services.store import Store


@dataclass(frozen=True)
class AuditEntry:
    ts: float
    actor: str
    action: str
    target: str
    detail: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class AuditLog:
    def __init__(self, store: Store, clock: Clock = system_clock) -> None:
        self._store = store
        self._clock = clock

    async def record(self, actor: str, action: str, target: str = "", detail: str = "") -> None:
        async with self._store.write() as conn:
            await self.record_in(conn, actor, action, target, detail)

    async def record_in(self, conn: Connection, actor: str, action: str, target: str = "", detail: str = "") -> None:
        """Record inside the caller's write transaction, so the change and its audit row land together."""
        await conn.execute(
            "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)",
            (self._clock(), actor or "?", action, target, redact(detail)),
        )

    async def since(self, ts: float, limit: int = 1000) -> list[AuditEntry]:
        rows = await self._store.fetchall(
            "SELECT * FROM audit WHERE ts >= ? ORDER BY ts DESC, id DESC LIMIT ?", (ts, limit)
        )
        return [AuditEntry(r["ts"], r["actor"], r["action"], r["target"], r["detail"]) for r in rows]
