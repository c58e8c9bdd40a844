"""The pool's persistent state: `pool.db` (users, tokens, tasks, nodes) and task, result and log files.

Zips and logs live as files beside the database (`tasks/`, `results/`, `logs/`), written atomically, so a
restart loses nothing and the database stays small. Every file operation runs in a thread.
"""

from __future__ import annotations

import asyncio
import codecs
import contextlib
import os
import sqlite3
from collections.abc import AsyncIterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from hivemind_tui.core.datadir import atomic_write, make_private_dir
from hivemind_tui.core.sqlite_db import DirectDatabase, Migration

MIGRATIONS: list[Migration] = [
    [
        """CREATE TABLE users (
            username TEXT PRIMARY KEY,
            password_hash TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN ('viewer', 'operator', 'admin')),
            balance INTEGER NOT NULL DEFAULT 0 CHECK (balance >= 0),
            disabled INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL)""",
        """CREATE TABLE login_failures (
            username TEXT PRIMARY KEY,
            failures INTEGER NOT NULL,
            last_failure REAL NOT NULL)""",
        """CREATE TABLE tokens (
            token_hash TEXT PRIMARY KEY,
            username TEXT NOT NULL REFERENCES users(username) ON DELETE CASCADE,
            issued_at REAL NOT NULL,
            expires_at REAL NOT NULL,
            revoked INTEGER NOT NULL DEFAULT 0)""",
        "CREATE INDEX tokens_expiry ON tokens(expires_at)",
        """CREATE TABLE tasks (
            task_id TEXT PRIMARY KEY,
            owner TEXT NOT NULL,
            status TEXT NOT NULL,
            message TEXT NOT NULL DEFAULT '',
            priority INTEGER NOT NULL DEFAULT 0,
            task_type TEXT NOT NULL DEFAULT '',
            parent_task_id TEXT NOT NULL DEFAULT '',
            memory_gb INTEGER NOT NULL DEFAULT 0,
            cpu_score INTEGER NOT NULL DEFAULT 0,
            gpu_score INTEGER NOT NULL DEFAULT 0,
            gpu_memory_gb INTEGER NOT NULL DEFAULT 0,
            location TEXT NOT NULL DEFAULT '',
            gpu_name TEXT NOT NULL DEFAULT '',
            zip_size INTEGER NOT NULL DEFAULT 0,
            worker TEXT NOT NULL DEFAULT '',
            attempts INTEGER NOT NULL DEFAULT 0,
            stop_requested INTEGER NOT NULL DEFAULT 0,
            exit_code INTEGER NOT NULL DEFAULT 0,
            cpu_usage REAL NOT NULL DEFAULT 0,
            memory_usage REAL NOT NULL DEFAULT 0,
            gpu_usage REAL NOT NULL DEFAULT 0,
            gpu_memory_usage REAL NOT NULL DEFAULT 0,
            has_result INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL,
            updated_at REAL NOT NULL,
            started_at REAL,
            finished_at REAL)""",
        "CREATE INDEX tasks_owner_updated ON tasks(owner, updated_at)",
        "CREATE INDEX tasks_updated ON tasks(updated_at)",
        "CREATE INDEX tasks_queue ON tasks(status, priority DESC, created_at)",
        """CREATE TABLE nodes (
            node_id TEXT PRIMARY KEY,
            hostname TEXT NOT NULL DEFAULT '',
            address TEXT NOT NULL DEFAULT '',
            port INTEGER NOT NULL DEFAULT 0,
            cpu_cores INTEGER NOT NULL DEFAULT 0,
            memory_gb INTEGER NOT NULL DEFAULT 0,
            cpu_score INTEGER NOT NULL DEFAULT 0,
            gpu_score INTEGER NOT NULL DEFAULT 0,
            gpu_memory_gb INTEGER NOT NULL DEFAULT 0,
            gpu_name TEXT NOT NULL DEFAULT '',
            location TEXT NOT NULL DEFAULT '',
            docker_status TEXT NOT NULL DEFAULT '',
            slots INTEGER NOT NULL DEFAULT 1,
            status TEXT NOT NULL DEFAULT '',
            state TEXT NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'cordoned', 'draining')),
            cpu_usage REAL NOT NULL DEFAULT 0,
            memory_usage REAL NOT NULL DEFAULT 0,
            gpu_usage REAL NOT NULL DEFAULT 0,
            gpu_memory_usage REAL NOT NULL DEFAULT 0,
            running_tasks INTEGER NOT NULL DEFAULT 0,
            registered_at REAL NOT NULL,
            last_heartbeat REAL NOT NULL)""",
    ],
    # 2: whether a worker reported the exit code; until one has, `exit_code` is unknown, not 0.
    "ALTER TABLE tasks ADD COLUMN exit_reported INTEGER NOT NULL DEFAULT 0",
    # 3: join tokens; only a hash of each secret is kept.
    """CREATE TABLE join_tokens (
        token_id TEXT PRIMARY KEY,
        secret_hash TEXT NOT NULL,
        created_at REAL NOT NULL,
        expires_at REAL NOT NULL,
        revoked_at REAL,
        joins INTEGER NOT NULL DEFAULT 0)""",
    # 4: the worker process behind each node, to tell a restart from a second worker with the same id.
    "ALTER TABLE nodes ADD COLUMN instance_id TEXT NOT NULL DEFAULT ''",
    # 5: where the running attempt's output starts in the task's log (a worker counts offsets per attempt).
    "ALTER TABLE tasks ADD COLUMN log_base INTEGER NOT NULL DEFAULT 0",
    # 6: what confines a node's tasks, as its worker reports it.
    "ALTER TABLE nodes ADD COLUMN isolation TEXT NOT NULL DEFAULT ''",
    # 7: which protocol a node's worker speaks (ours, or HiveMind's: no secret, no attempts, no exit codes),
    # and for a HiveMind-style worker the address it registered from: its later calls must come from there.
    [
        "ALTER TABLE nodes ADD COLUMN kind TEXT NOT NULL DEFAULT 'ours' CHECK (kind IN ('ours', 'hivemind'))",
        "ALTER TABLE nodes ADD COLUMN peer TEXT NOT NULL DEFAULT ''",
    ],
    # 8: a change number per task: every insert or update takes the next one. Writers are serialized
    # (BEGIN IMMEDIATE), so the numbers grow in commit order, and "changed after N" misses nothing, unlike a
    # time that was read before a slower write committed. Served as GetAllUserTasks' `after_seq` cursor.
    [
        "ALTER TABLE tasks ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE task_seq (last INTEGER NOT NULL)",
        "UPDATE tasks SET seq = rowid",
        "INSERT INTO task_seq SELECT COALESCE(MAX(seq), 0) FROM tasks",
        "CREATE INDEX tasks_seq ON tasks(seq)",
        """CREATE TRIGGER tasks_seq_insert AFTER INSERT ON tasks BEGIN
            UPDATE task_seq SET last = last + 1;
            UPDATE tasks SET seq = (SELECT last FROM task_seq) WHERE rowid = NEW.rowid;
        END""",
        # The inner UPDATE does not fire it again: SQLite's triggers are not recursive unless asked to be.
        """CREATE TRIGGER tasks_seq_update AFTER UPDATE ON tasks BEGIN
            UPDATE task_seq SET last = last + 1;
            UPDATE tasks SET seq = (SELECT last FROM task_seq) WHERE rowid = NEW.rowid;
        END""",
    ],
    # 9: what the scheduler asks once a tick and at every heartbeat, answered from indexes alone: the tasks on
    # a node, the busy slots per node, and whether the queue changed (its size and latest change).
    [
        "CREATE INDEX tasks_status_worker ON tasks(status, worker)",
        "CREATE INDEX tasks_status_seq ON tasks(status, seq)",
    ],
    # 10: change numbers for nodes, as 8 for tasks. The node list is read every second by each console and
    # by the scheduler; only the rows that changed since are read again (a fifth of them, with 5 s heartbeats
    # and a 1 s refresh). A removal moves the number too, so a reader notices it and counts the rows.
    [
        "ALTER TABLE nodes ADD COLUMN seq INTEGER NOT NULL DEFAULT 0",
        "CREATE TABLE node_seq (last INTEGER NOT NULL)",
        "UPDATE nodes SET seq = rowid",
        "INSERT INTO node_seq SELECT COALESCE(MAX(seq), 0) FROM nodes",
        "CREATE INDEX nodes_seq ON nodes(seq)",
        """CREATE TRIGGER nodes_seq_insert AFTER INSERT ON nodes BEGIN
            UPDATE node_seq SET last = last + 1;
            UPDATE nodes SET seq = (SELECT last FROM node_seq) WHERE rowid = NEW.rowid;
        END""",
        """CREATE TRIGGER nodes_seq_update AFTER UPDATE ON nodes BEGIN
            UPDATE node_seq SET last = last + 1;
            UPDATE nodes SET seq = (SELECT last FROM node_seq) WHERE rowid = NEW.rowid;
        END""",
        """CREATE TRIGGER nodes_seq_delete AFTER DELETE ON nodes BEGIN
            UPDATE node_seq SET last = last + 1;
        END""",
    ],
]

