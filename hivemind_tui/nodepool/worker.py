"""The worker process: registers with a pool, heartbeats, and runs the tasks the pool sends it.

It serves the worker half of WorkerNodeService (ExecuteTask, StopTaskExecution) and checks the pool's
worker secret on each call; it calls the pool's half (output, result) with the same secret. When the pool
is away, heartbeats and reports retry with backoff; running tasks go on.

Each process has its own instance id. Heartbeats carry the tasks it runs (and the unsent results it holds,
see result_spool), so the pool re-queues what it lost and tells it to stop what the pool no longer expects;
every report names the attempt it belongs to, and the pool refuses those of an attempt that is over.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import logging
import os
import secrets
import socket
import tempfile
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TypeVar

import grpc
import psutil

from hivemind_tui.core.datadir import make_private_dir
from hivemind_tui.core.retry import Backoff, retry
from hivemind_tui.core.tls_probe import ChannelSecurity
from hivemind_tui.core.tls_setup import channel_credentials, secure_options
from hivemind_tui.core.zipsafe import ZipRejected
from hivemind_tui.nodepool.capacity import cached_cpu_score, memory_gb, read_gpu
from hivemind_tui.nodepool.result_spool import ResultSpool, SpooledResult
from hivemind_tui.nodepool.sandbox import Sandbox
from hivemind_tui.nodepool.servicers import (
    NODE_ID_HEADER,
    WORKER_SECRET_HEADER,
    bind,
    metadata,
    new_server,
    not_served_here,
)
from hivemind_tui.nodepool.task_runner import RunSettings, TaskRun, prepare_base_dir
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

T = TypeVar("T")
REPORT_ATTEMPTS = 60
MAX_BACKOFF = 10.0


@dataclass(frozen=True)
class WorkerConfig:
    pool_address: str
    node_id: str
    listen: str
    slots: int
    secret: str = field(repr=False)
    heartbeat_interval: float
    rpc_deadline: float
    transfer_deadline: float
    channel_options: list[tuple[str, int]]
    cpu_score_cache: Path
    run: RunSettings
    # TLS to the pool (its CA, and this worker's certificate for mutual TLS); None: plaintext.
    pool_tls: ChannelSecurity | None = None
    # (certificate, key) this worker serves ExecuteTask with; a TLS pool dials only TLS workers.
    serve_tls: tuple[bytes, bytes] | None = None
    # Where results wait that the pool has not taken yet; None keeps them in memory only.
    spool_dir: Path | None = None


def default_node_id(state_dir: Path) -> str:
    """Host name plus a short suffix kept in the data dir: a restarted worker is the same node."""
    path = state_dir / "node-suffix"
    try:
        suffix = path.read_text().strip()
    except FileNotFoundError:
        suffix = ""
    if not suffix:
        suffix = os.urandom(3).hex()
        state_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path.write_text(suffix)
    return f"{socket.gethostname()}-{suffix}"


def is_wildcard(host: str) -> bool:
    """An address that means "every address here": it tells no one where to dial."""
    return host.strip("[]") in ("", "0.0.0.0", "::")  # noqa: S104 - recognising wildcards, not binding


def advertised_host(listen: str) -> str:
    """The host the pool should dial; a wildcard listen address says nothing, so the pool uses the peer's."""
    host = listen.rpartition(":")[0].strip("[]")
    return "" if is_wildcard(host) else host


def task_base_dir(node_id: str, state_dir: Path, sandbox: Sandbox) -> Path:
    """Where this node's task folders live: `DATA_DIR/worker/runs/NODE` (0700) where a task never needs to
    walk the path to its folder (bwrap mounts it, or tasks run as the worker's own user); else the system's
    temp dir, since a task with its own uid must pass through every folder above its own."""
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in node_id)
    if sandbox.bwrap is not None or sandbox.uids is None:
        make_private_dir(state_dir / "runs")
        return state_dir / "runs" / safe
    return Path(tempfile.gettempdir()) / f"hivemind-worker-{safe}"


def pool_channel(address: str, security: ChannelSecurity | None, options: list[tuple[str, int]]) -> grpc.aio.Channel:
    if security is None:
        return grpc.aio.insecure_channel(address, options=options)
    return grpc.aio.secure_channel(
        address, channel_credentials(security), options=[*options, *secure_options(security)]
    )


def _code(error: BaseException) -> str:
    return error.code().name if isinstance(error, grpc.aio.AioRpcError) else type(error).__name__


