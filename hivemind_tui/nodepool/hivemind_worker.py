"""`worker --hivemind`: our worker for a HiveMind pool, speaking HiveMind's worker protocol as its own worker does.

- It logs in as a HiveMind user (Login) and is the node named after that user.
- It registers with `hostname` = an IP the pool can dial: HiveMind dials the host name it is sent, not the
  address the call came from, and never dials 127.0.0.1. The first registration carries the JWT in
  `authorization: Bearer` metadata; it registers again every 30 s without one.
- Heartbeats are ReportStatus (status `Idle`, the running count) and TaskUsage("0") with the user name as token.
- Output and results carry the JWT (in `token` and in metadata), and no offsets, attempts or exit codes:
  HiveMind's wire has none. The result zip says how the task ended in `execution_log.txt`, as theirs does.
- ExecuteTask and StopTaskExecution are taken only from the pool's address: HiveMind sends no worker secret.

The same worker serves our pool when it runs `pool serve --accept-hivemind-workers`. The sandbox, limits and
result spool are our worker's own, in both cases.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import grpc
import psutil

from hivemind_tui.core.errors import NotAuthenticatedError
from hivemind_tui.core.hosts import is_loopback
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.nodepool.capacity import memory_gb
from hivemind_tui.nodepool.hivemind_result import execution_log, with_execution_log
from hivemind_tui.nodepool.hivemind_workers import NODE_REPORT
from hivemind_tui.nodepool.nodes import peer_host
from hivemind_tui.nodepool.result_spool import SpooledResult
from hivemind_tui.nodepool.worker import Worker, WorkerConfig
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

# What this mode gives up, compared with our own pool; logged at every start.
WEAKER = (
    "no worker secret: ExecuteTask is taken from any process at the pool's address",
    "plaintext gRPC: task zips and results cross the network unencrypted (put the pool and this worker on the VPN)",
    "no attempts: a late result of a run the pool gave up on is not told from the current run's",
    "no reconciliation: a task lost here is noticed only when this worker stops heartbeating",
    "no exit codes on the wire: the pool learns only Success or Failed, from execution_log.txt",
)
REREGISTER_EVERY = 30.0
# HiveMind's dispatcher writes RUNNING after ExecuteTask returns, over whatever is there: a result that lands
# first is overwritten, and the task stays RUNNING for good. A result waits this long after its ExecuteTask.
RESULT_AFTER_ACCEPT = 1.0


@dataclass(frozen=True)
class HivemindLogin:
    username: str
    password: str = field(repr=False)
    # The IP sent as `hostname`, which the pool dials.
    hostname: str
    # The pool's addresses: ExecuteTask and StopTaskExecution are taken from these only.
    pool_hosts: frozenset[str]


class HivemindWorker(Worker):
    def __init__(self, config: WorkerConfig, login: HivemindLogin) -> None:
        super().__init__(config)
        self.login = login
        self._token = ""
        self._registered_at = 0.0
        self._accepted_at: dict[str, float] = {}

    async def _before_heartbeats(self) -> None:
        assert self._channel is not None
        reply = await pb_grpc.UserServiceStub(self._channel).Login(
            pb.LoginRequest(username=self.login.username, password=self.login.password),
            timeout=self.config.rpc_deadline,
        )
        if not reply.success or not reply.token:
            raise NotAuthenticatedError(f"the pool refused the login of {self.login.username}: {reply.message}")
        register_secret(reply.token)
        self._token = reply.token
        for weaker in WEAKER:
            log.warning("HiveMind mode, weaker than with our pool: %s", weaker)

    @property
    def _report_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),)

    def refusal(self, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        host = peer_host(context.peer())
        pool_hosts = self.login.pool_hosts
        # A pool on any loopback address dials from 127.0.0.1, where loopback connections leave from.
        if host in pool_hosts or (host == "127.0.0.1" and any(is_loopback(h) for h in pool_hosts)):
            return ""
        log.warning("refused a call from %s: not the pool's address", host)
        return "PERMISSION_DENIED: this worker takes tasks from its pool's address only"

    # -- the rpcs the pool calls, in HiveMind's words -------------------------------------------------
    async def execute(self, task_id: str, task_zip: bytes, memory_gb: int, attempt: int = 0) -> tuple[bool, str]:
        ok, message = await super().execute(task_id, task_zip, memory_gb, 0)
        if ok:
            self._accepted_at[task_id] = time.monotonic()
            return True, f"任務 {task_id} 已接受並開始準備執行 (檔案大小: {len(task_zip) / 1048576:.1f}MB)"
        if message.startswith("BUSY"):
            return False, f"資源不足，拒絕任務 {task_id}"
        return False, message

    def stop_task(self, task_id: str) -> tuple[bool, str]:
        if self.stop(task_id):
            return True, f"Stop signal sent to task {task_id}"
        return False, f"Task {task_id} not running"

    # -- calls to the pool ------------------------------------------------------------------------
    def _output_request(self, task_id: str, text: str, offset: int, attempt: int) -> pb.TaskOutputUploadRequest:
        return pb.TaskOutputUploadRequest(task_id=task_id, output=text, token=self._token)

    def _result_request(self, result: SpooledResult) -> pb.TaskResultUploadRequest:
        return pb.TaskResultUploadRequest(task_id=result.task_id, result_zip=result.result_zip, token=self._token)

    async def _send_result(self, task_id: str, result_zip: bytes, exit_code: int, reason: str, output: str) -> None:
        accepted = self._accepted_at.pop(task_id, 0.0)
        await asyncio.sleep(max(0.0, accepted + RESULT_AFTER_ACCEPT - time.monotonic()))
        text = execution_log(task_id, exit_code, reason == "stopped", self.login.username)
        zipped = await asyncio.to_thread(with_execution_log, result_zip, text)
        await super()._send_result(task_id, zipped, exit_code, reason, output)

    # -- registration and heartbeats --------------------------------------------------------------
    async def _register(self) -> bool:
        request = pb.RegisterWorkerNodeRequest(
            node_id=self.login.username,
            hostname=self.login.hostname,
            port=self.port,
            cpu_cores=psutil.cpu_count() or 1,
            memory_gb=memory_gb(),
            cpu_score=self._cpu_score,
            gpu_name="Not Detected",
            location="Unknown",
            docker_status="unavailable",
        )
        first = not self._registered_at
        reply = await self._nodes.RegisterWorkerNode(
            request, metadata=self._report_metadata if first else (), timeout=self.config.rpc_deadline
        )
        if not reply.success:
            log.error("registration refused: %s", reply.message)
            self.give_up(reply.message)
            return False
        self._registered_at = time.monotonic()
        return True

    async def _beat(self) -> pb.RunningStatusResponse:
        if time.monotonic() - self._registered_at >= REREGISTER_EVERY and not await self._register():
            return pb.RunningStatusResponse(success=False, message="refused")
        cpu, memory = psutil.cpu_percent(None), psutil.virtual_memory().percent
        reply = await self._nodes.ReportStatus(
            pb.RunningStatusRequest(
                node_id=self.login.username,
                status="Idle",
                cpu_usage=cpu,
                memory_usage=memory,
                docker_status="unavailable",
                running_tasks=len(self.runs),
            ),
            timeout=self.config.rpc_deadline,
        )
        for task_id in (NODE_REPORT, *self.runs):
            await self._pool.TaskUsage(
                pb.TaskUsageRequest(task_id=task_id, cpu_usage=cpu, memory_usage=memory, token=self.login.username),
                timeout=self.config.rpc_deadline,
            )
        if not reply.success:
            # The pool forgot the node: register again (the loop does on NODE_NOT_FOUND), as a first time.
            self._registered_at = 0.0
            return pb.RunningStatusResponse(success=False, message=f"NODE_NOT_FOUND: {reply.message}")
        return pb.RunningStatusResponse(success=True)
