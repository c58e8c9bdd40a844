"""What workers send back about the tasks they run: output, usage, and the final result.

Reports are accepted only from the node the task is assigned to, only while it runs there, and only for
the attempt that runs now (a report naming an older attempt is refused with STALE_ATTEMPT): a late result
from a run the pool gave up on (lost, restarted, re-queued) never replaces the one that counts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

import aiosqlite

from hivemind_tui.core.clock import Clock
from hivemind_tui.core.datadir import atomic_write
from hivemind_tui.core.zipsafe import ZipLimits, ZipRejected, check_zip
from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.hivemind_result import reported_failure
from hivemind_tui.nodepool.storage import PoolStorage

log = logging.getLogger(__name__)

ACTIVE = ("ASSIGNED", "RUNNING")
MAX_REASON = 4000


class TaskReports:
    def __init__(
        self, storage: PoolStorage, clock: Clock, zip_limits: ZipLimits, read_worker_status: bool = True
    ) -> None:
        self._storage = storage
        self._clock = clock
        self._zip_limits = zip_limits
        # Whether a result without an exit code (a HiveMind worker's) is judged by the `Status:` its worker
        # wrote in the zip; HiveMind's own pool (imitated under compat) calls every result COMPLETED.
        self._read_worker_status = read_worker_status
        # Called when a task finished, so the scheduler can hand out the freed slot.
        self.on_finish: Callable[[], None] = lambda: None

    async def _running_on(self, task_id: str, node_id: str, attempt: int = 0) -> aiosqlite.Row:
        """The task, if this report may change it; attempt 0 is a worker that does not send one (HiveMind's)."""
        row = await self._storage.task(task_id)
        if row is None:
            raise PoolRefusal(codes.TASK_NOT_FOUND, task_id[:128])
        if attempt and attempt != row["attempts"]:
            raise PoolRefusal(codes.STALE_ATTEMPT, f"attempt {attempt} is over; attempt {row['attempts']} counts")
        if row["status"] not in ACTIVE or (node_id and row["worker"] != node_id):
            raise PoolRefusal(codes.INVALID_ARGUMENT, "this task is not running on this node")
        return row

    async def output(self, node_id: str, task_id: str, text: str, offset: int | None = None, attempt: int = 0) -> None:
        """Append output; with an offset, bytes the log already has (a retried upload) are skipped."""
        row = await self._running_on(task_id, node_id, attempt)
        await self._storage.append_log(task_id, text, None if offset is None else offset + row["log_base"])
        if row["status"] == "ASSIGNED":
            now = self._clock()
            await self._storage.update_task(task_id, now, status="RUNNING", started_at=now, message="")
        else:
            await self._storage.update_task(task_id, self._clock())

    async def usage(
        self, node_id: str, task_id: str, cpu: float, memory: float, gpu: float, gpu_memory: float, attempt: int = 0
    ) -> None:
        await self._running_on(task_id, node_id, attempt)
        await self._storage.update_task(
            task_id, self._clock(), cpu_usage=cpu, memory_usage=memory, gpu_usage=gpu, gpu_memory_usage=gpu_memory
        )

    async def result(
        self,
        node_id: str,
        task_id: str,
        result_zip: bytes,
        exit_code: int | None,
        failure_reason: str,
        attempt: int = 0,
    ) -> str:
        """Store the result zip and settle the task's final status; returns that status. `exit_code` None:
        the worker cannot say (HiveMind's), and the exit code stays unknown."""
        row = await self._running_on(task_id, node_id, attempt)
        if result_zip:
            judge = exit_code is None and not failure_reason and self._read_worker_status
            refused, reported = await asyncio.to_thread(
                _store_result, self._storage.paths.result_zip(task_id), result_zip, self._zip_limits, judge
            )
            if refused:
                failure_reason, result_zip = refused, b""
            failure_reason = failure_reason or reported
        if row["stop_requested"]:
            status, message = "STOPPED", "stopped"
        elif exit_code in (None, 0) and not failure_reason:
            status, message = "COMPLETED", ""
        else:
            status, message = "FAILED", (failure_reason or f"exit code {exit_code}")[:MAX_REASON]
        now = self._clock()
        await self._storage.update_task(
            task_id,
            now,
            status=status,
            message=message,
            exit_code=exit_code or 0,
            exit_reported=int(exit_code is not None),
            has_result=int(bool(result_zip)),
            finished_at=now,
        )
        log.info("task %s %s on %s (exit %s)", task_id, status, node_id or "?", exit_code)
        self.on_finish()
        return status


def _store_result(path: Path, result_zip: bytes, limits: ZipLimits, judge: bool) -> tuple[str, str]:
    """Check and keep a result zip, in one thread hop: (why it was refused, or ""; the failure its worker's
    `execution_log.txt` reports when `judge`, or "")."""
    try:
        check_zip(result_zip, limits)
    except ZipRejected as exc:
        return f"the result zip was refused: {exc}", ""
    atomic_write(path, result_zip)
    return "", reported_failure(result_zip) if judge else ""
