"""A SQLite database with ordered migrations, one serialized writer and a separate reader.

Shared by the console's store (`services/store.py`) and the embedded pool's storage (`nodepool/`), which
may not import each other. Coroutines that share a connection interleave inside one transaction, so every
write goes through `write()`: a lock plus `BEGIN IMMEDIATE`, committed or rolled back as a whole. Reads use
their own connection, so they only ever see committed data (WAL mode).

`Database` runs each statement in aiosqlite's thread, so the event loop never waits on the disk: the
console's store, whose loop draws the screen. `DirectDatabase` (the pool's) runs them at once on the loop,
through the same interface: its statements are small and the thread hop cost more than they did (two
context switches per statement, a third of the pool's CPU per task). Only a write that finds another
process's write lock waits, in a thread, for as long as the busy timeout.
Open either inside the running loop, never before `App.run()` or `asyncio.run()`.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Iterable, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, Protocol, Self, cast

import aiosqlite

from hivemind_tui.core.errors import HivemindError

# One statement, or several run in order inside the same transaction (sqlite3 runs one per execute).
Migration = str | Sequence[str]


class StoreBusy(HivemindError):
    """Another process held the database for longer than the busy timeout; the write did not happen."""

    code = "BUSY"


class Cursor(Protocol):
    row_factory: Any

    @property
    def rowcount(self) -> int: ...

    @property
    def lastrowid(self) -> int | None: ...

    async def fetchone(self) -> sqlite3.Row | None: ...

    async def fetchall(self) -> Iterable[sqlite3.Row]: ...


class Connection(Protocol):
    """What a write transaction is given: aiosqlite's connection, or `DirectConnection` with its shape."""

    @property
    def in_transaction(self) -> bool: ...

    def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> Awaitable[Cursor]: ...

    def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> Awaitable[Cursor]: ...

    def execute_fetchall(
        self, sql: str, parameters: Iterable[Any] | None = None
    ) -> Awaitable[Iterable[sqlite3.Row]]: ...

    async def close(self) -> None: ...


class Database:
    """A SQLite file whose schema version is `PRAGMA user_version`, raised by each migration in turn."""

    def __init__(self, path: Path, migrations: Sequence[Migration], busy_timeout: float = 30.0) -> None:
        self.path = path
        self._migrations = migrations
        # How long a write waits for another process's write (SQLite's own busy handler); past it, StoreBusy.
        self._busy_ms = max(int(busy_timeout * 1000), 1)
        self._writer: Connection | None = None
        self._reader: Connection | None = None
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

    async def _connect(self) -> Connection:
        conn = await aiosqlite.connect(self.path, isolation_level=None)
        conn.row_factory = aiosqlite.Row
        await conn.execute(f"PRAGMA busy_timeout={self._busy_ms}")
        await _set_pragmas(conn)
        return conn

    async def _begin(self, conn: Connection) -> None:
        await conn.execute("BEGIN IMMEDIATE")

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
    async def write(self) -> AsyncIterator[Connection]:
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
                await self._begin(conn)
            except sqlite3.OperationalError as exc:
                if not _is_busy(exc):
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

    async def fetchall_tuples(self, sql: str, params: Iterable[Any] = ()) -> list[tuple[Any, ...]]:
        """Rows as plain tuples, by position: 100,000 of them come in 0.1 s sooner than as Rows."""
        cursor = await self._require(self._reader).execute(sql, tuple(params))
        cursor.row_factory = None
        return cast(list[tuple[Any, ...]], list(await cursor.fetchall()))

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

    def _require(self, conn: Connection | None) -> Connection:
        if conn is None:
            raise RuntimeError(f"database {self.path} is not open")
        return conn


class DirectDatabase(Database):
    """The same database with its statements run at once on the caller's loop (see the module's docstring)."""

    async def _connect(self) -> Connection:
        # Its own busy timeout is 0: a write that would wait for another process waits in `_begin`'s thread.
        conn = DirectConnection(sqlite3.connect(self.path, isolation_level=None, check_same_thread=False))
        await _set_pragmas(conn)
        return conn

    async def _begin(self, conn: Connection) -> None:
        try:
            await conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            if not _is_busy(exc) or not isinstance(conn, DirectConnection):
                raise
            await asyncio.to_thread(conn.begin_waiting, self._busy_ms)


class DirectCursor:
    """aiosqlite's cursor shape over a sqlite3 cursor whose statement has already run."""

    def __init__(self, cursor: sqlite3.Cursor) -> None:
        self._cursor = cursor

    @property
    def rowcount(self) -> int:
        return self._cursor.rowcount

    @property
    def lastrowid(self) -> int | None:
        return self._cursor.lastrowid

    @property
    def row_factory(self) -> Any:
        return self._cursor.row_factory

    @row_factory.setter
    def row_factory(self, factory: Any) -> None:
        self._cursor.row_factory = factory

    async def fetchone(self) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self._cursor.fetchone()
        return row

    async def fetchall(self) -> list[sqlite3.Row]:
        return self._cursor.fetchall()


class DirectConnection:
    """aiosqlite's connection shape over a sqlite3 connection, each statement run when it is awaited."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=0")
        self._conn = conn

    @property
    def in_transaction(self) -> bool:
        return self._conn.in_transaction

    async def execute(self, sql: str, parameters: Iterable[Any] | None = None) -> DirectCursor:
        return DirectCursor(self._conn.execute(sql, tuple(parameters or ())))

    async def executemany(self, sql: str, parameters: Iterable[Sequence[Any]]) -> DirectCursor:
        return DirectCursor(self._conn.executemany(sql, parameters))

    async def execute_fetchall(self, sql: str, parameters: Iterable[Any] | None = None) -> list[sqlite3.Row]:
        return self._conn.execute(sql, tuple(parameters or ())).fetchall()

    def begin_waiting(self, busy_ms: int) -> None:
        """BEGIN IMMEDIATE with SQLite's busy handler on: for a thread, never the loop."""
        self._conn.execute(f"PRAGMA busy_timeout={busy_ms}")
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        finally:
            self._conn.execute("PRAGMA busy_timeout=0")

    async def close(self) -> None:
        self._conn.close()


async def _set_pragmas(conn: Connection) -> None:
    await conn.execute("PRAGMA foreign_keys=ON")
    await conn.execute("PRAGMA synchronous=NORMAL")


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    return "locked" in str(exc) or "busy" in str(exc)
