"""An aiosqlite database with ordered migrations, one serialized writer and a separate reader.

Shared by the console's store (`services/store.py`) and the embedded pool's storage (`nodepool/`), which
may not import each other. aiosqlite coroutines that share a connection interleave inside one
transaction, so every write goes through `write()`: a lock plus `BEGIN IMMEDIATE`, committed or rolled
back as a whole. Reads use their own connection, so they only ever see committed data (WAL mode).
Open it inside the running loop, never before `App.run()` or `asyncio.run()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Self

import aiosqlite

from hivemind_tui.core.errors import HivemindError

# One statement, or several run in order inside the same transaction (sqlite3 runs one per execute).
Migration = str | Sequence[str]


class StoreBusy(HivemindError):
    """Another process held the database for longer than the busy timeout; the write did not happen."""

    code = "BUSY"


class Database:
    """A SQLite file whose schema version is `PRAGMA user_version`, raised by each migration in turn."""

    def __init__(self, path: Path, migrations: Sequence[Migration], busy_timeout: float = 30.0) -> None:
        self.path = path
        self._migrations = migrations
        # How long a write waits for another process's write (SQLite's own busy handler); past it, StoreBusy.
        self._busy_ms = max(int(busy_timeout * 1000), 1)
        self._writer: aiosqlite.Connection | None = None
        self._reader: aiosqlite.Connection | None = None
        self._lock = asyncio.Lock()

    @property
    def schema_version(self) -> int:
        return len(self._migrations)

    async def open(self) -> Self:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Created private: SQLite gives its -wal and -shm files the same mode. Only when it is missing: closing
        # any descriptor of an open database drops every POSIX lock this process holds on it, so another
        # process would take our WAL for abandoned and delete it, and our later commits with it.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
        self._writer = await self._connect()
        try:
            await self._writer.execute("PRAGMA journal_mode=WAL")
            await self._migrate()
            self._reader = await self._connect()
        except BaseException:
            await self.close()
            raise
        return self

    async def _connect(self) -> aiosqlite.Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA synchronous=NORMAL")
        return conn

    async def _migrate(self) -> None:
        async with self.write() as conn:
            [(current,)] = await conn.execute_fetchall("PRAGMA user_version")
            if current > len(self._migrations):
                raise RuntimeError(
                    f"{self.path} has schema version {current}, newer than this program knows "
                    f"({len(self._migrations)}); upgrade hivemind-tui"
                )
            for version, migration in enumerate(self._migrations[current:], start=current + 1):
                statements = [migration] if isinstance(migration, str) else list(migration)
                for sql in statements:
                    await conn.execute(sql)
                await conn.execute(f"PRAGMA user_version={version}")

    @asynccontextmanager
    async def write(self) -> AsyncIterator[aiosqlite.Connection]:
        """One write transaction at a time; rolled back if the block raises.

        A writer may be cancelled (a gRPC deadline) at any await. COMMIT and ROLLBACK are shielded so they
        still reach SQLite, and a transaction left open by a writer cancelled during BEGIN is rolled back
        by the next one; aiosqlite runs statements in order, so nothing overtakes them.
        """
        conn = self._require(self._writer)
        async with self._lock:
            if conn.in_transaction:
                await asyncio.shield(conn.execute("ROLLBACK"))
            try:
                await conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) and "busy" not in str(exc):
                    raise
                raise StoreBusy(
                    f"{self.path} is busy: another process kept it for over {self._busy_ms / 1000:g} s; "
                    "nothing was changed, try again"
                ) from None
            try:
                yield conn
            except BaseException:
                await asyncio.shield(conn.execute("ROLLBACK"))
                raise
            await asyncio.shield(conn.execute("COMMIT"))

    async def fetchall(self, sql: str, params: Iterable[Any] = ()) -> list[aiosqlite.Row]:
        cursor = await self._require(self._reader).execute(sql, tuple(params))
        return list(await cursor.fetchall())

    async def fetchone(self, sql: str, params: Iterable[Any] = ()) -> aiosqlite.Row | None:
        cursor = await self._require(self._reader).execute(sql, tuple(params))
        return await cursor.fetchone()

    async def fetchvalue(self, sql: str, params: Iterable[Any] = ()) -> Any:
        """The first column of the first row, for aggregates (COUNT, MAX) that always return one row."""
        row = await self.fetchone(sql, params)
        if row is None:
            raise LookupError(f"no row from {sql.split()[0]} query")
        return row[0]

    async def close(self) -> None:
        for conn in (self._reader, self._writer):
            if conn is not None:
                await conn.close()
        self._reader = self._writer = None

    async def __aenter__(self) -> Self:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _require(self, conn: aiosqlite.Connection | None) -> aiosqlite.Connection:
        if conn is None:
            raise RuntimeError(f"database {self.path} is not open")
        return conn