FINISHED = ("COMPLETED", "FAILED", "STOPPED")
# A received file starts its write-back after this many new bytes, while later chunks still arrive.
SYNC_EVERY = 8 * 1024 * 1024
# Chunk writes (and write-backs) of one received file running at once in threads.
WRITES_IN_FLIGHT = 4


@dataclass(frozen=True)
class PoolPaths:
    """Where the pool keeps its files inside `DATA_DIR/pool/`."""

    root: Path

    @property
    def db(self) -> Path:
        return self.root / "pool.db"

    @property
    def tasks(self) -> Path:
        return self.root / "tasks"

    @property
    def results(self) -> Path:
        return self.root / "results"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def worker_secret(self) -> Path:
        return self.root / "worker-secret"

    @property
    def admin_password(self) -> Path:
        return self.root / "admin-password"

    @property
    def pool_json(self) -> Path:
        return self.root / "pool.json"

    def task_zip(self, task_id: str) -> Path:
        return self.tasks / f"{task_id}.zip"

    def result_zip(self, task_id: str) -> Path:
        return self.results / f"{task_id}.zip"

    def task_log(self, task_id: str) -> Path:
        return self.logs / f"{task_id}.log"

    def ensure(self) -> PoolPaths:
        for path in (self.root, self.tasks, self.results, self.logs):
            make_private_dir(path)
        return self