class WorkerServicer(pb_grpc.WorkerNodeServiceServicer):
    """The worker's half of WorkerNodeService; the reports (output, usage, results) are the pool's half."""

    def __init__(self, worker: Worker) -> None:
        self._worker = worker

    async def TaskOutputUpload(
        self, request: pb.TaskOutputUploadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskOutputUploadResponse:
        await not_served_here(context)

    async def TaskOutput(
        self, request: pb.TaskOutputRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskOutputResponse:
        await not_served_here(context)

    async def TaskResultUpload(
        self, request: pb.TaskResultUploadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskResultUploadResponse:
        await not_served_here(context)

    async def TaskUsage(
        self, request: pb.TaskUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskUsageResponse:
        await not_served_here(context)

    async def ExecuteTask(
        self, request: pb.ExecuteTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExecuteTaskResponse:
        refusal = self._worker.refusal(context)
        if refusal:
            return pb.ExecuteTaskResponse(success=False, message=refusal)
        ok, message = await self._worker.execute(request.task_id, request.task_zip, request.memory_gb, request.attempt)
        return pb.ExecuteTaskResponse(success=ok, message=message)

    async def StopTaskExecution(
        self, request: pb.StopTaskExecutionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StopTaskExecutionResponse:
        refusal = self._worker.refusal(context)
        if refusal:
            return pb.StopTaskExecutionResponse(success=False, message=refusal)
        if not request.task_id:  # the pool asking whether this process lives (a node re-registered)
            return pb.StopTaskExecutionResponse(success=True, message=f"instance {self._worker.instance_id}")
        stopped, message = self._worker.stop_task(request.task_id)
        return pb.StopTaskExecutionResponse(success=stopped, message=message)


class Worker:
    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.port = 0
        self.runs: dict[str, TaskRun] = {}
        self._server: grpc.aio.Server | None = None
        self._channel: grpc.aio.Channel | None = None
        self._heartbeat: asyncio.Task[None] | None = None
        self._run_tasks: set[asyncio.Task[None]] = set()
        self._metadata = ((WORKER_SECRET_HEADER, config.secret), (NODE_ID_HEADER, config.node_id))
        self._cpu_score = 0
        self._sent: dict[str, int] = {}
        self.instance_id = secrets.token_hex(8)
        self.attempts: dict[str, int] = {}
        self._spool = ResultSpool(config.spool_dir) if config.spool_dir else None
        # Results not yet taken by the pool: task id -> attempt (their bytes are in the spool).
        self.held: dict[str, int] = {}
        self._resending: asyncio.Task[None] | None = None
        # Set when the pool refuses this process for good (another live worker has its node id).
        self.fatal = asyncio.Event()
        self.fatal_reason = ""
        self._base_lock: int | None = None

    async def start(self) -> int:
        self._base_lock = await asyncio.to_thread(prepare_base_dir, self.config.run.base_dir)
        if self._spool is not None:
            self.held = {r.task_id: r.attempt for r in await asyncio.to_thread(self._spool.all)}
        self._cpu_score = await asyncio.to_thread(cached_cpu_score, self.config.cpu_score_cache)
        psutil.cpu_percent(None)  # primes the counter; later calls measure since the previous one
        self._server = new_server(self.config.channel_options)
        pb_grpc.add_WorkerNodeServiceServicer_to_server(WorkerServicer(self), self._server)
        serving = None
        if self.config.serve_tls is not None:
            cert, key = self.config.serve_tls
            serving = grpc.ssl_server_credentials([(key, cert)])
        self.port = bind(self._server, self.config.listen, serving)
        await self._server.start()
        self._channel = pool_channel(self.config.pool_address, self.config.pool_tls, self.config.channel_options)
        await self._before_heartbeats()
        self._heartbeat = asyncio.create_task(self._heartbeat_loop())
        log.info("worker %s listening on port %d for pool %s", self.config.node_id, self.port, self.config.pool_address)
        return self.port

    async def _before_heartbeats(self) -> None:
        """Our worker needs nothing more; a HiveMind-style one logs in here."""

    def refusal(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """Why a call to ExecuteTask or StopTaskExecution is refused ("": it is not): the pool's secret."""
        given = metadata(context, WORKER_SECRET_HEADER)
        if given and hmac.compare_digest(given.encode(), self.config.secret.encode()):
            return ""
        return "PERMISSION_DENIED: worker secret missing or wrong"

    async def close(self) -> None:
        """Stop heartbeating, kill running tasks (they are reported as failed), stop serving."""
        for background in (self._heartbeat, self._resending):
            if background is not None:
                background.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await background
        for run in self.runs.values():
            run.stop()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(asyncio.gather(*self._run_tasks, return_exceptions=True), 10.0)
        if self._server is not None:
            await self._server.stop(1.0)
        if self._channel is not None:
            await self._channel.close()
        if self._base_lock is not None:
            os.close(self._base_lock)

    # -- the rpcs the pool calls ------------------------------------------------------------------
    async def execute(self, task_id: str, task_zip: bytes, memory_gb: int, attempt: int = 0) -> tuple[bool, str]:
        if task_id in self.runs:
            return False, "TASK_EXISTS: already running here"
        self.attempts[task_id] = attempt
        if self._slots_in_use() >= self.config.slots:
            return False, "BUSY: no free slot"
        run = TaskRun(task_id, task_zip, memory_gb, self.config.run, self._send_output, self._send_result)
        self.runs[task_id] = run
        try:
            await run.start()
        except (ZipRejected, OSError, KeyError) as exc:
            del self.runs[task_id]
            self.attempts.pop(task_id, None)
            return False, f"INVALID_TASK: {exc}"
        task = asyncio.create_task(self._run(run))
        self._run_tasks.add(task)
        task.add_done_callback(self._run_tasks.discard)
        log.info("task %s started", task_id)
        return True, "ok"

    def _slots_in_use(self) -> int:
        return sum(not run.ended for run in self.runs.values())

    async def _run(self, run: TaskRun) -> None:
        try:
            await run.run()
        except Exception:
            log.exception("task %s: the run failed", run.task_id)
        finally:
            self.runs.pop(run.task_id, None)
            self._sent.pop(run.task_id, None)
            self.attempts.pop(run.task_id, None)

    def stop(self, task_id: str) -> bool:
        run = self.runs.get(task_id)
        if run is None:
            return False
        run.stop()
        log.info("task %s stopped", task_id)
        return True

    def stop_task(self, task_id: str) -> tuple[bool, str]:
        stopped = self.stop(task_id)
        return stopped, "ok" if stopped else "TASK_NOT_FOUND"

    # -- calls to the pool ------------------------------------------------------------------------
    @property
    def _pool(self) -> pb_grpc.WorkerNodeServiceAsyncStub:
        assert self._channel is not None
        return pb_grpc.WorkerNodeServiceStub(self._channel)

    @property
    def _nodes(self) -> pb_grpc.NodeManagerServiceAsyncStub:
        assert self._channel is not None
        return pb_grpc.NodeManagerServiceStub(self._channel)

    # What the reports carry, and with which metadata; a HiveMind-style worker sends its own (hivemind_worker.py).
    def _output_request(self, task_id: str, text: str, offset: int, attempt: int) -> pb.TaskOutputUploadRequest:
        return pb.TaskOutputUploadRequest(task_id=task_id, output=text, offset=offset, attempt=attempt)

    def _result_request(self, result: SpooledResult) -> pb.TaskResultUploadRequest:
        return pb.TaskResultUploadRequest(
            task_id=result.task_id,
            result_zip=result.result_zip,
            exit_code=result.exit_code,
            failure_reason=result.reason,
            attempt=result.attempt,
        )

    @property
    def _report_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata

    async def _send_output(self, task_id: str, text: str) -> None:
        """Send a chunk with its offset: a retry after a lost answer is not appended twice."""
        offset = self._sent.get(task_id, 0)
        await self._output_taken(self._output_request(task_id, text, offset, self.attempts.get(task_id, 0)))
        self._sent[task_id] = offset + len(text.encode("utf-8"))

    async def _output_taken(self, request: pb.TaskOutputUploadRequest, attempts: int = REPORT_ATTEMPTS) -> bool:
        """Whether the pool answered (took it, or refused it for good) within `attempts` tries."""
        call = self._pool.TaskOutputUpload
        reply = await self._with_retry(
            lambda: call(request, metadata=self._report_metadata, timeout=self.config.rpc_deadline), attempts
        )
        return reply is not None

    async def _send_result(self, task_id: str, result_zip: bytes, exit_code: int, reason: str, output: str) -> None:
        """Keep the result and the output the pool has not taken (spool) first, then hand them over; what the
        pool never took is sent again later."""
        result = SpooledResult(
            task_id, self.attempts.get(task_id, 0), exit_code, reason, result_zip, output, self._sent.get(task_id, 0)
        )
        if self._spool is not None:
            await asyncio.to_thread(self._spool.put, result)
        self.held[task_id] = result.attempt
        await self._upload(result, REPORT_ATTEMPTS)

    async def _upload(self, result: SpooledResult, attempts: int) -> None:
        if result.output:
            output = self._output_request(result.task_id, result.output, result.output_offset, result.attempt)
            if not await self._output_taken(output, attempts):
                log.warning("task %s: the pool did not take its last output; it is kept and sent again", result.task_id)
                return
            result = replace(result, output="")
            if self._spool is not None:
                await asyncio.to_thread(self._spool.put, result)
        request = self._result_request(result)
        reply = await self._with_retry(
            lambda: self._pool.TaskResultUpload(
                request, metadata=self._report_metadata, timeout=self.config.transfer_deadline
            ),
            attempts,
        )
        if reply is None:
            log.warning("task %s: the pool did not take the result; it is kept and sent again", result.task_id)
            return
        log.info("task %s reported (exit %d): %s", result.task_id, result.exit_code, reply.message)
        self._forget_result(result.task_id)

    def _forget_result(self, task_id: str) -> None:
        """The pool took the result, or refused it for good (a stale attempt, a task it no longer runs)."""
        self.held.pop(task_id, None)
        if self._spool is not None:
            self._spool.remove(task_id)

    async def _resend_held(self) -> None:
        """After a heartbeat went through: results the pool has not taken, one at a time."""
        if self._spool is None:
            return
        for result in await asyncio.to_thread(self._spool.all):
            if result.task_id in self.held and result.task_id not in self.runs:
                await self._upload(result, 3)

    def _stop_unexpected(self, task_ids: Sequence[str]) -> None:
        for task_id in task_ids:
            if task_id in self.runs:
                log.info("task %s: the pool no longer expects it here; stopping it", task_id)
                self.runs[task_id].stop()
            elif task_id in self.held:
                log.info("task %s: the pool no longer expects its result; dropping it", task_id)
                self._forget_result(task_id)

    async def _with_retry(self, call: Callable[[], Awaitable[T]], attempts: int = REPORT_ATTEMPTS) -> T | None:
        """Retry while the pool is unreachable or overloaded; give up after REPORT_ATTEMPTS tries.

        A refusal comes back as success=false, never as an rpc error, so every rpc error is worth a retry.
        """
        return await retry(
            call,
            Backoff(base=0.2, cap=MAX_BACKOFF),
            attempts,
            grpc.aio.AioRpcError,
            on_retry=lambda error: log.warning("report to the pool failed (%s); retrying", _code(error)),
        )

    # -- registration and heartbeats --------------------------------------------------------------
    async def _register(self) -> bool:
        gpu = await asyncio.to_thread(read_gpu)
        request = pb.RegisterWorkerNodeRequest(
            node_id=self.config.node_id,
            hostname=socket.gethostname(),
            cpu_cores=psutil.cpu_count() or 1,
            memory_gb=memory_gb(),
            cpu_score=self._cpu_score,
            gpu_score=0 if gpu is None else 1000,
            gpu_memory_gb=0 if gpu is None else gpu.memory_gb,
            gpu_name="" if gpu is None else gpu.name,
            port=self.port,
            docker_status="n/a",
            slots=self.config.slots,
            advertise_host=advertised_host(self.config.listen),
            instance_id=self.instance_id,
            isolation=self.config.run.sandbox.describe(),
            held=[pb.RunningTask(task_id=t, attempt=a) for t, a in self.held.items()],
        )
        reply = await self._nodes.RegisterWorkerNode(request, metadata=self._metadata, timeout=self.config.rpc_deadline)
        if not reply.success:
            log.error("registration refused: %s", reply.message)
            if reply.message.startswith("NODE_IN_USE"):
                self.give_up(reply.message.removeprefix("NODE_IN_USE: "))
        return reply.success

    def give_up(self, reason: str) -> None:
        """The pool refused this process for good: the worker command ends with `reason`."""
        self.fatal_reason = reason
        self.fatal.set()

    async def _beat(self) -> pb.RunningStatusResponse:
        gpu = await asyncio.to_thread(read_gpu)
        running = self._slots_in_use()
        return await self._nodes.ReportStatus(
            pb.RunningStatusRequest(
                node_id=self.config.node_id,
                status="BUSY" if running >= self.config.slots else "Idle",
                cpu_usage=psutil.cpu_percent(None),
                memory_usage=psutil.virtual_memory().percent,
                gpu_usage=0.0 if gpu is None else gpu.usage,
                gpu_memory_usage=0.0 if gpu is None else gpu.memory_usage,
                docker_status="n/a",
                running_tasks=running,
                running=[pb.RunningTask(task_id=t, attempt=self.attempts.get(t, 0)) for t in self.runs]
                + [pb.RunningTask(task_id=t, attempt=a) for t, a in self.held.items() if t not in self.runs],
                instance_id=self.instance_id,
                reconciles=True,
            ),
            metadata=self._metadata,
            timeout=self.config.rpc_deadline,
        )

    async def _heartbeat_loop(self) -> None:
        registered = False
        interval = self.config.heartbeat_interval
        backoff = Backoff(base=interval, cap=max(MAX_BACKOFF, interval))
        while True:
            try:
                if not registered:
                    registered = await self._register()
                if registered:
                    reply = await self._beat()
                    registered = reply.success or not reply.message.startswith("NODE_NOT_FOUND")
                    self._stop_unexpected(reply.stop_task_ids)
                    if self.held and (self._resending is None or self._resending.done()):
                        self._resending = asyncio.create_task(self._resend_held())
                backoff.reset()
                delay = interval
            except grpc.aio.AioRpcError as exc:
                delay = backoff.next_delay()
                log.warning("pool unreachable (%s); retrying in %.1f s", exc.code().name, delay)
            await asyncio.sleep(delay)
