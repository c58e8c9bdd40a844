"""The JSON shapes of tasks (README: `tasks list --json`), shared by the CLI and the HTTP API."""

from __future__ import annotations

from typing import Any

from hivemind_tui.services.models import TaskInfo
from hivemind_tui.services.session import Session
from hivemind_tui.services.task_manager import ParentState, TaskManager


def task_json(task: TaskInfo, done: int | None = None, total: int | None = None) -> dict[str, Any]:
    """The `tasks list --json` task shape (README); a plain task's progress is 1/1 once completed."""
    if total is None:
        done, total = (1 if task.status == "COMPLETED" else 0), 1
    return {
        "task_id": task.task_id,
        "owner": task.owner or None,
        "parent_task_id": task.parent_task_id or None,
        "status": task.status,
        "message": task.message,
        "progress": {"done": done, "total": total},
        "task_type": task.task_type or None,
        "priority": task.priority,
        "created_at": task.created_at,
        "updated_at": task.updated_at,
        "worker": task.worker or None,
        "exit_code": task.exit_code,
    }


def parent_json(parent: ParentState) -> dict[str, Any]:
    return {
        "task_id": parent.parent_id,
        "owner": parent.owner or None,
        "parent_task_id": None,
        "status": parent.status,
        "message": parent.message,
        "progress": {"done": parent.done, "total": parent.total},
        "task_type": parent.task_type or None,
        "priority": parent.priority,
        "created_at": parent.created_at,
        "updated_at": parent.updated_at,
        "worker": None,
        "subtasks": parent.total if parent.split else 0,
    }


async def task_rows(session: Session, manager: TaskManager) -> tuple[list[TaskInfo], list[dict[str, Any]]]:
    """The pool's tasks, and the rows to show: parents with progress, and tasks outside any parent."""
    tasks = (await session.call(session.client.list_tasks)).tasks
    parents, loose = await manager.overview(tasks)
    rows = [parent_json(p) for p in parents] + [task_json(t) for t in loose]
    rows.sort(key=lambda r: r["created_at"] or 0, reverse=True)
    return tasks, rows