class PoolStorage(DirectDatabase):
    """pool.db plus the files it points at."""

    def __init__(self, paths: PoolPaths) -> None:
        super().__init__(paths.db, MIGRATIONS)
        self.paths = paths

    async def open(self) -> PoolStorage:
        self.paths.ensure()
        await super().open()
        return self

    # -- tasks ------------------------------------------------------------------------------------
    async def task(self, task_id: str) -> aiosqlite.Row | None:
        return await self.fetchone("SELECT * FROM tasks WHERE task_id = ?", (task_id,))

    async def update_task(self, task_id: str, now: float, **values: Any) -> None:
        sets = "".join(f"{k} = ?, " for k in values)
        async with self.write() as conn:
            await conn.execute(
                f"UPDATE tasks SET {sets}updated_at = ? WHERE task_id = ?",  # noqa: S608
                (*values.values(), now, task_id),
            )

    # -- files ------------------------------------------------------------------------------------
    async def write_file(self, path: Path, data: bytes) -> None:
        await asyncio.to_thread(atomic_write, path, data)

    async def receive_file(self, path: Path, chunks: AsyncIterable[bytes | memoryview]) -> int:
        """Write chunks to a new private file as they arrive; return its size, on disk (fsync-ed).

        Each chunk is written at its offset in a thread while the next ones arrive (a few in flight), and
        write-back of what has arrived starts every SYNC_EVERY bytes, so the final fsync finds little left to
        do. The caller removes `path` when this fails.
        """
        fd = await asyncio.to_thread(os.open, path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        size = unsynced = 0
        writing: set[asyncio.Future[None]] = set()
        try:
            async for chunk in chunks:
                writing.add(asyncio.ensure_future(asyncio.to_thread(_write_at, fd, chunk, size)))
                size += len(chunk)
                unsynced += len(chunk)
                if unsynced >= SYNC_EVERY:
                    writing.add(asyncio.ensure_future(asyncio.to_thread(os.fdatasync, fd)))
                    unsynced = 0
                if len(writing) >= WRITES_IN_FLIGHT:
                    done, writing = await asyncio.wait(writing, return_when=asyncio.FIRST_COMPLETED)
                    for finished in done:
                        finished.result()
            await asyncio.gather(*writing)
            writing.clear()
            await asyncio.to_thread(os.fsync, fd)
        finally:
            if writing:
                await asyncio.wait(writing)  # the fd stays open while a thread still uses it
            os.close(fd)
        return size

    async def read_file(self, path: Path) -> bytes:
        return await asyncio.to_thread(path.read_bytes)

    async def append_log(self, task_id: str, text: str, offset: int | None = None) -> int:
        """Append to the task's log; its size after."""
        return await asyncio.to_thread(_append, self.paths.task_log(task_id), text.encode("utf-8"), offset)

    async def read_log(self, task_id: str, offset: int, max_bytes: int) -> tuple[str, int]:
        """The log from byte `offset`, at most `max_bytes`, cut at a character boundary."""
        return await asyncio.to_thread(_read_from, self.paths.task_log(task_id), offset, max_bytes)

    async def remove_task_files(self, task_id: str) -> None:
        def remove() -> None:
            for path in (self.paths.task_zip(task_id), self.paths.result_zip(task_id), self.paths.task_log(task_id)):
                path.unlink(missing_ok=True)

        await asyncio.to_thread(remove)


def _write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    view = memoryview(data)
    while view:
        written = os.pwrite(fd, view, offset)
        view, offset = view[written:], offset + written


def _append(path: Path, data: bytes, offset: int | None) -> int:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        have = os.fstat(fd).st_size
        if offset is not None:
            data = data[max(have - offset, 0) :]
        if data:
            os.write(fd, data)
        return have + len(data)
    finally:
        os.close(fd)


def _read_from(path: Path, offset: int, max_bytes: int) -> tuple[str, int]:
    try:
        with path.open("rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            offset = min(max(offset, 0), size)
            fh.seek(offset)
            data = fh.read(max(max_bytes, 4))  # a whole character always fits
    except FileNotFoundError:
        return "", 0
    # Never end inside a UTF-8 sequence: a trailing partial character is left for the next read.
    decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
    text = decoder.decode(data, final=False)
    pending = len(decoder.getstate()[0])
    return text, offset + len(data) - pending


def unfinished_tasks(paths: PoolPaths) -> int | None:
    """Tasks of the pool not yet COMPLETED, FAILED or STOPPED, read from its database (read-only, beside a
    running pool); None when it cannot be read."""
    marks = ",".join("?" * len(FINISHED))
    try:
        with contextlib.closing(sqlite3.connect(f"file:{paths.db}?mode=ro", uri=True, timeout=5)) as db:
            row = db.execute(f"SELECT COUNT(*) FROM tasks WHERE status NOT IN ({marks})", FINISHED).fetchone()  # noqa: S608
    except sqlite3.Error:
        return None
    return int(row[0])
