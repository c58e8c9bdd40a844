"""`tasks ...`: tasks on the pool, with split tasks (parents) tracked by the task manager.

A parent appears as one row with its real progress (finished subtasks / all); its subtasks are listed by
`tasks show PARENT`. `stop` and `result` act on a whole parent when given one.
"""

from __future__ import annotations

import asyncio
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import Connection, age, connect, require_change, table, when
from hivemind_tui.core.errors import ExitCode, HivemindError, UsageError
from hivemind_tui.core.heap import collector_paused
from hivemind_tui.core.json_out import EncodedItems
from hivemind_tui.services.log_follow import LogFollower
from hivemind_tui.services.models import KNOWN_STATUSES, TaskInfo
from hivemind_tui.services.task_actions import TaskActions
from hivemind_tui.services.task_manager import Progress, SubmitOptions, TaskManager
from hivemind_tui.services.task_splitter import SubtaskPlan
from hivemind_tui.services.task_views import (
    TaskTexts,
    listed_json,
    listed_json_text,
    listed_tasks,
    parent_json,
    task_json,
)

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
    result_cmd.add_argument(
        "--partial", action="store_true", help="a parent not every subtask of which completed: write what exists"
    )
    submit_cmd = tasks.command("submit", submit, "split a task zip by its manifest, upload it, track it")
    submit_cmd.add_argument("zip", type=Path, metavar="FILE.zip")
    submit_cmd.add_argument("--type", dest="task_type", help="data_processing, machine_learning, simulation, ...")
    submit_cmd.add_argument("--priority", type=int, help="higher runs sooner")
    submit_cmd.add_argument("--shards", type=int, help="subtasks (default: the pool's free slots, or 4)")
    for name in ("memory-gb", "cpu-score", "gpu-score", "gpu-memory-gb"):
        submit_cmd.add_argument(f"--{name}", type=int, default=None)
    submit_cmd.add_argument("--location")
    submit_cmd.add_argument("--gpu-name")
    submit_cmd.add_argument("--dry-run", action="store_true", help="print the plan; upload nothing")
    submit_cmd.add_argument("--wait", action="store_true", help="wait until it finishes (exit 1 if it failed)")
    retry_cmd = tasks.command("retry", retry, "resubmit a parent's failed subtasks")
    retry_cmd.add_argument("task_id", metavar="PARENT")
    tasks.command("resume", resume, "upload what an interrupted submit did not send")
    return tasks


async def fetch_task(conn: Connection, task_id: str) -> TaskInfo:
    tasks = (await conn.session.call(conn.client.list_tasks)).tasks
    for task in tasks:
        if task.task_id == task_id:
            return task
    raise HivemindError(f"no task {task_id}", code="TASK_NOT_FOUND")


def manager(ctx: Context, conn: Connection) -> TaskManager:
    return TaskManager(ctx.settings, conn.session, conn.store, ctx.data_dir.root / "staging")


def actions(ctx: Context, conn: Connection) -> TaskActions:
    return TaskActions(manager(ctx, conn), conn.audit, conn.user)


async def list_tasks(ctx: Context) -> Result:
    if ctx.args.status and ctx.args.status.upper() not in KNOWN_STATUSES:
        raise UsageError(f"unknown status {ctx.args.status!r}; one of {', '.join(KNOWN_STATUSES)}")
    # 100,000 rows: each straight to its text, no dict on the way, made while the pool makes the next page.
    texts = TaskTexts() if ctx.json and not ctx.args.status else None
    # What is built holds no cycles and lives until the command ends: the collector walked the growing heap
    # (~0.16 s of 100,000 tasks), and would walk all of it once more after; frozen, it is left alone.
    with collector_paused():
        async with connect(ctx) as conn:
            _, items = await listed_tasks(conn.session, manager(ctx, conn), texts)
        gc.freeze()
    if ctx.args.status:
        items = [i for i in items if i.status == ctx.args.status.upper()]
    if ctx.json:
        encode = texts.text if texts is not None else listed_json_text
        return Result({"tasks": EncodedItems([encode(i) for i in items])})
    return Result(
        {"tasks": [listed_json(i) for i in items]}, lambda: task_table([listed_json(i) for i in items], time.time())
    )


