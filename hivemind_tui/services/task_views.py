"""The JSON shapes of tasks (README: `tasks list --json`), shared by the CLI and the HTTP API.

Each shape comes two ways: a dict (for tables and the HTTP API), and for a plain task also straight as its
JSON text (`task_json_text`), the same bytes as `json.dumps` of the dict, for listings of 100,000 tasks.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from json.encoder import encode_basestring
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


def task_json_text(task: TaskInfo) -> str:
    """`json.dumps(task_json(task), ensure_ascii=False)`, made without the dict: a third of the time. The usual
    values are written inline (a call per field was a sixth of the time); `_number` writes the others."""
    task_id, status, message, worker, owner, created, updated, priority, task_type, parent, exit_code = task[:11]
    done = 1 if status == "COMPLETED" else 0
    created_text = repr(created) if type(created) is float and created - created == 0.0 else _number(created)
    updated_text = repr(updated) if type(updated) is float and updated - updated == 0.0 else _number(updated)
    return (
        f'{{"task_id": {encode_basestring(task_id)}, "owner": {encode_basestring(owner) if owner else "null"}, '
        f'"parent_task_id": {encode_basestring(parent) if parent else "null"}, '
        f'"status": {encode_basestring(status)}, "message": {encode_basestring(message)}, '
        f'"progress": {{"done": {done}, "total": 1}}, '
        f'"task_type": {encode_basestring(task_type) if task_type else "null"}, '
        f'"priority": {repr(priority) if type(priority) is int else _number(priority)}, '
        f'"created_at": {created_text}, "updated_at": {updated_text}, '
        f'"worker": {encode_basestring(worker) if worker else "null"}, '
        f'"exit_code": {"null" if exit_code is None else _number(exit_code)}}}'
    )


def _number(value: float | None) -> str:
    if value is None:
        return "null"
    if type(value) is int or (type(value) is float and math.isfinite(value)):
        return repr(value)
    return json.dumps(value)  # NaN, Infinity, a bool: as json.dumps writes them


Listed = ParentState | TaskInfo
"""One row of a listing: a parent with its progress, or a task outside any parent."""


def listed_json(item: Listed) -> dict[str, Any]:
    return parent_json(item) if isinstance(item, ParentState) else task_json(item)


def listed_json_text(item: Listed) -> str:
    return json.dumps(parent_json(item), ensure_ascii=False) if isinstance(item, ParentState) else task_json_text(item)


class TaskTexts:
    """Each listed task's JSON text, made as the pages come (`each_page`): the encoding of 100,000 tasks
    (~0.3 s) is done while the pool makes the next pages, not after the last one."""

    def __init__(self) -> None:
        self._made: dict[str, tuple[TaskInfo, str]] = {}

    def __call__(self, page: list[TaskInfo]) -> None:
        self._made.update((t.task_id, (t, task_json_text(t))) for t in page)

    def text(self, item: Listed) -> str:
        """The text made for this very task if there is one (a later entry, or a task the look changed, is
        encoded now)."""
        if isinstance(item, TaskInfo):
            made = self._made.get(item.task_id)
            if made is not None and made[0] is item:
                return made[1]
        return listed_json_text(item)


async def listed_tasks(
    session: Session, manager: TaskManager, each_page: Callable[[list[TaskInfo]], object] | None = None
) -> tuple[list[TaskInfo], list[Listed]]:
    """The pool's tasks, and the rows to show, newest first: parents with progress, and tasks outside any
    parent. `each_page` as `PoolClient.list_tasks` takes it."""
    tasks = (await session.call(lambda token: session.client.list_tasks(token, each_page=each_page))).tasks
    parents, loose = await manager.overview(tasks)
    items: list[Listed] = [*parents, *loose]
    items.sort(key=lambda i: i.created_at or 0, reverse=True)
    return tasks, items


async def task_rows(session: Session, manager: TaskManager) -> tuple[list[TaskInfo], list[dict[str, Any]]]:
    """`listed_tasks`, each row as its dict."""
    tasks, items = await listed_tasks(session, manager)
    return tasks, [listed_json(item) for item in items]
