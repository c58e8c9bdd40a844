"""The console's store (`console.db`): tasks and subtasks, history, alerts, audit, VPN peers.

Each issue that needs a table appends a migration to `MIGRATIONS`; migrations are never edited once
released, only followed by new ones.
"""

from __future__ import annotations

from pathlib import Path

from hivemind_tui.sqlite_db import Database, Migration

MIGRATIONS: list[Migration] = [
    # 1: the frame itself; a key/value table for small facts such as the last refresh time.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
]


class Store(Database):
    """The console's database; open it inside the running loop."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, MIGRATIONS)

    async def get_meta(self, key: str) -> str | None:
        row = await self.fetchone("SELECT value FROM meta WHERE key = ?", (key,))
        return None if row is None else row["value"]

    async def set_meta(self, key: str, value: str) -> None:
        async with self.write() as conn:
            await conn.execute(
                "INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )
