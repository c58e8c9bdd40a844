"""The task manager: submit (split, record, upload), track real progress, stop, retry, resume, aggregate.

A submit is recorded in the store (the parent and every subtask, with its staged zip) before anything is
uploaded, and each subtask is marked when the pool has it, so a crash or a lost connection never loses
track: `resume` uploads what was not sent and never sends a subtask twice (TASK_EXISTS counts as sent).
Progress is finished subtasks over all, from the pool's own statuses. A plain (unsplit) task is recorded
the same way, as a parent whose only subtask carries the parent's id.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import logging
import os
import secrets
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from operator import attrgetter
from pathlib import Path
from typing import Any, overload

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import create_private_file, make_private_dir, remove_tree_inside
from hivemind_tui.core.errors import HivemindError, NotSupportedError, UsageError
from hivemind_tui.core.heap import collector_paused
from hivemind_tui.core.task_rules import upload_problem
from hivemind_tui.core.zipsafe import ZipLimits, ZipRejected, check_zip
from hivemind_tui.services.errors import RejectedError
from hivemind_tui.services.manifest import Manifest
from hivemind_tui.services.models import FINISHED_STATUSES, NodeList, TaskInfo, TaskListing
from hivemind_tui.services.parent_cache import CachedParent, ParentCache, SubRow
from hivemind_tui.services.session import Session
from hivemind_tui.services.store import Store
from hivemind_tui.services.task_splitter import SplitPlan, new_task_id, read_task, split_task

log = logging.getLogger(__name__)

NOT_SENT = "NOT_SENT"
ONLY_COMPLETED = frozenset({"COMPLETED"})
WAITING = frozenset({NOT_SENT, "PENDING"})
# Refusals that sending again cannot change: the subtask is marked FAILED with the pool's reason.
REFUSED_FOR_GOOD = ("INVALID_TASK", "INVALID_ARGUMENT", "TOO_LARGE")
# Subtask ids per StopTasks call (the pool takes up to 1000).
STOP_BATCH = 500
RESOURCE_KEYS = ("memory_gb", "cpu_score", "gpu_score", "gpu_memory_gb", "location", "gpu_name")


@dataclass(frozen=True)
class SubmitOptions:
    task_type: str | None = None
    priority: int | None = None
    shards: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Progress:
    bytes_done: int
    bytes_total: int
    subtasks_done: int
    subtasks_total: int


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True, slots=True)
class SubtaskState:
    task_id: str
    index: int
    attempt: int
    uploaded: bool
    status: str
    message: str
    worker: str
    size: int
    # As stored: every refresh builds the state of every parent, and few of them are ever looked at.
    params_json: str

    @property
    def params(self) -> dict[str, Any] | None:
        value: dict[str, Any] | None = json.loads(self.params_json)
        return value


class SubtaskStates(Sequence[SubtaskState]):
    """A parent's subtasks' states, made when first looked at. Every refresh judges every parent whose subtasks
    changed (all 20,000 at the first one, with 100,000 tasks), and only the screen that shows one parent
    looks at its subtasks; the statuses are all that judging needs."""

    __slots__ = ("_made", "_subs", "_tasks", "statuses")

    def __init__(self, subs: Sequence[SubRow], tasks: tuple[TaskInfo | None, ...], statuses: tuple[str, ...]) -> None:
        self._subs = subs
        self._tasks = tasks
        self.statuses = statuses
        self._made: list[SubtaskState] | None = None

    def _states(self) -> list[SubtaskState]:
        if self._made is None:
            self._made = [
                SubtaskState(
                    sub.task_id,
                    sub.idx,
                    sub.attempt,
                    bool(sub.uploaded),
                    status,
                    sub.rejected or (task.message if task else ""),
                    task.worker if task else "",
                    sub.size,
                    sub.params,
                )
                for sub, task, status in zip(self._subs, self._tasks, self.statuses, strict=True)
            ]
        return self._made

    @overload
    def __getitem__(self, index: int) -> SubtaskState: ...

    @overload
    def __getitem__(self, index: slice) -> list[SubtaskState]: ...

    def __getitem__(self, index: int | slice) -> SubtaskState | list[SubtaskState]:
        return self._states()[index]

    def __len__(self) -> int:
        return len(self._subs)

    def __iter__(self) -> Iterator[SubtaskState]:
        return iter(self._states())

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Sequence) and list(self) == list(other)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"SubtaskStates({len(self)} subtasks)"


@dataclass(frozen=True, slots=True)
class ParentState:
    parent_id: str
    owner: str
    task_type: str
    priority: int
    created_at: float
    split: bool
    status: str
    message: str
    done: int
    total: int
    subtasks: Sequence[SubtaskState]
    updated_at: float | None = None

    @property
    def finished(self) -> bool:
        return self.status in FINISHED_STATUSES


def overall_status(states: Sequence[str], stopped: bool) -> tuple[str, str]:
    """The parent's status from its subtasks' (issue rules); an unknown status counts as not finished."""
    if stopped:
        return "STOPPED", "stopped"
    kinds = set(states)  # judged for 20,000 parents at a console's first refresh: set operations, in C
    if kinds <= ONLY_COMPLETED:
        return "COMPLETED", ""
    failed = states.count("FAILED")
    if kinds <= FINISHED_STATUSES:
        if failed:
            return "FAILED", f"{failed} of {len(states)} subtasks failed"
        return "STOPPED", "some subtasks were stopped"
    if kinds <= WAITING:
        return "PENDING", f"{states.count(NOT_SENT)} not sent yet" if NOT_SENT in kinds else ""
    return "RUNNING", f"{failed} failed" if failed else ""


def changed_entries(previous: dict[str, TaskInfo], listed: dict[str, TaskInfo]) -> list[str]:
    """Ids listed anew, listed differently, or no longer listed. The monitor replaces only the entries that
    changed, so most compare by identity alone."""
    changed = [i for i, t in listed.items() if (p := previous.get(i)) is not t and p != t]
    if len(previous) != len(listed) or any(i not in previous for i in changed):
        changed += previous.keys() - listed.keys()
    return changed


class TaskManager:
    def __init__(
        self,
        settings: Settings,
        session: Session,
        store: Store,
        staging_root: Path,
        clock: Clock = system_clock,
        settle_in_background: bool = False,
    ) -> None:
        """`settle_in_background`: what a look at the parents writes down (`_settle`) is written while its
        caller goes on; the console's refresh shows the states without waiting for the store. The owner then
        awaits `settled()` before it closes the store."""
        self.settings = settings
        self.session = session
        self.store = store
        self.staging_root = staging_root
        self.clock = clock
        self.limits = ZipLimits(settings.max_unzipped_bytes, settings.max_zip_ratio)
        self.cache = ParentCache(store)
        # The pool's list as the last `parents` call saw it, to tell which entries changed since.
        self._listed: dict[str, TaskInfo] | None = None
        # Whose listing that was, and its number (models.TaskListing), when it was one.
        self._seen_listing: tuple[object, int] | None = None
        self._loose: dict[str, TaskInfo] = {}
        self._settle_in_background = settle_in_background
        self._settling: asyncio.Future[None] | None = None
        self._looking = asyncio.Lock()

    @property
    def pool(self) -> str:
        return self.session.client.address

    def _visible(self) -> tuple[object, ...]:
        """The arguments of `p.pool = ? AND (p.owner = ? OR ?)`, the parents this session sees, as the pool
        decides for tasks: its own on this pool, every one for an admin (the store is shared by everyone who
        uses this data dir)."""
        return (self.pool, self.session.username, self.session.role == "admin")

    def upload_limit(self) -> int:
        """Our pools take max_upload_bytes; a HiveMind pool (no extensions) takes the remote limit."""
        health = self.session.client.health
        if health is not None and health.extensions:
            return self.settings.max_upload_bytes
        return self.settings.remote_pool_limit_bytes

    # -- planning ---------------------------------------------------------------------------------
    async def plan(
        self, zip_path: Path, options: SubmitOptions, nodes: NodeList | None, out_dir: Path, parent_id: str
    ) -> tuple[Manifest, SplitPlan]:
        manifest = await asyncio.to_thread(read_task, zip_path, self.limits)
        manifest = replace(
            manifest,
            task_type=options.task_type or manifest.task_type,
            priority=manifest.priority if options.priority is None else options.priority,
            resources={**manifest.resources, **{k: v for k, v in options.resources.items() if v is not None}},
        )
        res = manifest.resources
        problem = upload_problem(
            manifest.priority, manifest.task_type, str(res.get("location") or ""), str(res.get("gpu_name") or "")
        )
        if problem:  # the pool would refuse every subtask: refuse before anything is split or recorded
            raise UsageError(problem)
        if manifest.task_type == "data_processing" and not manifest.input:
            raise UsageError("--type data_processing needs [split] input in hivemind.toml")
        plan = await asyncio.to_thread(
            split_task,
            zip_path,
            out_dir,
            manifest,
            options.shards,
            nodes,
            self.upload_limit(),
            parent_id,
            self.limits,
            self.settings.shard_compression == "stored",
            self.settings.max_subtasks,
        )
        return manifest, plan

    async def dry_run(self, zip_path: Path, options: SubmitOptions, nodes: NodeList | None) -> SplitPlan:
        """The same split into a temp folder that is removed: exact sizes, nothing uploaded or recorded."""
        scratch = Path(await asyncio.to_thread(tempfile.mkdtemp, prefix="hivemind-plan-"))
        try:
            return (await self.plan(zip_path, options, nodes, scratch, new_task_id(zip_path)))[1]
        finally:
            await asyncio.to_thread(shutil.rmtree, scratch, True)

    # -- submit and resume ------------------------------------------------------------------------
    async def submit(
        self,
        zip_path: Path,
        options: SubmitOptions,
        nodes: NodeList | None,
        on_progress: ProgressCallback | None = None,
    ) -> tuple[str, SplitPlan, list[str]]:
        """Split, record, upload. Raises (with nothing recorded) if a subtask would exceed the limit."""
        parent_id = new_task_id(zip_path)
        staging = self.staging_root / parent_id
        await asyncio.to_thread(make_private_dir, self.staging_root)
        manifest, plan = await self.plan(zip_path, options, nodes, staging, parent_id)
        if not plan.ok:
            await asyncio.to_thread(shutil.rmtree, staging, True)
            raise HivemindError("; ".join(plan.problems), code="TOO_LARGE")
        if not plan.split:
            single = staging / "0000.zip"
            await asyncio.to_thread(create_private_file, single)
            await asyncio.to_thread(shutil.copyfile, zip_path, single)
            plan.subtasks[0] = replace(plan.subtasks[0], path=single)
        resources = manifest.resources
        ids = [parent_id] if not plan.split else [f"{parent_id}.{s.index:04d}" for s in plan.subtasks]
        now = self.clock()
        async with self.store.write() as conn:
            await conn.execute(
                "INSERT INTO parents (parent_id, pool, owner, source, task_type, priority, total, plan, resources, "
                "concat, header, staging, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    parent_id,
                    self.pool,
                    self.session.username,
                    str(zip_path),
                    manifest.task_type,
                    manifest.priority,
                    len(ids),
                    json.dumps([s.as_json() for s in plan.subtasks]),
                    json.dumps(resources),
                    json.dumps(list(manifest.concat)),
                    int(manifest.header),
                    str(staging),
                    now,
                ),
            )
            await conn.executemany(
                "INSERT INTO subtasks (task_id, parent_id, idx, attempt, zip_path, size, params, created_at) "
                "VALUES (?, ?, ?, 0, ?, ?, ?, ?)",
                [
                    (task_id, parent_id, s.index, str(s.path), s.size_bytes, json.dumps(s.params), now)
                    for task_id, s in zip(ids, plan.subtasks, strict=True)
                ],
            )
        log.info("submit %s: %d subtask(s) recorded", parent_id, len(ids))
        await self.upload_pending(parent_id, on_progress)
        return parent_id, plan, ids

    async def unsent(self) -> list[str]:
        """Parents of this pool with subtasks not yet uploaded."""
        args = self._visible()
        rows = await self.store.fetchall(
            "SELECT DISTINCT p.parent_id FROM parents p JOIN subtasks s ON s.parent_id = p.parent_id "
            "WHERE p.pool = ? AND (p.owner = ? OR ?) "
            "AND s.uploaded = 0 AND s.rejected = '' AND s.superseded = 0 AND p.stopped = 0 ORDER BY p.created_at",
            args,
        )
        return [r["parent_id"] for r in rows]

    async def resume(self, on_progress: ProgressCallback | None = None) -> list[str]:
        parents = await self.unsent()
        for parent_id in parents:
            await self.upload_pending(parent_id, on_progress)
        return parents

    async def upload_pending(self, parent_id: str, on_progress: ProgressCallback | None = None) -> int:
        """Upload every unsent subtask of `parent_id`, a few at once; returns how many were sent now."""
        parent = await self._parent_row(parent_id)
        rows = await self.store.fetchall(
            "SELECT * FROM subtasks WHERE parent_id = ? AND superseded = 0 ORDER BY idx", (parent_id,)
        )
        resources = json.loads(parent["resources"])
        split = parent["total"] > 1 or rows[0]["task_id"] != parent_id
        pending = [r for r in rows if not r["uploaded"] and not r["rejected"]]
        refused: list[str] = []
        total_bytes = sum(r["size"] for r in rows)
        done_bytes = sum(r["size"] for r in rows if r["uploaded"])
        done = len(rows) - len(pending)
        gate = asyncio.Semaphore(self.settings.upload_concurrency)
        lock = asyncio.Lock()

        async def send(row: Any) -> None:
            nonlocal done_bytes, done
            async with gate:
                data = await asyncio.to_thread(Path(row["zip_path"]).read_bytes)
                fields = {k: resources[k] for k in RESOURCE_KEYS if k in resources}
                fields.update(
                    priority=parent["priority"],
                    task_type=parent["task_type"],
                    parent_task_id=parent_id if split else "",
                )
                try:
                    await self.session.call(
                        lambda token: self.session.client.upload_task(token, row["task_id"], data, **fields)
                    )
                except RejectedError as exc:
                    if exc.code in REFUSED_FOR_GOOD:
                        async with self.store.write() as conn:
                            await conn.execute(
                                "UPDATE subtasks SET rejected = ? WHERE task_id = ?", (exc.message, row["task_id"])
                            )
                        refused.append(exc.message)
                        return
                    if exc.code != "TASK_EXISTS":
                        raise
                async with self.store.write() as conn:
                    await conn.execute("UPDATE subtasks SET uploaded = 1 WHERE task_id = ?", (row["task_id"],))
                async with lock:
                    done_bytes += row["size"]
                    done += 1
                    if on_progress is not None:
                        on_progress(Progress(done_bytes, total_bytes, done, len(rows)))

        if on_progress is not None:
            on_progress(Progress(done_bytes, total_bytes, done, len(rows)))
        await asyncio.gather(*(send(r) for r in pending))
        if refused:
            raise HivemindError(
                f"the pool refused {len(refused)} subtask(s) of {parent_id} for good: {refused[0]}", code="REFUSED"
            )
        return len(pending)

    # -- status -----------------------------------------------------------------------------------
    async def parents(self, tasks: list[TaskInfo]) -> list[ParentState]:
        """Every parent of this pool with its subtasks' statuses taken from `tasks` (the pool's list). Only the
        parents of entries that changed since the last call are worked out again (services/parent_cache.py)."""
        async with self._looking:  # the dashboard and the tasks screen may both ask in one refresh
            with collector_paused():
                return await self._parents(tasks)

    async def _parents(self, tasks: list[TaskInfo]) -> list[ParentState]:
        await self.settled()  # the last look's writes first: they stay in order, and their failure shows here
        cache = self.cache
        reloaded = await cache.current(self._visible())
        listing = tasks if isinstance(tasks, TaskListing) else None
        by_id = listing.by_id if listing else dict(zip(map(attrgetter("task_id"), tasks), tasks, strict=True))
        previous = self._listed
        changed: Collection[str] | None = None
        if listing is not None and self._seen_listing:
            changed = listing.changes_since(*self._seen_listing)  # the monitor says what changed
        if reloaded or previous is None:
            changed = None
        elif changed is None:
            changed = changed_entries(previous, by_id)
        fresh = cache.parents if changed is None else cache.parents_of(changed)
        for cached in fresh:
            cached.state = self._state(cached, by_id)
        if self._settle_in_background:
            self._settling = asyncio.ensure_future(self._settle(fresh))
        else:
            await self._settle(fresh)
        # A failure to settle here leaves `_listed` as it was, so these parents are judged again next time; in the
        # background, `settled` makes the next look judge every parent.
        self._listed = by_id
        self._seen_listing = (listing.origin, listing.generation) if listing else None
        self._follow_loose(by_id, changed)
        return [cached.state for cached in cache.parents]

    async def settled(self) -> None:
        """Wait until what the last look at the parents writes down is written. If that failed, the next look
        judges every parent again (and so writes it all again), and the failure is raised here."""
        settling = self._settling
        if settling is None:
            return
        try:
            await asyncio.shield(settling)  # a cancelled caller does not cancel the writes
        except BaseException:
            if settling.done():  # the writes failed, not just their waiter
                self._settling, self._listed = None, None
            raise
        self._settling = None

    def _follow_loose(self, by_id: dict[str, TaskInfo], changed: Collection[str] | None) -> None:
        """The pool's tasks that belong to no parent, kept as entries change (all looked at when unknown)."""
        owned = self.cache.owned
        if changed is None:
            self._loose = {i: t for i, t in by_id.items() if i not in owned}
            return
        for task_id in changed:
            task = by_id.get(task_id)
            if task is None:
                self._loose.pop(task_id, None)
            elif task_id not in owned:
                self._loose[task_id] = task

    async def _settle(self, fresh: list[CachedParent]) -> None:
        """Note when a parent is first seen finished (pruning goes by it), and delete the staged zip of every
        completed subtask: only unsent, failed or unfinished subtasks can need theirs again (resume, retry)."""
        cache = self.cache
        finished: list[str] = []
        completed: list[SubRow] = []
        seen: list[tuple[str, str]] = []
        for cached in fresh:
            state = cached.state
            if state.finished and not cache.is_finished(cached.row):
                finished.append(state.parent_id)
            for sub, status in zip(cached.subs, state.subtasks.statuses, strict=True):  # judged by _state
                if status == "COMPLETED" and cache.has_zip(sub):
                    completed.append(sub)
                if status in FINISHED_STATUSES and cache.last_status_of(sub) != status:
                    seen.append((status, sub.task_id))
        if seen:
            await self.remember_statuses(seen)
        if not finished and not completed:
            return
        for sub in completed:
            await asyncio.to_thread(Path(sub.zip_path).unlink, True)
        now = self.clock()
        async with self.store.write() as conn:
            await conn.executemany(
                "UPDATE parents SET finished_at = ? WHERE parent_id = ?", [(now, p) for p in finished]
            )
            await conn.executemany(
                "UPDATE subtasks SET zip_path = '' WHERE task_id = ?", [(s.task_id,) for s in completed]
            )
        cache.finished.update(finished)
        cache.zip_cleared.update(s.task_id for s in completed)

    async def remember_statuses(self, statuses: list[tuple[str, str]]) -> None:
        """(status, subtask id) pairs: the last finished status each subtask was seen in."""
        async with self.store.write() as conn:
            await conn.executemany("UPDATE subtasks SET last_status = ? WHERE task_id = ?", statuses)
        self.cache.last_status.update((task_id, status) for status, task_id in statuses)

    async def overview(self, tasks: list[TaskInfo]) -> tuple[list[ParentState], list[TaskInfo]]:
        """The parents of this pool, and the pool's tasks that belong to none of them."""
        parents = await self.parents(tasks)
        return parents, list(self._loose.values())

    async def parent(self, parent_id: str, tasks: list[TaskInfo]) -> ParentState | None:
        return next((p for p in await self.parents(tasks) if p.parent_id == parent_id), None)

    def _state(self, cached: CachedParent, by_id: dict[str, TaskInfo]) -> ParentState:
        row, subs = cached.row, cached.subs
        # Tuples: one of each per parent is kept, and a tuple of strings drops out of the collector's sight.
        tasks = tuple([by_id.get(task_id) for task_id in cached.ids])
        listed = [task.status for task in tasks if task is not None]
        if cached.sent and len(listed) == len(tasks):  # the common case: each status is the pool's
            statuses = tuple(listed)
        else:
            statuses = tuple([self._status(sub, task) for sub, task in zip(subs, tasks, strict=True)])
        status, message = overall_status(statuses, bool(row["stopped"]))
        if status == "PENDING" and not message:  # why it waits, in the pool's words (its first pending subtask)
            message = next(
                (t.message for t, s in zip(tasks, statuses, strict=True) if s == "PENDING" and t and t.message), ""
            )
        updated = [t.updated_at for t in tasks if t is not None and t.updated_at]
        split = not (len(subs) == 1 and subs[0].task_id == row["parent_id"])
        return ParentState(
            row["parent_id"],
            row["owner"],
            row["task_type"],
            row["priority"],
            row["created_at"],
            split,
            status,
            message,
            statuses.count("COMPLETED"),
            len(statuses),
            SubtaskStates(subs, tasks, statuses),
            max(updated) if updated else None,
        )

    def _status(self, sub: SubRow, task: TaskInfo | None) -> str:
        if sub.rejected:
            return "FAILED"
        if not sub.uploaded:
            return NOT_SENT
        if task is not None:
            return task.status
        # Not in the pool's list now: a finished subtask stays finished, anything else is unknown.
        last = self.cache.last_status_of(sub)
        return last if last in FINISHED_STATUSES else "UNKNOWN"

    # -- stop and retry ---------------------------------------------------------------------------
    async def stop(
        self, parent_id: str, tasks: list[TaskInfo], on_progress: Callable[[int, int], None] | None = None
    ) -> tuple[str, list[str]]:
        """Stop every unfinished subtask, STOP_BATCH ids per call (StopTasks), or one by one on a pool
        without it; unsent ones are never sent. `on_progress(done, total)` after each batch. Returns the
        parent's status after it and the subtasks the pool stopped: a finished parent stays as it was, and a
        stop the pool refused before stopping anything leaves the parent as it was too."""
        state = await self._require(parent_id, tasks)
        unfinished = [s for s in state.subtasks if s.status not in FINISHED_STATUSES and s.status != "FAILED"]
        if not unfinished:
            return state.status, []
        async with self.store.write() as conn:  # first, so that no unsent subtask is sent meanwhile
            await conn.execute("UPDATE parents SET stopped = 1 WHERE parent_id = ?", (parent_id,))
        targets = [s.task_id for s in unfinished if s.uploaded]
        stopped: list[str] = []
        client = self.session.client
        try:
            for start in range(0, len(targets), STOP_BATCH):
                batch = targets[start : start + STOP_BATCH]
                try:
                    answers = await self.session.call(partial(client.stop_tasks, task_ids=batch))
                    stopped += [t for t, status in answers if status != "NOT_FOUND"]
                except NotSupportedError:
                    for task_id in batch:
                        await self.session.call(partial(client.stop_task, task_id=task_id))
                        stopped.append(task_id)
                if on_progress is not None:
                    on_progress(start + len(batch), len(targets))
        except BaseException:
            if not stopped:
                async with self.store.write() as conn:
                    await conn.execute("UPDATE parents SET stopped = 0 WHERE parent_id = ?", (parent_id,))
            raise
        return "STOPPED", stopped

    async def retry(self, parent_id: str, tasks: list[TaskInfo]) -> list[str]:
        """Resubmit failed (and stopped) subtasks under new ids linked to the parent, up to the retry limit."""
        state = await self._require(parent_id, tasks)
        if not state.split:
            raise UsageError(f"{parent_id} is a plain task; submit it again to rerun it")
        again = [s for s in state.subtasks if s.status in ("FAILED", "STOPPED")]
        over = [s.task_id for s in again if s.attempt >= self.settings.subtask_retry_limit]
        if over:
            raise HivemindError(
                f"retry limit ({self.settings.subtask_retry_limit}) reached for {', '.join(over)}", code="RETRY_LIMIT"
            )
        new_ids = []
        now = self.clock()
        async with self.store.write() as conn:
            await conn.execute("UPDATE parents SET stopped = 0, finished_at = NULL WHERE parent_id = ?", (parent_id,))
            for sub in again:
                new_id = f"{parent_id}.{sub.index:04d}.r{sub.attempt + 1}"
                [row] = await conn.execute_fetchall("SELECT * FROM subtasks WHERE task_id = ?", (sub.task_id,))
                await conn.execute("UPDATE subtasks SET superseded = 1 WHERE task_id = ?", (sub.task_id,))
                await conn.execute(
                    "INSERT INTO subtasks (task_id, parent_id, idx, attempt, zip_path, size, params, created_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (new_id, parent_id, sub.index, sub.attempt + 1, row["zip_path"], row["size"], row["params"], now),
                )
                new_ids.append(new_id)
        await self.upload_pending(parent_id)
        return new_ids

    # -- results ----------------------------------------------------------------------------------
    async def aggregate(
        self,
        parent_id: str,
        tasks: list[TaskInfo],
        output: Path,
        on_progress: ProgressCallback | None = None,
        require_all: bool = False,
    ) -> dict[str, Any]:
        """One result zip: a folder per subtask, concatenated outputs, and `aggregate.json`; atomic. With
        `require_all`, refused (nothing written) unless every subtask's result is there."""
        state = await self._require(parent_id, tasks)
        parent = await self._parent_row(parent_id)
        results: dict[int, bytes] = {}
        failed: list[str] = []
        missing: list[str] = []
        learned: list[tuple[str, str]] = []
        for n, sub in enumerate(state.subtasks):
            if sub.status not in ("COMPLETED", "UNKNOWN"):
                (failed if sub.status == "FAILED" else missing).append(sub.task_id)
                continue
            try:
                data = await self.session.call(partial(self.session.client.task_result, task_id=sub.task_id))
            except RejectedError:  # HiveMind: "result does not exist or is not finished"
                if sub.status != "UNKNOWN":
                    raise
                data = b""
            if sub.status == "UNKNOWN":
                # Out of the pool's list: asked by id. A result there means it finished; none, that it has not.
                if not data:
                    missing.append(sub.task_id)
                    continue
                learned.append(("COMPLETED", sub.task_id))
            try:
                await asyncio.to_thread(check_zip, data, self.limits)
            except ZipRejected as exc:
                failed.append(sub.task_id)
                log.warning("result of %s refused: %s", sub.task_id, exc)
                continue
            results[sub.index] = data
            if on_progress is not None:
                on_progress(Progress(n + 1, len(state.subtasks), n + 1, len(state.subtasks)))
        if learned:
            await self.remember_statuses(learned)
        if require_all and len(results) < state.total:
            raise HivemindError(
                f"{parent_id}: {len(results)} of {state.total} subtask results are there ({state.status}); "
                "--partial writes what exists",
                code="NOT_FINISHED",
            )
        summary = {
            "parent_task_id": parent_id,
            "status": state.status if len(results) < state.total else "COMPLETED",
            "total": state.total,
            "completed": len(results),
            "failed": failed,
            "missing": missing,
            "concatenated": json.loads(parent["concat"]) if state.split else [],
        }
        await asyncio.to_thread(self._write_aggregate, output, state, results, summary, bool(parent["header"]))
        if state.status == "COMPLETED" and len(results) == state.total:
            await asyncio.to_thread(remove_tree_inside, parent["staging"], self.staging_root)
        return summary

    def _write_aggregate(
        self, output: Path, state: ParentState, results: dict[int, bytes], summary: dict[str, Any], header: bool
    ) -> None:
        output.parent.mkdir(parents=True, exist_ok=True)
        tmp = output.with_name(f".{output.name}.{secrets.token_hex(4)}.tmp")
        try:
            if not state.split:
                tmp.write_bytes(results.get(0, b""))
            else:
                with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, allowZip64=True) as out:
                    for index in sorted(results):
                        with zipfile.ZipFile(io.BytesIO(results[index])) as zf:
                            for member in zf.infolist():
                                if not member.is_dir():
                                    out.writestr(f"subtask-{index:04d}/{member.filename}", zf.read(member))
                    for path in summary["concatenated"]:
                        with out.open(path, "w", force_zip64=True) as dst:
                            for n, index in enumerate(sorted(results)):
                                with zipfile.ZipFile(io.BytesIO(results[index])) as zf:
                                    if path not in zf.namelist():
                                        continue
                                    with zf.open(path) as src:
                                        if header and n > 0:
                                            src.readline()
                                        shutil.copyfileobj(src, dst)
                    out.writestr("aggregate.json", json.dumps(summary, indent=1))
            with tmp.open("rb+") as fh:
                os.fsync(fh.fileno())
            tmp.replace(output)
        finally:
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()

    # -- helpers ----------------------------------------------------------------------------------
    async def _parent_row(self, parent_id: str) -> Any:
        row = await self.store.fetchone("SELECT * FROM parents WHERE parent_id = ?", (parent_id,))
        if row is None:
            raise HivemindError(f"no submitted task {parent_id}", code="TASK_NOT_FOUND")
        return row

    async def _require(self, parent_id: str, tasks: list[TaskInfo]) -> ParentState:
        state = await self.parent(parent_id, tasks)
        if state is None:
            raise HivemindError(f"no submitted task {parent_id} for this pool", code="TASK_NOT_FOUND")
        return state

    async def is_parent(self, task_id: str) -> bool:
        args = self._visible()
        query = "SELECT 1 FROM parents p WHERE p.pool = ? AND (p.owner = ? OR ?) AND parent_id = ?"
        return await self.store.fetchone(query, (*args, task_id)) is not None

    async def is_split(self, task_id: str) -> bool:
        """A parent split into subtasks; a plain task this client submitted is its own only subtask."""
        args = self._visible()
        row = await self.store.fetchone(
            "SELECT total, (SELECT task_id FROM subtasks WHERE parent_id = p.parent_id ORDER BY idx LIMIT 1) AS first "
            "FROM parents p WHERE p.pool = ? AND (p.owner = ? OR ?) AND parent_id = ?",
            (*args, task_id),
        )
        return row is not None and not (row["total"] == 1 and row["first"] == task_id)
