"""`tasks list|show|logs|stop|result`: tasks as the pool has them."""

from __future__ import annotations

import asyncio
import sys
import time
from pathlib import Path

from hivemind_tui.cli import CommandRegistry, Context, Result
from hivemind_tui.commands.common import Connection, age, connect, require_change, table, when
from hivemind_tui.datadir import atomic_write
from hivemind_tui.errors import HivemindError, NotSupportedError, UsageError
from hivemind_tui.services.models import TaskInfo

FOLLOW_POLL = 1.0


def register(registry: CommandRegistry) -> CommandRegistry:
    tasks = registry.group("tasks", "tasks on the pool")
    list_cmd = tasks.command("list", list_tasks, "your tasks (admins: everyone's), newest first")
    list_cmd.add_argument("--status", help="only this status (PENDING, RUNNING, COMPLETED, FAILED, ...)")
    show_cmd = tasks.command("show", show, "one task in full")
    show_cmd.add_argument("task_id", metavar="ID")
    logs_cmd = tasks.command("logs", logs, "a task's output (--follow: until it finishes)")
    logs_cmd.add_argument("task_id", metavar="ID")
    logs_cmd.add_argument("--follow", "-f", action="store_true")
    stop_cmd = tasks.command("stop", stop, "stop a task")
    stop_cmd.add_argument("task_id", metavar="ID")
    result_cmd = tasks.command("result", result, "download a task's result zip")
    result_cmd.add_argument("task_id", metavar="ID")
    result_cmd.add_argument("--output", "-o", required=True, type=Path, metavar="PATH")
    result_cmd.add_argument("--force", action="store_true", help="overwrite PATH if it exists")
    return tasks


def task_json(task: TaskInfo, done: int | None = None, total: int | None = None) -> dict[str, object]:
    """cli.md's task shape; a plain task's progress is 1/1 once completed."""
    if total is None:
        done, total = (1 if task.status == "COMPLETED" else 0), 1
    return {"task_id": task.task_id, "owner": task.owner or None, "parent_task_id": task.parent_task_id or None,
            "status": task.status, "message": task.message, "progress": {"done": done, "total": total},
            "task_type": task.task_type or None, "priority": task.priority, "created_at": task.created_at,
            "updated_at": task.updated_at, "worker": task.worker or None, "exit_code": task.exit_code}


async def fetch_task(conn: Connection, task_id: str) -> TaskInfo:
    tasks = (await conn.session.call(conn.client.list_tasks)).tasks
    for task in tasks:
        if task.task_id == task_id:
            return task
    raise HivemindError(f"no task {task_id}", code="TASK_NOT_FOUND")


async def list_tasks(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
    if ctx.args.status:
        tasks = [t for t in tasks if t.status == ctx.args.status.upper()]
    now = time.time()
    rows = [(t.task_id, t.status, t.task_type or "-", t.priority, t.owner or "-", age(t.created_at, now),
             t.worker or "-", t.message[:50]) for t in tasks]
    text = table(("ID", "STATUS", "TYPE", "PRIO", "OWNER", "AGE", "WORKER", "MESSAGE"), rows) if rows else "no tasks"
    return Result({"tasks": [task_json(t) for t in tasks]}, text)


async def show(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        task = await fetch_task(conn, ctx.args.task_id)
    data = task_json(task)
    lines = [f"{k:<15} {when(v) if k.endswith('_at') else v}" for k, v in data.items() if k != "progress"]
    return Result({"task": data}, "\n".join(lines))


async def logs(ctx: Context) -> Result:
    """GetTasklogSince from an offset; against a pool without it, GetTasklog polled and diffed."""
    task_id = ctx.args.task_id
    collected: list[str] = []
    async with connect(ctx) as conn:
        offset, printed, since_supported = 0, 0, True
        while True:
            if since_supported:
                try:
                    text, offset = await conn.session.call(
                        lambda token, start=offset: conn.client.task_log_since(token, task_id, start))
                except NotSupportedError:
                    since_supported = False
                    continue
            else:
                whole = await conn.session.call(lambda token: conn.client.task_log(token, task_id))
                text, printed = whole[printed:], len(whole)
            if text:
                collected.append(text)
                if not ctx.json:
                    sys.stdout.write(text)
                    sys.stdout.flush()
            if not ctx.args.follow:
                break
            if not text and (await fetch_task(conn, task_id)).finished:
                break
            await asyncio.sleep(FOLLOW_POLL)
    return Result({"task_id": task_id, "log": "".join(collected)}, "")


async def stop(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        require_change(ctx, conn, "stop tasks")
        status = await conn.session.call(lambda token: conn.client.stop_task(token, ctx.args.task_id))
        await conn.audit.record(conn.user, "stop", ctx.args.task_id, status)
    return Result({"task_id": ctx.args.task_id, "status": status}, f"{ctx.args.task_id}: {status}")


async def result(ctx: Context) -> Result:
    path: Path = ctx.args.output
    if await asyncio.to_thread(path.exists) and not ctx.args.force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    async with connect(ctx) as conn:
        data = await conn.session.call(lambda token: conn.client.task_result(token, ctx.args.task_id))
        await asyncio.to_thread(atomic_write, path, data, 0o644)
        await conn.audit.record(conn.user, "download", ctx.args.task_id, str(path))
    return Result({"task_id": ctx.args.task_id, "path": str(path), "bytes": len(data)},
                  f"saved {len(data)} bytes to {path}")
