"""What a person does to tasks (submit, stop, retry, download), in one place for the command line, the
console and the HTTP face: a split parent and a plain task are told apart here, the pool's answer is what is
reported (never what was asked), and each change lands in the audit log."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from hivemind_tui.core.datadir import atomic_write
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.models import NodeList, TaskInfo
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.task_manager import ProgressCallback, SubmitOptions, TaskManager
from hivemind_tui.services.task_splitter import SplitPlan

# Statuses whose result the pool may hold: a failed task's output is worth having, an unfinished one's not.
HAS_RESULT = ("COMPLETED", "FAILED")


@dataclass(frozen=True)
class Submitted:
    parent_id: str
    plan: SplitPlan
    task_ids: list[str]


@dataclass(frozen=True)
class Stopped:
    task_id: str
    status: str
    stopped: list[str]
    split: bool


@dataclass(frozen=True)
class Downloaded:
    task_id: str
    path: Path
    size: int
    # The aggregate's summary for a split parent; None for a plain task.
    summary: dict[str, Any] | None


class TaskActions:
    def __init__(self, manager: TaskManager, audit: AuditLog, actor: str) -> None:
        self.manager = manager
        self.audit = audit
        self.actor = actor

    @property
    def _client(self) -> PoolClient:
        return self.manager.session.client

    async def submit(
        self, zip_path: Path, options: SubmitOptions, nodes: NodeList | None, on_progress: ProgressCallback | None
    ) -> Submitted:
        parent_id, plan, ids = await self.manager.submit(zip_path, options, nodes, on_progress)
        await self.audit.record(self.actor, "submit", parent_id, f"{len(ids)} subtask(s) from {zip_path.name}")
        return Submitted(parent_id, plan, ids)

    async def stop(
        self, task_id: str, tasks: list[TaskInfo], on_progress: Callable[[int, int], None] | None = None
    ) -> Stopped:
        if await self.manager.is_split(task_id):
            status, stopped = await self.manager.stop(task_id, tasks, on_progress)
            outcome = Stopped(task_id, status, stopped, True)
        else:
            status = await self.manager.session.call(partial(self._client.stop_task, task_id=task_id))
            outcome = Stopped(task_id, status, [task_id], False)
        await self.audit.record(self.actor, "stop", task_id, f"{outcome.status}, {len(outcome.stopped)} task(s)")
        return outcome

    async def retry(self, task_id: str, tasks: list[TaskInfo]) -> list[str]:
        new_ids = await self.manager.retry(task_id, tasks)
        await self.audit.record(self.actor, "retry", task_id, f"{len(new_ids)} subtask(s)")
        return new_ids

    async def download(
        self,
        task_id: str,
        tasks: list[TaskInfo],
        path: Path,
        partial_result: bool = False,
        on_progress: ProgressCallback | None = None,
    ) -> Downloaded:
        """The result as one file at `path`; refused, with nothing written, while it is not all there."""
        if await self.manager.is_split(task_id):
            summary = await self._aggregate(task_id, tasks, path, partial_result, on_progress)
            size = (await asyncio.to_thread(path.stat)).st_size
            outcome = Downloaded(task_id, path, size, summary)
        else:
            task = next((t for t in tasks if t.task_id == task_id), None)
            if task is None:
                raise HivemindError(f"{task_id} is not known to the pool", code="TASK_NOT_FOUND")
            if task.status not in HAS_RESULT:
                raise HivemindError(f"{task_id} is {task.status}: it has no result", code="NOT_FINISHED")
            data = await self.manager.session.call(partial(self._client.task_result, task_id=task_id))
            if not data:
                raise HivemindError(f"{task_id} is {task.status} but the pool holds no result", code="NO_RESULT")
            await asyncio.to_thread(atomic_write, path, data, 0o600)
            outcome = Downloaded(task_id, path, len(data), None)
        await self.audit.record(self.actor, "download", task_id, str(path))
        return outcome

    async def _aggregate(
        self,
        parent_id: str,
        tasks: list[TaskInfo],
        path: Path,
        partial_result: bool,
        on_progress: ProgressCallback | None,
    ) -> dict[str, Any]:
        state = await self.manager.parent(parent_id, tasks)
        if state is None:
            raise HivemindError(f"no submitted task {parent_id} for this pool", code="TASK_NOT_FOUND")
        # Subtasks out of the pool's list (UNKNOWN) are asked for by id; the rest must have completed.
        possible = sum(s.status in ("COMPLETED", "UNKNOWN") for s in state.subtasks)
        if possible < state.total and not partial_result:
            raise HivemindError(
                f"{parent_id}: {possible} of {state.total} subtasks completed ({state.status}); "
                "--partial writes what exists",
                code="NOT_FINISHED",
            )
        return await self.manager.aggregate(parent_id, tasks, path, on_progress, require_all=not partial_result)
