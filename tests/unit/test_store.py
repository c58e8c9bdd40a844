"""The store frame: WAL, ordered migrations, serialized writes, rollback of a failed write."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hivemind_tui.core.sqlite_db import Database
from hivemind_tui.services.store import MIGRATIONS, Store


async def test_store_opens_in_wal_with_schema_version(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        row = await store.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
        assert (await store.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS)


async def test_migrations_run_once_and_in_order(tmp_path: Path) -> None:
    path = tmp_path / "x.db"
    first = ["CREATE TABLE a (x INTEGER)"]
    async with Database(path, first) as db, db.write() as conn:
        await conn.execute("INSERT INTO a VALUES (1)")
    second = [*first, ["ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 7", "CREATE TABLE b (z TEXT)"]]
    async with Database(path, second) as db:
        assert [tuple(r) for r in await db.fetchall("SELECT x, y FROM a")] == [(1, 7)]
        assert (await db.fetchone("PRAGMA user_version"))[0] == 2
    with pytest.raises(RuntimeError, match="newer"):
        await Database(path, first).open()


async def test_concurrent_writes_are_serialized(tmp_path: Path) -> None:
    async with Database(tmp_path / "c.db", ["CREATE TABLE n (v INTEGER)", "INSERT INTO n VALUES (0)"]) as db:

        async def bump() -> None:
            async with db.write() as conn:
                row = await (await conn.execute("SELECT v FROM n")).fetchone()
                await asyncio.sleep(0)
                await conn.execute("UPDATE n SET v = ?", (row[0] + 1,))

        await asyncio.gather(*(bump() for _ in range(100)))
        assert (await db.fetchone("SELECT v FROM n"))[0] == 100


async def test_failed_write_rolls_back(tmp_path: Path) -> None:
    async with Database(tmp_path / "r.db", ["CREATE TABLE t (v INTEGER UNIQUE)"]) as db:
        with pytest.raises(ValueError):
            async with db.write() as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
                raise ValueError("half-way")
        assert await db.fetchall("SELECT v FROM t") == []
