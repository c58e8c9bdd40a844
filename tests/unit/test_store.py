"""The store frame: WAL, ordered migrations, serialized writes, rollback of a failed write, for both kinds of
database (statements in aiosqlite's thread, or at once on the loop), and how the direct one waits for a
write lock another process holds: in a thread, the loop free meanwhile."""

from __future__ import annotations

import asyncio
import sqlite3
import time
from pathlib import Path

import pytest

from hivemind_tui.core.sqlite_db import Database, DirectDatabase, StoreBusy
from hivemind_tui.services.store import MIGRATIONS, Store


async def test_store_opens_in_wal_with_schema_version(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        row = await store.fetchone("PRAGMA journal_mode")
        assert row[0] == "wal"
        assert (await store.fetchone("PRAGMA user_version"))[0] == len(MIGRATIONS)


KINDS = pytest.mark.parametrize("kind", [Database, DirectDatabase])


@KINDS
async def test_migrations_run_once_and_in_order(tmp_path: Path, kind: type[Database]) -> None:
    path = tmp_path / "x.db"
    first = ["CREATE TABLE a (x INTEGER)"]
    async with kind(path, first) as db, db.write() as conn:
        await conn.execute("INSERT INTO a VALUES (1)")
    second = [*first, ["ALTER TABLE a ADD COLUMN y INTEGER DEFAULT 7", "CREATE TABLE b (z TEXT)"]]
    async with kind(path, second) as db:
        assert [tuple(r) for r in await db.fetchall("SELECT x, y FROM a")] == [(1, 7)]
        assert (await db.fetchone("PRAGMA user_version"))[0] == 2
    with pytest.raises(RuntimeError, match="newer"):
        await kind(path, first).open()


@KINDS
async def test_concurrent_writes_are_serialized(tmp_path: Path, kind: type[Database]) -> None:
    async with kind(tmp_path / "c.db", ["CREATE TABLE n (v INTEGER)", "INSERT INTO n VALUES (0)"]) as db:

        async def bump() -> None:
            async with db.write() as conn:
                row = await (await conn.execute("SELECT v FROM n")).fetchone()
                await asyncio.sleep(0)
                await conn.execute("UPDATE n SET v = ?", (row[0] + 1,))

        await asyncio.gather(*(bump() for _ in range(100)))
        assert (await db.fetchone("SELECT v FROM n"))[0] == 100


@KINDS
async def test_failed_write_rolls_back(tmp_path: Path, kind: type[Database]) -> None:
    async with kind(tmp_path / "r.db", ["CREATE TABLE t (v INTEGER UNIQUE)"]) as db:
        with pytest.raises(ValueError):
            async with db.write() as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
                raise ValueError("half-way")
        assert await db.fetchall("SELECT v FROM t") == []


async def test_direct_write_waits_for_another_writer_in_a_thread(tmp_path: Path) -> None:
    path = tmp_path / "w.db"
    async with DirectDatabase(path, ["CREATE TABLE t (v INTEGER)"], busy_timeout=30) as db:
        other = sqlite3.connect(path, isolation_level=None)  # another process's writer, as SQLite sees it
        other.execute("BEGIN IMMEDIATE")

        async def write() -> None:
            async with db.write() as conn:
                await conn.execute("INSERT INTO t VALUES (1)")

        waiting = asyncio.create_task(write())
        ticks = 0
        while ticks < 20:  # the loop runs while the write waits for the lock
            await asyncio.sleep(0.01)
            ticks += 1
        assert not waiting.done()
        assert await db.fetchall("SELECT v FROM t") == []  # reads go on meanwhile
        other.execute("COMMIT")
        await asyncio.wait_for(waiting, 30)
        assert [r["v"] for r in await db.fetchall("SELECT v FROM t")] == [1]
        async with db.write() as conn:  # the busy timeout is 0 on the loop again: a free lock is taken at once
            await conn.execute("INSERT INTO t VALUES (2)")
        other.close()


async def test_direct_write_gives_up_after_the_busy_timeout(tmp_path: Path) -> None:
    path = tmp_path / "b.db"
    async with DirectDatabase(path, ["CREATE TABLE t (v INTEGER)"], busy_timeout=0.2) as db:
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        start = time.monotonic()
        with pytest.raises(StoreBusy, match="nothing was changed"):
            async with db.write() as conn:
                await conn.execute("INSERT INTO t VALUES (1)")
        assert time.monotonic() - start >= 0.15  # it did wait, in its thread
        other.execute("ROLLBACK")
        other.close()
        assert await db.fetchall("SELECT v FROM t") == []
