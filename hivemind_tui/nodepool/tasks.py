"""Tasks as the pool keeps them: upload checks, isolation, listing, stop, logs, results and retention.

Isolation rule: a task that is not the caller's (and the caller is not an admin) does not exist for them:
every rpc answers TASK_NOT_FOUND, the same as for an id nobody uses.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import secrets
import sqlite3
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from hivemind_tui.core.clock import Clock
from hivemind_tui.core.datadir import fsync_dir
from hivemind_tui.core.task_rules import task_id_problem, upload_problem
from hivemind_tui.core.zipsafe import ZipLimits, ZipRejected, check_zip
from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.accounts import Caller
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.storage import FINISHED, PoolStorage

log = logging.getLogger(__name__)

LOG_CHUNK = 1024 * 1024
# Ids per SQL IN (...) list, well under SQLite's limit on bound parameters.
ID_BATCH = 500
# What a listing reads of each task: the TaskInfo fields in their order, then the change number. Only these
# columns, already shaped as the message wants them: a console refresh lists a thousand changed tasks every
# second, and reading all thirty columns by name was half of the pool's work for it.
LISTED_COLUMNS = (
    "task_id, status, message, cpu_usage, memory_usage, gpu_usage, gpu_memory_usage, worker, owner, "
    "created_at, updated_at, priority, task_type, parent_task_id, CASE WHEN exit_reported THEN exit_code END, "
    "COALESCE(started_at, 0.0), COALESCE(finished_at, 0.0), seq"
)
# What a listing needs to tell which tasks changed since their messages were made (servicers.TaskInfoBytes).
KEY_COLUMNS = "task_id, seq"
ROWS_PER_QUERY = 500


@dataclass(frozen=True)
class NewTask:
    """What an UploadTask request asks for."""

    task_id: str
    memory_gb: int = 0
    cpu_score: int = 0
    gpu_score: int = 0
    gpu_memory_gb: int = 0
    location: str = ""
    gpu_name: str = ""
    priority: int = 0
    task_type: str = ""
    parent_task_id: str = ""


async def _nothing(row: aiosqlite.Row) -> None:
    """Without a scheduler there is no worker to tell."""


def _stage_whole(staged: Path, task_zip: bytes, limits: ZipLimits) -> int:
    """A one-message upload: checked in memory, then written under its staged name and fsync-ed."""
    check_zip(task_zip, limits, True)
    fd = os.open(staged, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        view = memoryview(task_zip)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    return len(task_zip)


def _publish(staged: Path, final: Path) -> None:
    """The staged zip under its final name, the rename on disk (inside the row's transaction)."""
    staged.replace(final)
    fsync_dir(final.parent)


class TaskBook:
    def __init__(
        self, storage: PoolStorage, clock: Clock, max_upload_bytes: int, zip_limits: ZipLimits, retention_days: float
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._max_upload = max_upload_bytes
        self._zip_limits = zip_limits
        self._retention = retention_days * 86400
        # Called after a task changes in a way the scheduler cares about (new, stopped).
        self.on_change: Callable[[], None] = lambda: None
        # Set by the scheduler: asks a worker to stop a running task.
        self.stop_running: Callable[[aiosqlite.Row], Awaitable[None]] = _nothing
        # Told the ids of tasks pruned: what is kept of them elsewhere (their encoded messages) goes too.
        self.on_removed: builtins.list[Callable[[builtins.list[str]], object]] = []

    async def upload(self, caller: Caller, new: NewTask, task_zip: bytes) -> None:
        """UploadTask: the zip in one message, already in memory: written, fsync-ed and checked in one
        thread hop (a trivial task's upload is mostly such hops)."""
        self._check_request(caller, new)
        self._check_size(len(task_zip))
        await self._check_absent(new.task_id)
        staged = self._staged(new.task_id)
        await self._stage_and_commit(
            caller, new, staged, asyncio.to_thread(_stage_whole, staged, task_zip, self._zip_limits)
        )

    async def upload_stream(self, caller: Caller, new: NewTask, chunks: AsyncIterable[bytes | memoryview]) -> None:
        """UploadTaskStream: the request's checks before any byte is taken; the zip is written while it arrives
        and checked on disk. A refused or broken upload stores nothing."""
        self._check_request(caller, new)
        await self._check_absent(new.task_id)
        staged = self._staged(new.task_id)

        async def stage() -> int:
            size = await self._storage.receive_file(staged, self._limited(chunks))
            await asyncio.to_thread(check_zip, staged, self._zip_limits, True)
            return size

        await self._stage_and_commit(caller, new, staged, stage())

    async def _stage_and_commit(self, caller: Caller, new: NewTask, staged: Path, stage: Awaitable[int]) -> None:
        """The staged zip becomes the task's, or is removed: nothing is left of a refused or broken upload.

        The staging is shielded from a cancel (a deadline): a thread still writing the file would create it
        after the removal. A cancelled upload waits for it to end, then removes what it wrote."""
        staging = asyncio.ensure_future(stage)
        try:
            try:
                size = await asyncio.shield(staging)
            except ZipRejected as exc:
                raise PoolRefusal(codes.INVALID_TASK, str(exc)) from None
            await self._commit(caller, new, staged, size)
        except BaseException:
            await asyncio.wait([staging])
            if not staging.cancelled():
                staging.exception()  # seen here; the error that counts is the one raised on
            await asyncio.to_thread(staged.unlink, True)
            raise

    def _check_request(self, caller: Caller, new: NewTask) -> None:
        if not caller.may_change:
            raise PoolRefusal(codes.PERMISSION_DENIED, f"a {caller.role} may not submit tasks")
        problem = task_id_problem(new.task_id)
        if problem is None and new.parent_task_id and task_id_problem(new.parent_task_id):
            problem = f"parent {task_id_problem(new.parent_task_id)}"
        if problem:
            raise PoolRefusal(codes.INVALID_TASK, problem)
        for name in ("memory_gb", "cpu_score", "gpu_score", "gpu_memory_gb"):
            if getattr(new, name) < 0:
                raise PoolRefusal(codes.INVALID_TASK, f"{name} must be 0 or more")
        problem = upload_problem(new.priority, new.task_type, new.location, new.gpu_name)
        if problem:
            raise PoolRefusal(codes.INVALID_ARGUMENT, problem)

    def _check_size(self, size: int) -> None:
        if size > self._max_upload:
            raise PoolRefusal(codes.TOO_LARGE, f"{size} bytes; this pool accepts {self._max_upload}")

    async def _check_absent(self, task_id: str) -> None:
        if await self._storage.task(task_id) is not None:
            raise PoolRefusal(codes.TASK_EXISTS, task_id)

    async def _limited(self, chunks: AsyncIterable[bytes | memoryview]) -> AsyncIterator[bytes | memoryview]:
        size = 0
        async for chunk in chunks:
            size += len(chunk)
            self._check_size(size)
            yield chunk

    def _staged(self, task_id: str) -> Path:
        final = self._storage.paths.task_zip(task_id)
        return final.with_name(f".{final.name}.{secrets.token_hex(6)}.upload")

    async def _commit(self, caller: Caller, new: NewTask, staged: Path, size: int) -> None:
        """The row and the zip under its final name appear together, or neither does."""
        now = self._clock()
        final = self._storage.paths.task_zip(new.task_id)
        try:
            async with self._storage.write() as conn:
                await conn.execute(
                    "INSERT INTO tasks (task_id, owner, status, message, priority, task_type, parent_task_id, "
                    "memory_gb, cpu_score, gpu_score, gpu_memory_gb, location, gpu_name, zip_size, created_at, "
                    "updated_at) VALUES (?, ?, 'PENDING', 'waiting: queued', ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        new.task_id,
                        caller.username,
                        new.priority,
                        new.task_type,
                        new.parent_task_id,
                        new.memory_gb,
                        new.cpu_score,
                        new.gpu_score,
                        new.gpu_memory_gb,
                        new.location,
                        new.gpu_name,
                        size,
                        now,
                        now,
                    ),
                )
                await asyncio.to_thread(_publish, staged, final)
        except sqlite3.IntegrityError:
            raise PoolRefusal(codes.TASK_EXISTS, new.task_id) from None
        log.info("task %s uploaded by %s (%d bytes)", new.task_id, caller.username, size)
        self.on_change()

    async def find(self, task_id: str) -> aiosqlite.Row | None:
        """Anyone's task, for the HiveMind imitation's own ownership checks."""
        return await self._storage.task(task_id) if task_id_problem(task_id) is None else None

    async def visible(self, caller: Caller, task_id: str) -> aiosqlite.Row:
        row = await self._storage.task(task_id) if task_id_problem(task_id) is None else None
        if row is None or (row["owner"] != caller.username and not caller.is_admin):
            raise PoolRefusal(codes.TASK_NOT_FOUND, task_id[:128])
        return row

    async def list(
        self,
        caller: Caller,
        updated_since: float,
        limit: int,
        after_seq: int | None = None,
        columns: str = LISTED_COLUMNS,
    ) -> tuple[builtins.list[tuple[Any, ...]], int]:
        """The caller's tasks (an admin's: everyone's) as `columns` (LISTED_COLUMNS, or KEY_COLUMNS; plain
        tuples: 100,000 of them come in sooner than as Rows), and the change number to ask from next.

        With `after_seq`, only those changed after it, in change order; else those updated at or after
        `updated_since`, most recent first. The number is read first: a write that commits between the two
        reads has a higher one, so the next call still gets it. A full page of a `limit` ends at its last
        task's number instead, so the next page starts after it."""
        seq = int(await self._storage.fetchvalue("SELECT last FROM task_seq"))
        by_seq = after_seq is not None
        where: list[str] = ["seq > ?" if by_seq else "updated_at >= ?"]
        params: list[object] = [after_seq if by_seq else updated_since]
        if not caller.is_admin:
            where.append("owner = ?")
            params.append(caller.username)
        sql = (
            f"SELECT {columns} FROM tasks WHERE {' AND '.join(where)} "  # noqa: S608
            f"ORDER BY {'seq' if by_seq else 'updated_at DESC'}"
        )
        if limit > 0:
            sql += f" LIMIT {int(limit)}"
        rows = await self._storage.fetchall_tuples(sql, params)
        if by_seq and 0 < limit <= len(rows):
            seq = int(rows[-1][-1])
        return rows, seq

    async def listed_rows(self, task_ids: Sequence[str]) -> builtins.list[tuple[Any, ...]]:
        """These tasks as LISTED_COLUMNS (a task gone meanwhile is left out)."""
        rows: builtins.list[tuple[Any, ...]] = []
        for start in range(0, len(task_ids), ROWS_PER_QUERY):
            chunk = task_ids[start : start + ROWS_PER_QUERY]
            marks = ",".join("?" * len(chunk))
            sql = f"SELECT {LISTED_COLUMNS} FROM tasks WHERE task_id IN ({marks})"  # noqa: S608
            rows += await self._storage.fetchall_tuples(sql, chunk)
        return rows

    async def stop(self, caller: Caller, task_id: str) -> str:
        """Stop a task: PENDING at once; ASSIGNED or RUNNING through its worker. Returns the new status."""
        await self.visible(caller, task_id)
        [(_, status)] = await self.stop_many(caller, [task_id])
        return status

    async def stop_many(self, caller: Caller, task_ids: Sequence[str]) -> builtins.list[tuple[str, str]]:
        """Stop every task of `task_ids` the caller may see, in one transaction; each id's new status
        (NOT_FOUND for one it may not see). Running ones are stopped through their workers at once."""
        if not caller.may_change:
            raise PoolRefusal(codes.PERMISSION_DENIED, f"a {caller.role} may not stop tasks")
        wanted = [t for t in dict.fromkeys(task_ids) if task_id_problem(t) is None]
        mine = [
            r["task_id"]
            for r in await self._rows(wanted)
            if (r["owner"] == caller.username or caller.is_admin) and r["status"] not in FINISHED
        ]
        now = self._clock()
        async with self._storage.write() as conn:
            await conn.executemany(
                "UPDATE tasks SET status = 'STOPPED', message = ?, finished_at = ?, updated_at = ? "
                "WHERE task_id = ? AND status = 'PENDING'",
                [(f"stopped by {caller.username}", now, now, t) for t in mine],
            )
            await conn.executemany(
                "UPDATE tasks SET stop_requested = 1, message = ?, updated_at = ? "
                "WHERE task_id = ? AND status IN ('ASSIGNED', 'RUNNING')",
                [(f"stopping (asked by {caller.username})", now, t) for t in mine],
            )
        running = [r for r in await self._rows(mine) if r["status"] in ("ASSIGNED", "RUNNING")]
        await asyncio.gather(*(self.stop_running(r) for r in running))
        if mine:
            self.on_change()
        found = {
            r["task_id"]: str(r["status"])
            for r in await self._rows(wanted)
            if r["owner"] == caller.username or caller.is_admin
        }
        return [(t, found.get(t, "NOT_FOUND")) for t in task_ids]

    async def _rows(self, task_ids: Sequence[str]) -> builtins.list[aiosqlite.Row]:
        rows: builtins.list[aiosqlite.Row] = []
        for start in range(0, len(task_ids), ID_BATCH):
            batch = builtins.list(task_ids[start : start + ID_BATCH])
            marks = ",".join("?" * len(batch))
            rows += await self._storage.fetchall(f"SELECT * FROM tasks WHERE task_id IN ({marks})", batch)  # noqa: S608
        return rows

    async def result(self, caller: Caller, task_id: str) -> bytes:
        row = await self.visible(caller, task_id)
        if not row["has_result"]:
            raise PoolRefusal(codes.NO_RESULT, f"task is {row['status']}")
        try:
            return await self._storage.read_file(self._storage.paths.result_zip(task_id))
        except FileNotFoundError:
            raise PoolRefusal(codes.NO_RESULT, "the result file is gone") from None

    async def log_since(self, caller: Caller, task_id: str, offset: int) -> tuple[str, int]:
        await self.visible(caller, task_id)
        if offset < 0:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "offset must be 0 or more")
        return await self._storage.read_log(task_id, offset, LOG_CHUNK)

    async def whole_log(self, caller: Caller, task_id: str) -> str:
        await self.visible(caller, task_id)
        parts, offset = [], 0
        while True:
            text, offset_next = await self._storage.read_log(task_id, offset, LOG_CHUNK)
            parts.append(text)
            if offset_next == offset or not text:
                return "".join(parts)
            offset = offset_next

    async def prune(self) -> int:
        """Remove finished tasks (rows, zips, logs, results) older than the retention setting."""
        cutoff = self._clock() - self._retention
        marks = ",".join("?" * len(FINISHED))
        rows = await self._storage.fetchall(
            f"SELECT task_id FROM tasks WHERE status IN ({marks}) AND updated_at < ?",  # noqa: S608
            (*FINISHED, cutoff),
        )
        for row in rows:
            async with self._storage.write() as conn:
                await conn.execute("DELETE FROM tasks WHERE task_id = ?", (row["task_id"],))
            with contextlib.suppress(OSError):
                await self._storage.remove_task_files(row["task_id"])
        for forget in self.on_removed:
            forget([row["task_id"] for row in rows])
        if rows:
            log.info("pruned %d finished tasks", len(rows))
        return len(rows)