def task_table(rows: list[dict[str, Any]], now: float) -> str:
    lines = [
        (
            r["task_id"],
            r["status"],
            f"{r['progress']['done']}/{r['progress']['total']}",
            r["task_type"] or "-",
            r["priority"],
            r["owner"] or "-",
            age(r["created_at"], now),
            str(r["message"])[:50],
        )
        for r in rows
    ]
    return table(("ID", "STATUS", "DONE", "TYPE", "PRIO", "OWNER", "AGE", "MESSAGE"), lines) if lines else "no tasks"


async def show(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
        parent = await manager(ctx, conn).parent(ctx.args.task_id, tasks)
        if parent is not None and parent.split:
            data = parent_json(parent)
            subs = [
                {
                    "task_id": s.task_id,
                    "index": s.index,
                    "attempt": s.attempt,
                    "status": s.status,
                    "message": s.message,
                    "worker": s.worker or None,
                    "size_bytes": s.size,
                    "params": s.params,
                }
                for s in parent.subtasks
            ]
            lines = [f"{parent.parent_id}  {parent.status}  {parent.done}/{parent.total}  {parent.message}"]
            lines += [
                table(
                    ("SUBTASK", "STATUS", "WORKER", "MESSAGE"),
                    [(s["task_id"], s["status"], s["worker"] or "-", str(s["message"])[:60]) for s in subs],
                )
            ]
            return Result({"task": data, "subtasks": subs}, "\n".join(lines))
        task = await fetch_task(conn, ctx.args.task_id)
    data = task_json(task)
    if parent is not None:  # a plain task submitted here: what a pool without owners or types does not say
        data |= {k: v for k, v in parent_json(parent).items() if data.get(k) is None and k in data}
    lines = [
        f"{k:<15} {when(v) if k.endswith('_at') else '-' if v is None else v}"
        for k, v in data.items()
        if k != "progress"
    ]
    return Result({"task": data}, "\n".join(lines))


async def logs(ctx: Context) -> Result:
    """New lines only (services/log_follow.py): by offset where the pool can, else by whole-log comparison."""
    task_id = ctx.args.task_id
    collected: list[str] = []
    async with connect(ctx) as conn:
        follower = LogFollower(conn.session, task_id)
        while True:
            fresh = await follower.poll()
            finished = not ctx.args.follow or (not fresh and (await fetch_task(conn, task_id)).finished)
            if finished:
                fresh += follower.rest()
            if fresh:
                text = "".join(line + "\n" for line in fresh)
                collected.append(text)
                if not ctx.json:
                    sys.stdout.write(text)
                    sys.stdout.flush()
            if finished:
                break
            await asyncio.sleep(FOLLOW_POLL)
    return Result({"task_id": task_id, "log": "".join(collected)}, "")


async def stop(ctx: Context) -> Result:
    task_id = ctx.args.task_id
    async with connect(ctx) as conn:
        require_change(ctx, conn, "stop tasks")
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
        done = await actions(ctx, conn).stop(
            task_id, tasks, lambda n, total: ctx.warn(f"stopping {task_id}: {n}/{total}")
        )
    if done.split:
        data = {"task_id": task_id, "status": done.status, "stopped": done.stopped}
        return Result(data, f"{task_id}: stopped {len(done.stopped)} subtask(s)")
    return Result({"task_id": task_id, "status": done.status}, f"{task_id}: {done.status}")


async def result(ctx: Context) -> Result:
    path: Path = ctx.args.output
    if await asyncio.to_thread(path.exists) and not ctx.args.force:
        raise UsageError(f"{path} exists; pass --force to overwrite it")
    async with connect(ctx) as conn:
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
        got = await actions(ctx, conn).download(ctx.args.task_id, tasks, path, ctx.args.partial)
    data: dict[str, Any] = {"task_id": got.task_id, "path": str(path), "bytes": got.size}
    text = f"saved {got.size} bytes to {path}"
    if got.summary is not None:
        data["aggregate"] = got.summary
        partial_note = " (partial)" if got.summary["completed"] < got.summary["total"] else ""
        text += f" ({got.summary['completed']}/{got.summary['total']} subtasks{partial_note})"
    return Result(data, text)


def _options(ctx: Context) -> SubmitOptions:
    a = ctx.args
    if a.shards is not None and a.shards < 1:
        raise UsageError("--shards must be 1 or more")
    for name in ("memory_gb", "cpu_score", "gpu_score", "gpu_memory_gb"):
        if getattr(a, name) is not None and getattr(a, name) < 0:
            raise UsageError(f"--{name.replace('_', '-')} must be 0 or more")
    resources = {
        "memory_gb": a.memory_gb,
        "cpu_score": a.cpu_score,
        "gpu_score": a.gpu_score,
        "gpu_memory_gb": a.gpu_memory_gb,
        "location": a.location,
        "gpu_name": a.gpu_name,
    }
    return SubmitOptions(a.task_type, a.priority, a.shards, resources)


async def submit(ctx: Context) -> Result:
    zip_path: Path = ctx.args.zip
    if not await asyncio.to_thread(zip_path.is_file):
        raise UsageError(f"{zip_path}: no such file")
    options = _options(ctx)
    async with connect(ctx) as conn:
        tasks_manager = manager(ctx, conn)
        await conn.client.check_health()
        nodes = await conn.session.call(conn.client.list_nodes)
        if ctx.args.dry_run:
            plan = await tasks_manager.dry_run(zip_path, options, nodes)
            data = {
                "task_id": plan.parent_id,
                "subtasks": [],
                "status": "DRY_RUN",
                "dry_run": True,
                "plan": [s.as_json() for s in plan.subtasks],
                "notes": plan.notes,
                "problems": plan.problems,
                "proposed_shards": plan.proposed_shards,
                "limit_bytes": plan.limit_bytes,
            }
            return Result(
                data, _plan_text(plan.subtasks, plan.notes, plan.problems), ExitCode.OK if plan.ok else ExitCode.FAILED
            )
        require_change(ctx, conn, "submit tasks")

        def progress(p: Progress) -> None:
            if not ctx.json:
                ctx.warn(
                    f"uploaded {p.subtasks_done}/{p.subtasks_total} subtasks, {p.bytes_done}/{p.bytes_total} bytes"
                )

        submitted = await TaskActions(tasks_manager, conn.audit, conn.user).submit(zip_path, options, nodes, progress)
        parent_id, plan, ids = submitted.parent_id, submitted.plan, submitted.task_ids
        status = "PENDING"
        if ctx.args.wait:
            status = await _wait(conn, tasks_manager, parent_id)
    data = {
        "task_id": parent_id,
        "subtasks": ids if plan.split else [],
        "status": status,
        "dry_run": False,
        "plan": [s.as_json() for s in plan.subtasks],
        "notes": plan.notes,
    }
    code = ExitCode.FAILED if status in ("FAILED", "STOPPED") else ExitCode.OK
    return Result(data, f"submitted {parent_id}: {len(ids)} subtask(s); {status}", code)


async def _wait(conn: Connection, tasks_manager: TaskManager, parent_id: str) -> str:
    while True:
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
        state = await tasks_manager.parent(parent_id, tasks)
        if state is not None and state.finished:
            return state.status
        await asyncio.sleep(FOLLOW_POLL)


def _plan_text(subtasks: list[SubtaskPlan], notes: list[str], problems: list[str]) -> str:
    rows = [
        (
            s.index,
            s.size_bytes,
            s.lines if s.lines is not None else "-",
            f"{s.weight:.3f}",
            json.dumps(s.params) if s.params else "-",
        )
        for s in subtasks
    ]
    lines = [table(("#", "BYTES", "LINES", "WEIGHT", "PARAMS"), rows)]
    lines += [f"note: {n}" for n in notes] + [f"PROBLEM: {p}" for p in problems]
    return "\n".join(lines)


async def retry(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        require_change(ctx, conn, "retry tasks")
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
        new_ids = await actions(ctx, conn).retry(ctx.args.task_id, tasks)
    return Result(
        {"task_id": ctx.args.task_id, "resubmitted": new_ids},
        f"{ctx.args.task_id}: resubmitted {len(new_ids)} subtask(s)",
    )


async def resume(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        require_change(ctx, conn, "upload tasks")
        parents = await manager(ctx, conn).resume()
    return Result({"resumed": parents}, f"resumed {len(parents)} submit(s)" if parents else "nothing to resume")
