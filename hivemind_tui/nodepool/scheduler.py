"""The scheduler: hands PENDING tasks to workers, notices lost workers, and stops running tasks.

It wakes on every event that can change a decision (a new task, a heartbeat, a finished task, a node
state change) and at least once a second, so a task reaches RUNNING well under a second after a worker
has room (HiveMind's dispatcher polls every 10 s). Order: priority (higher first), then age. A node
takes a task when it is online, active, has a free slot and meets the task's needs; a task that waits
says why in its message.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

import aiosqlite
import grpc

from hivemind_tui.core.clock import Clock
from hivemind_tui.core.tls_names import worker_name
from hivemind_tui.nodepool.hivemind_imitation import pushes_to
from hivemind_tui.nodepool.hivemind_workers import HIVEMIND, HIVEMIND_WORKER_MAX_ZIP
from hivemind_tui.nodepool.nodes import NodeRegistry
from hivemind_tui.nodepool.servicers import WORKER_SECRET_HEADER
from hivemind_tui.nodepool.storage import PoolStorage
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

TICK = 1.0
PENDING_ALL = "SELECT * FROM tasks WHERE status = 'PENDING' AND stop_requested = 0 ORDER BY priority DESC, created_at"
PENDING_PAGE = PENDING_ALL + " LIMIT ? OFFSET ?"
# Between sweeps, at most this many rows of the head of the queue are read to fill the slots that came free.
HEAD_ROWS = 256
# A task that started this recently may be missing from a heartbeat built before its ExecuteTask arrived.
RECONCILE_GRACE = 2.0
# How long the pool waits for the previous worker process of a node to say it still lives.
PROBE_TIMEOUT = 2.0
# Wait reasons written per transaction when a sweep rewords the queue.
REWORD_BATCH = 1000
ACTIVE = ("ASSIGNED", "RUNNING")


@dataclass(frozen=True)
class Need:
    """One requirement of a task, how to test a node for it, and how to say it is missing."""

    field: str
    words: str

    def met(self, task: aiosqlite.Row, node: aiosqlite.Row) -> bool:
        wanted = task[self.field]
        if not wanted:
            return True
        if self.field == "gpu_name":
            return bool(wanted.lower() in node["gpu_name"].lower())
        if self.field == "location":
            return bool(wanted.lower() == node["location"].lower())
        return bool(node[self.field] >= wanted)

    def describe(self, task: aiosqlite.Row) -> str:
        return self.words.format(task[self.field])


NEEDS = (
    Need("memory_gb", "{} GB memory"),
    Need("cpu_score", "CPU score {}"),
    Need("gpu_score", "GPU score {}"),
    Need("gpu_memory_gb", "{} GB GPU memory"),
    Need("gpu_name", "a GPU named {!r}"),
    Need("location", "location {!r}"),
)


def takes_size(task: aiosqlite.Row, node: aiosqlite.Row) -> bool:
    """A HiveMind worker refuses (in gRPC itself) a zip over its 4 MiB receive limit."""
    return bool(node["kind"] != HIVEMIND or task["zip_size"] <= HIVEMIND_WORKER_MAX_ZIP)


def fits(task: aiosqlite.Row, node: aiosqlite.Row) -> bool:
    return all(need.met(task, node) for need in NEEDS) and takes_size(task, node)


def wait_reason(task: aiosqlite.Row, nodes: Sequence[aiosqlite.Row], online: set[str]) -> str:
    """Why no node can take `task` now, in words an operator can act on."""
    live = [n for n in nodes if n["node_id"] in online]
    if not live:
        return "waiting: no online worker"
    active = [n for n in live if n["state"] == "active"]
    if not active:
        return "waiting: every online node is cordoned or draining"
    fitting = active
    for need in NEEDS:
        fitting = [n for n in fitting if need.met(task, n)]
        if not fitting:
            return f"waiting: no online node with {need.describe(task)}"
    if not any(takes_size(task, n) for n in fitting):
        return "waiting: the zip is over the 4 MiB a HiveMind worker takes, and only such workers fit"
    return f"waiting: all {len(fitting)} suitable node(s) are busy"


class Scheduler:
    def __init__(
        self,
        storage: PoolStorage,
        nodes: NodeRegistry,
        clock: Clock,
        worker_secret: str,
        retry_limit: int,
        channel_options: list[tuple[str, int]],
        dispatch_deadline: float,
        worker_tls: grpc.ChannelCredentials | None = None,
        hivemind_compat: bool = False,
    ) -> None:
        self._storage = storage
        self._compat = hivemind_compat
        # A TLS pool dials its workers with TLS too and checks each one's certificate names the node it
        # scheduled on (tls.worker_name); a plaintext pool's workers serve plaintext.
        self._worker_tls = worker_tls
        self._nodes = nodes
        self._clock = clock
        self._metadata = ((WORKER_SECRET_HEADER, worker_secret),)
        self._retry_limit = retry_limit
        self._channel_options = channel_options
        self._deadline = dispatch_deadline
        self._wake = asyncio.Event()
        # Passes read the queue and the free slots, then write: two at once would count slots twice.
        self._pass_lock = asyncio.Lock()
        # A channel and its stub per worker address: a stub makes a callable per rpc, and every dispatch made one.
        self._channels: dict[str, tuple[grpc.aio.Channel, pb_grpc.WorkerNodeServiceAsyncStub]] = {}
        self._dispatches: set[asyncio.Task[None]] = set()
        self._loop_task: asyncio.Task[None] | None = None
        self._closed = False
        self._swept_at = 0.0
        # What the last sweep saw (nodes, their free slots, the queue): an unchanged cluster needs no new sweep.
        self._swept: tuple[object, ...] | None = None

    def wake(self) -> None:
        self._wake.set()

    def start(self) -> None:
        self._loop_task = asyncio.create_task(self._run())

    async def close(self) -> None:
        # The flag, not only the cancellation: Python 3.11's wait_for can swallow a cancel that races a wake.
        self._closed = True
        self._wake.set()
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
        for task in list(self._dispatches):
            task.cancel()
        await asyncio.gather(*self._dispatches, return_exceptions=True)
        for channel, _ in self._channels.values():
            await channel.close()

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(TICK):
                    await self._wake.wait()
            if self._closed:
                return
            self._wake.clear()
            try:
                sweep = time.monotonic() - self._swept_at >= TICK
                if sweep:  # silent workers are a matter of seconds: looked for once a tick, not at every event
                    self._swept_at = time.monotonic()
                    await self.reclaim_lost()
                await self.assign(sweep)
            except Exception:
                log.exception("scheduler pass failed")

    # -- assignment -------------------------------------------------------------------------------
    async def assign(self, sweep: bool = True) -> int:
        """One pass: give PENDING tasks that fit a node to that node. Returns how many. A sweep (at most one
        a TICK) also words why every other pending task waits; the passes between sweeps, one per upload or
        finished task, read the head of the queue and stop when the free slots run out, so a long queue does
        not cost a scan per event."""
        async with self._pass_lock:
            return await self._assign(sweep)

    async def _assign(self, sweep: bool) -> int:
        nodes = await self._nodes.all()
        online = {n["node_id"] for n in nodes if self._nodes.is_online(n)}
        busy = {
            r["worker"]: r["n"]
            for r in await self._storage.fetchall(
                "SELECT worker, COUNT(*) AS n FROM tasks WHERE status IN ('ASSIGNED', 'RUNNING') GROUP BY worker"
            )
        }
        free = {n["node_id"]: n["slots"] - busy.get(n["node_id"], 0) for n in nodes}
        usable = [n for n in nodes if n["node_id"] in online and n["state"] == "active" and self._pushable(n)]
        slots_left = sum(max(free[n["node_id"]], 0) for n in usable)
        if not sweep and slots_left <= 0:
            return 0
        seen = await self._cluster_state(nodes, online, free) if sweep else None
        if seen is not None and seen == self._swept:
            return 0  # the same nodes, slots and queue as the last sweep: the same answers
        pending = self._pending(sweep, slots_left, lambda: assigned)
        # Tasks that ask for the same things fit the same nodes and wait for the same reason: worked out once
        # per pass for each distinct set of requirements, not once per pending task.
        fitting: dict[tuple[object, ...], list[aiosqlite.Row]] = {}
        reasons: dict[tuple[object, ...], str] = {}
        reworded: list[tuple[str, str]] = []  # (reason, task id): written together, in one transaction
        assigned = 0
        async for task in pending:
            if not sweep and slots_left <= 0:
                await pending.aclose()
                break
            wants = (*(task[need.field] for need in NEEDS), task["zip_size"] > HIVEMIND_WORKER_MAX_ZIP)
            if wants not in fitting:
                fitting[wants] = [n for n in usable if fits(task, n)]
            candidates = [n for n in fitting[wants] if free[n["node_id"]] > 0]
            if not candidates:
                if wants not in reasons:
                    reasons[wants] = wait_reason(task, nodes, online)
                reason = reasons[wants]
                if reason != task["message"]:
                    reworded.append((reason, task["task_id"]))
                continue
            node = max(candidates, key=lambda n: (free[n["node_id"]] * max(n["cpu_score"], 1), n["node_id"]))
            if not await self._set_if(
                task["task_id"],
                "PENDING",
                status="ASSIGNED",
                worker=node["node_id"],
                attempts=task["attempts"] + 1,
                message=f"assigned to {node['node_id']}",
            ):
                continue
            free[node["node_id"]] -= 1
            slots_left -= 1
            assigned += 1
            dispatch = asyncio.create_task(self._dispatch(task["task_id"], node))
            self._dispatches.add(dispatch)
            dispatch.add_done_callback(self._dispatches.discard)
        await self._reword(reworded)
        if seen is not None:
            self._swept = seen  # only a sweep that went through counts: one that failed is run again
        return assigned

    async def _pending(
        self, sweep: bool, slots_left: int, assigned: Callable[[], int]
    ) -> AsyncGenerator[aiosqlite.Row, None]:
        """The queue in order: all of it for a sweep. Between sweeps, in pages that start at about the free
        slots and double, HEAD_ROWS rows in all: a freed slot costs a few rows, and a longer head of tasks that
        fit nowhere is the next sweep's (a pass at every upload must not read 20,000 of them). The tasks
        assigned meanwhile have left the queue: a page starts after the ones read that still wait."""
        if sweep:
            for task in await self._storage.fetchall(PENDING_ALL):
                yield task
            return
        read, size = 0, max(2 * slots_left, 16)
        while read < HEAD_ROWS:
            size = min(size, HEAD_ROWS - read)
            page = await self._storage.fetchall(PENDING_PAGE, (size, read - assigned()))
            for task in page:
                yield task
            read += len(page)
            if len(page) < size:
                return
            size *= 2

    async def _reword(self, reworded: list[tuple[str, str]]) -> None:
        """New wait reasons, a batch per transaction: a node going away rewords the whole queue, and one
        transaction per task made that seconds of work; the loop serves other calls between batches."""
        now = self._clock()
        for start in range(0, len(reworded), REWORD_BATCH):
            async with self._storage.write() as conn:
                await conn.executemany(
                    "UPDATE tasks SET message = ?, updated_at = ? WHERE task_id = ? AND status = 'PENDING'",
                    [(reason, now, task_id) for reason, task_id in reworded[start : start + REWORD_BATCH]],
                )
            await asyncio.sleep(0)

    async def _cluster_state(
        self, nodes: Sequence[aiosqlite.Row], online: set[str], free: dict[str, int]
    ) -> tuple[object, ...]:
        """Everything a sweep's assignments and wait reasons follow from. The queue is its size and latest
        change number (from an index: no row is read), so a sweep of 20,000 waiting tasks runs only when
        something it depends on moved, not every tick."""
        queue = await self._storage.fetchone("SELECT COUNT(*), MAX(seq) FROM tasks WHERE status = 'PENDING'")
        shape = tuple(
            (
                n["node_id"],
                n["node_id"] in online,
                n["state"],
                n["kind"],
                self._pushable(n),
                free[n["node_id"]] > 0,
                *(n[need.field] for need in NEEDS),
            )
            for n in nodes
        )
        return (tuple(queue) if queue is not None else (), shape)

    async def _dispatch(self, task_id: str, node: aiosqlite.Row) -> None:
        task = await self._storage.task(task_id)
        if task is None:
            return
        try:
            data = await self._storage.read_file(self._storage.paths.task_zip(task_id))
            reply = await self._stub(node).ExecuteTask(
                pb.ExecuteTaskRequest(
                    task_id=task_id,
                    task_zip=data,
                    cpu_usage=task["cpu_score"],
                    gpu_usage=task["gpu_score"],
                    memory_gb=task["memory_gb"],
                    gpu_memory_gb=task["gpu_memory_gb"],
                    # A HiveMind worker knows no attempts (its reports carry none: attempt 0, never stale).
                    attempt=0 if node["kind"] == HIVEMIND else task["attempts"],
                ),
                metadata=self._metadata_for(node),
                timeout=self._deadline,
            )
            problem = "" if reply.success else reply.message
        except grpc.aio.AioRpcError as exc:
            problem = f"{exc.code().name}: {exc.details() or ''}"
        except FileNotFoundError:
            await self._set_if(
                task_id,
                "ASSIGNED",
                status="FAILED",
                message="the task zip is missing on the pool",
                finished_at=self._clock(),
            )
            return
        if not problem:
            now = self._clock()
            await self._set_if(task_id, "ASSIGNED", status="RUNNING", started_at=now, message="")
            log.info("task %s running on %s", task_id, node["node_id"])
            return
        log.warning("node %s did not take task %s: %s", node["node_id"], task_id, problem)
        # A refusal is not an attempt: the task never ran. The next pass (within a tick) tries again.
        await self._set_if(
            task_id,
            "ASSIGNED",
            status="PENDING",
            worker="",
            attempts=task["attempts"] - 1,
            message=f"waiting: node {node['node_id']} did not take it ({problem[:200]})",
        )

    # -- lost workers, restarts, stops -----------------------------------------------------------
    async def reclaim_lost(self) -> None:
        """Tasks on workers that went silent: re-queued up to the retry limit, then FAILED. Only those rows are
        read: the tasks on online nodes are left out by the index, not by a walk over every running task."""
        online = [n["node_id"] for n in await self._nodes.all() if self._nodes.is_online(n)]
        lost = await self._storage.fetchall(
            "SELECT * FROM tasks WHERE status IN ('ASSIGNED', 'RUNNING') "
            "AND worker NOT IN (SELECT value FROM json_each(?))",
            (json.dumps(online),),
        )
        for task in lost:
            await self._requeue(task, f"worker {task['worker'] or '?'} lost", fail_words="worker lost")

    async def reconcile(self, node_id: str, reported: dict[str, int]) -> list[str]:
        """Compare a heartbeat's task list with what the pool expects on that node.

        A RUNNING task the node does not report is re-queued (an attempt; FAILED "worker lost" past the
        retry limit), unless it started too recently for this heartbeat to know of it. A task the node
        reports that the pool does not expect there, or at another attempt, is returned: the worker stops it.
        """
        expected = {row["task_id"]: row for row in await self._active_on(node_id)}
        now = self._clock()
        for task_id, row in expected.items():
            started = row["started_at"] or now
            if task_id not in reported and row["status"] == "RUNNING" and now - started > RECONCILE_GRACE:
                await self._requeue(row, f"worker {node_id} no longer runs it", fail_words="worker lost")
        stop = [
            task_id
            for task_id, attempt in reported.items()
            if task_id not in expected or (attempt and attempt != expected[task_id]["attempts"])
        ]
        if stop:
            log.info("node %s runs %d task(s) the pool does not expect there: stopping them", node_id, len(stop))
        return stop

    async def _active_on(self, node_id: str) -> list[aiosqlite.Row]:
        return await self._storage.fetchall(
            "SELECT * FROM tasks WHERE worker = ? AND status IN ('ASSIGNED', 'RUNNING')", (node_id,)
        )

    async def requeue_node(self, node_id: str, held: dict[str, int]) -> None:
        """A node's worker process was replaced: what ran there is gone, except results it still holds."""
        for row in await self._active_on(node_id):
            if held.get(row["task_id"]) != row["attempts"]:
                await self._requeue(row, f"worker {node_id} restarted", fail_words="worker lost")

    async def probe_instance(self, node: aiosqlite.Row) -> str | None:
        """The instance id of the worker process answering at a node's address, None if none answers."""
        try:
            reply = await self._stub(node).StopTaskExecution(
                pb.StopTaskExecutionRequest(task_id=""), metadata=self._metadata_for(node), timeout=PROBE_TIMEOUT
            )
        except grpc.aio.AioRpcError:
            return None
        words = reply.message.split()
        return words[1] if len(words) == 2 and words[0] == "instance" else None

    async def requeue_after_restart(self) -> None:
        """At start: what was running when the pool stopped goes back to the queue (or FAILED)."""
        running = await self._storage.fetchall("SELECT * FROM tasks WHERE status IN ('ASSIGNED', 'RUNNING')")
        nodes = {n["node_id"]: n for n in await self._nodes.all()}
        for task in running:
            await self._requeue(task, "pool restarted", fail_words="pool restarted")
            node = nodes.get(task["worker"])
            if node is not None:
                # The old run must not go on beside the new one.
                with contextlib.suppress(grpc.aio.AioRpcError):
                    await self._stub(node).StopTaskExecution(
                        pb.StopTaskExecutionRequest(task_id=task["task_id"]),
                        metadata=self._metadata_for(node),
                        timeout=2.0,
                    )

    async def stop_on_worker(self, task: aiosqlite.Row) -> None:
        """Ask the task's worker to stop it; if the worker cannot be reached, the task is STOPPED here."""
        node = await self._nodes.node(task["worker"]) if task["worker"] else None
        reached = False
        if node is not None:
            try:
                reply = await self._stub(node).StopTaskExecution(
                    pb.StopTaskExecutionRequest(task_id=task["task_id"]),
                    metadata=self._metadata_for(node),
                    timeout=self._deadline,
                )
                reached = reply.success
            except grpc.aio.AioRpcError as exc:
                log.warning("stop of %s on %s failed: %s", task["task_id"], task["worker"], exc.code().name)
        if not reached:
            await self._set_if(
                task["task_id"], task["status"], status="STOPPED", message="stopped", finished_at=self._clock()
            )

    async def _requeue(self, task: aiosqlite.Row, why: str, fail_words: str) -> None:
        status = task["status"]
        if task["attempts"] > self._retry_limit:
            await self._set_if(
                task["task_id"],
                status,
                status="FAILED",
                worker="",
                finished_at=self._clock(),
                message=f"{fail_words} after {task['attempts']} attempt(s)",
            )
        elif await self._set_if(task["task_id"], status, status="PENDING", worker="", message=f"re-queued: {why}"):
            # The next attempt's output offsets count from 0 again: its output starts after this line.
            size = await self._storage.append_log(task["task_id"], f"[hivemind] re-queued: {why}\n")
            await self._set_if(task["task_id"], "PENDING", log_base=size)

    async def _set_if(self, task_id: str, expected: str, /, **values: object) -> bool:
        """Update a task only if its status is still `expected` (another event may have moved it)."""
        sets = ", ".join(f"{k} = ?" for k in values)
        async with self._storage.write() as conn:
            cursor = await conn.execute(
                f"UPDATE tasks SET {sets}, updated_at = ? WHERE task_id = ? AND status = ?",  # noqa: S608
                (*values.values(), self._clock(), task_id, expected),
            )
            return cursor.rowcount == 1

    def _pushable(self, node: aiosqlite.Row) -> bool:
        return pushes_to(node["address"]) if self._compat else True

    def _metadata_for(self, node: aiosqlite.Row) -> tuple[tuple[str, str], ...]:
        """Our workers get the worker secret; a HiveMind worker expects nothing (and must not see it)."""
        return () if node["kind"] == HIVEMIND else self._metadata

    def _stub(self, node: aiosqlite.Row) -> pb_grpc.WorkerNodeServiceAsyncStub:
        host = node["address"]
        target = f"[{host}]:{node['port']}" if ":" in host else f"{host}:{node['port']}"
        key = f"{target} {node['node_id']} {node['kind']}"
        known = self._channels.get(key)
        if known is not None:
            return known[1]
        # A HiveMind worker serves plaintext only.
        if self._worker_tls is None or node["kind"] == HIVEMIND:
            channel = grpc.aio.insecure_channel(target, options=self._channel_options)
        else:
            options = [*self._channel_options, ("grpc.ssl_target_name_override", worker_name(node["node_id"]))]
            channel = grpc.aio.secure_channel(target, self._worker_tls, options=options)
        stub = pb_grpc.WorkerNodeServiceStub(channel)
        self._channels[key] = (channel, stub)
        return stub
