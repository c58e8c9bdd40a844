"""The gRPC face of the pool: thin servicers that turn protobuf into calls on the pool's parts and back.

A refusal (`PoolRefusal`) becomes `success=false` with its `CODE: words` message, as HiveMind clients
expect; only a broken request or an internal error becomes a gRPC status.
"""

from __future__ import annotations

import functools
import hmac
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, NoReturn, TypeVar, cast

import grpc

from hivemind_tui import __version__
from hivemind_tui.core import upload_chunks
from hivemind_tui.core.clock import Clock
from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.accounts import Accounts, Caller
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.hivemind_imitation import HivemindImitation
from hivemind_tui.nodepool.hivemind_workers import (
    HIVEMIND,
    HIVEMIND_ISOLATION,
    NODE_REPORT,
    OURS,
    HivemindWorkers,
    bearer,
    dial_host,
)
from hivemind_tui.nodepool.joining import JoinDesk
from hivemind_tui.nodepool.ledger import Ledger
from hivemind_tui.nodepool.nodes import NodeRegistry, Registration, peer_host
from hivemind_tui.nodepool.reports import TaskReports
from hivemind_tui.nodepool.tasks import KEY_COLUMNS, NewTask, TaskBook
from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

WORKER_SECRET_HEADER = "x-hivemind-worker-secret"
NODE_ID_HEADER = "x-hivemind-node-id"
EXTENSIONS = (
    "Logout",
    "GetNodeList",
    "SetNodeState",
    "GetTasklogSince",
    "Health",
    "UploadTaskStream",
    "StopTasks",
    "task-fields",
    "updated_since",
    "roles",
    "worker-secret",
    "ASSIGNED",
)

R = TypeVar("R")
# Ids one StopTasks call may carry; a client sends a long list in batches of this size.
MAX_STOP_BATCH = 1000


@dataclass
class PoolParts:
    """Everything the servicers need; built once by the server."""

    accounts: Accounts
    ledger: Ledger
    tasks: TaskBook
    nodes: NodeRegistry
    reports: TaskReports
    worker_secret: str
    clock: Clock
    join: JoinDesk | None = None
    # Who a worker without our secret is (--accept-hivemind-workers, --hivemind-compat); None: nobody.
    hivemind: HivemindWorkers | None = None
    # The scheduler's reconciliation of a heartbeat's task list: the ids the worker should stop.
    reconcile: Callable[[str, dict[str, int]], Awaitable[list[str]]] | None = None


def refusals_as(response: type) -> Callable[[Callable[..., Awaitable[Any]]], Callable[..., Awaitable[Any]]]:
    """Answer a PoolRefusal with `response(success=False, message=...)`."""

    def wrap(method: Callable[..., Awaitable[Any]]) -> Callable[..., Awaitable[Any]]:
        @functools.wraps(method)
        async def handler(self: Any, request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
            try:
                return await method(self, request, context)
            except PoolRefusal as refusal:
                return response(success=False, message=refusal.message)

        return handler

    return wrap


def metadata(context: grpc.aio.ServicerContext[Any, Any], key: str) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == key:
            return value if isinstance(value, str) else value.decode()
    return ""


async def not_served_here(context: grpc.aio.ServicerContext[Any, Any]) -> NoReturn:
    """WorkerNodeService has two halves: the pool serves the reports, a worker serves ExecuteTask and
    StopTaskExecution. Each side answers the other half UNIMPLEMENTED, as the generated base class would."""
    await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")


class _Base:
    def __init__(self, parts: PoolParts) -> None:
        self.p = parts

    async def caller(self, token: str) -> Caller:
        return await self.p.accounts.authenticate(token)

    def has_secret(self, context: grpc.aio.ServicerContext[Any, Any]) -> bool:
        given = metadata(context, WORKER_SECRET_HEADER)
        return bool(given) and hmac.compare_digest(given.encode(), self.p.worker_secret.encode())

    def tells_outcomes(self, context: grpc.aio.ServicerContext[Any, Any]) -> bool:
        """Our workers (the secret shows which) say how a task ended; a HiveMind worker never does."""
        return self.has_secret(context) and not (self.p.hivemind and self.p.hivemind.compat)

    async def worker(self, context: grpc.aio.ServicerContext[Any, Any], node_id: str = "", task_id: str = "") -> str:
        """The node a worker rpc speaks for: ours show the secret and name themselves in metadata; a
        HiveMind-style one is checked by `hivemind` (empty under compat, where reports pass for any task)."""
        if self.has_secret(context):
            return metadata(context, NODE_ID_HEADER)
        if self.p.hivemind is None:
            raise PoolRefusal(codes.PERMISSION_DENIED, "worker secret missing or wrong")
        return await self.p.hivemind.reporting_node(node_id, task_id, context)


class UserServicer(_Base, pb_grpc.UserServiceServicer):
    @refusals_as(pb.LoginResponse)
    async def Login(self, request: pb.LoginRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.LoginResponse:
        issued = await self.p.accounts.login(request.username, request.password)
        return pb.LoginResponse(
            success=True, message="ok", token=issued.token, role=issued.role, expires_at=issued.expires_at
        )

    @refusals_as(pb.RefreshTokenResponse)
    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RefreshTokenResponse:
        issued = await self.p.accounts.refresh(request.old_token)
        return pb.RefreshTokenResponse(success=True, message="ok", new_token=issued.token, expires_at=issued.expires_at)

    @refusals_as(pb.LogoutResponse)
    async def Logout(self, request: pb.LogoutRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.LogoutResponse:
        await self.p.accounts.logout(request.token)
        return pb.LogoutResponse(success=True, message="ok")

    @refusals_as(pb.GetBalanceResponse)
    async def GetBalance(
        self, request: pb.GetBalanceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetBalanceResponse:
        caller = await self.caller(request.token)
        balance = await self.p.ledger.balance(caller, request.username)
        return pb.GetBalanceResponse(success=True, message="ok", balance=balance)

    @refusals_as(pb.TransferResponse)
    async def Transfer(
        self, request: pb.TransferRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TransferResponse:
        caller = await self.caller(request.token)
        left = await self.p.ledger.transfer(caller, request.receiver_username, request.amount)
        return pb.TransferResponse(success=True, message=f"ok: balance {left}")


def new_task(request: pb.UploadTaskRequest) -> NewTask:
    return NewTask(
        task_id=request.task_id,
        memory_gb=request.memory_gb,
        cpu_score=request.cpu_score,
        gpu_score=request.gpu_score,
        gpu_memory_gb=request.gpu_memory_gb,
        location=request.location,
        gpu_name=request.gpu_name,
        priority=request.priority,
        task_type=request.task_type,
        parent_task_id=request.parent_task_id,
    )


def add_task_infos(response: pb.GetAllTasksResponse, rows: Iterable[Sequence[Any]]) -> None:
    """`TaskBook.list` rows as TaskInfo messages, made in place: building each message apart and then
    copying it into the list cost twice as much, for up to 100,000 tasks in one listing."""
    add = response.tasks.add
    for (
        task_id,
        status,
        message,
        cpu_usage,
        memory_usage,
        gpu_usage,
        gpu_memory_usage,
        worker,
        owner,
        created_at,
        updated_at,
        priority,
        task_type,
        parent_task_id,
        exit_code,
        started_at,
        finished_at,
        _seq,
    ) in rows:
        add(
            task_id=task_id,
            status=status,
            message=message,
            cpu_usage=cpu_usage,
            memory_usage=memory_usage,
            gpu_usage=gpu_usage,
            gpu_memory_usage=gpu_memory_usage,
            worker_ip=worker,
            owner=owner,
            created_at=created_at,
            updated_at=updated_at,
            priority=priority,
            task_type=task_type,
            parent_task_id=parent_task_id,
            exit_code=exit_code,
            started_at=started_at,
            finished_at=finished_at,
        )


class TaskInfoBytes:
    """Each listed task's TaskInfo, encoded as an entry of GetAllTasksResponse.tasks, kept while its change
    number stays. A listing reads two columns of each row and joins the bytes of the tasks that did not
    change: reading every column of 100,000 rows and building their messages took 0.45 s of the pool's CPU
    for every `tasks list` or console start. About 230 bytes a task; a pruned task's entry goes with it."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[int, bytes]] = {}

    def forget(self, task_ids: Iterable[str]) -> None:
        for task_id in task_ids:
            self._kept.pop(task_id, None)

    async def listing(self, keys: Sequence[tuple[str, int]], rows_of: Callable[..., Awaitable[Any]]) -> bytes:
        """The `tasks` entries for `keys` (task id, change number), in their order. `rows_of(task_ids)` gives
        LISTED_COLUMNS rows of the tasks whose entry is missing or older; a task gone meanwhile is left out."""
        kept = self._kept
        missing = [task_id for task_id, seq in keys if kept.get(task_id, (-1, b""))[0] != seq]
        rows = await rows_of(missing) if missing else []
        made = pb.GetAllTasksResponse()
        add_task_infos(made, rows)
        for row, info in zip(rows, made.tasks, strict=True):
            message = info.SerializeToString()
            kept[row[0]] = (row[-1], TASKS_FIELD + upload_chunks.varint(len(message)) + message)
        return b"".join(entry[1] for task_id, _ in keys if (entry := kept.get(task_id)) is not None)


# The tag of GetAllTasksResponse.tasks (field 1, length-delimited), the start of each entry.
TASKS_FIELD = bytes([pb.GetAllTasksResponse.TASKS_FIELD_NUMBER << 3 | 2])


def encoded_or_message(reply: Any) -> bytes:
    """GetAllUserTasks' serializer: the bytes `TaskInfoBytes` made as they are, a message as usual."""
    return reply if isinstance(reply, bytes) else cast(bytes, reply.SerializeToString())


class MasterServicer(_Base, pb_grpc.MasterNodeServiceServicer):
    def __init__(self, parts: PoolParts, encoded_listings: bool = True) -> None:
        """`encoded_listings`: GetAllUserTasks answers bytes (`TaskInfoBytes`); a HiveMind-compatible pool,
        whose answers are messages to strip of extensions, does without."""
        super().__init__(parts)
        self._listed = TaskInfoBytes() if encoded_listings else None
        if self._listed is not None:
            parts.tasks.on_removed.append(self._listed.forget)

    @refusals_as(pb.UploadTaskResponse)
    async def UploadTask(
        self, request: pb.UploadTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UploadTaskResponse:
        caller = await self.caller(request.token)
        await self.p.tasks.upload(caller, new_task(request), request.task_zip)
        return pb.UploadTaskResponse(success=True, message="ok")

    @refusals_as(pb.UploadTaskResponse)
    async def UploadTaskStream(
        self, request_iterator: AsyncIterator[upload_chunks.Chunk], context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.UploadTaskResponse:
        first = await anext(aiter(request_iterator), None)
        if first is None or first.header is None:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "the first chunk must carry the request")
        request = first.header
        caller = await self.caller(request.token)

        async def chunks() -> AsyncIterator[bytes | memoryview]:
            yield request.task_zip
            yield first.data
            async for chunk in request_iterator:
                if chunk.header is not None:
                    raise PoolRefusal(codes.INVALID_ARGUMENT, "only the first chunk carries the request")
                yield chunk.data

        await self.p.tasks.upload_stream(caller, new_task(request), chunks())
        return pb.UploadTaskResponse(success=True, message="ok")

    # Bytes are an answer too: its handler's serializer is `encoded_or_message` (add_master_servicer).
    async def GetAllUserTasks(  # type: ignore[override]
        self, request: pb.GetAllUserTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetAllTasksResponse | bytes:
        now = self.p.clock()
        try:
            caller = await self.caller(request.token)
            after = request.after_seq if request.HasField("after_seq") else None
            if self._listed is not None:
                keys, seq = await self.p.tasks.list(caller, request.updated_since, request.limit, after, KEY_COLUMNS)

                async def rows_of(missing: list[str]) -> list[tuple[Any, ...]]:
                    if 2 * len(missing) < len(keys):
                        return await self.p.tasks.listed_rows(missing)
                    # Most of them (a first listing): the listing's own rows in one pass, not by id.
                    rows, _ = await self.p.tasks.list(caller, request.updated_since, request.limit, after)
                    return rows

                entries = await self._listed.listing(keys, rows_of)
                head = pb.GetAllTasksResponse(success=True, message="ok", server_time=now, seq=seq)
                return head.SerializeToString() + entries
            rows, seq = await self.p.tasks.list(caller, request.updated_since, request.limit, after)
        except PoolRefusal as refusal:
            return pb.GetAllTasksResponse(success=False, message=refusal.message, server_time=now)
        response = pb.GetAllTasksResponse(success=True, message="ok", server_time=now, seq=seq)
        add_task_infos(response, rows)
        return response

    @refusals_as(pb.StopTaskResponse)
    async def StopTask(
        self, request: pb.StopTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StopTaskResponse:
        caller = await self.caller(request.token)
        status = await self.p.tasks.stop(caller, request.task_id)
        return pb.StopTaskResponse(success=True, message=f"ok: {status}")

    @refusals_as(pb.StopTasksResponse)
    async def StopTasks(
        self, request: pb.StopTasksRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StopTasksResponse:
        caller = await self.caller(request.token)
        if len(request.task_ids) > MAX_STOP_BATCH:
            raise PoolRefusal(codes.INVALID_ARGUMENT, f"at most {MAX_STOP_BATCH} task ids per call")
        stopped = await self.p.tasks.stop_many(caller, list(request.task_ids))
        return pb.StopTasksResponse(
            success=True, message="ok", tasks=[pb.StoppedTask(task_id=t, status=s) for t, s in stopped]
        )

    @refusals_as(pb.GetTaskResultResponse)
    async def GetTaskResult(
        self, request: pb.GetTaskResultRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetTaskResultResponse:
        caller = await self.caller(request.token)
        data = await self.p.tasks.result(caller, request.task_id)
        return pb.GetTaskResultResponse(success=True, message="ok", result_zip=data)

    async def GetTasklog(
        self, request: pb.TasklogRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TasklogResponse:
        try:
            caller = await self.caller(request.token)
            text = await self.p.tasks.whole_log(caller, request.task_id)
        except PoolRefusal as refusal:
            return pb.TasklogResponse(success=False, message=refusal.message)
        return pb.TasklogResponse(success=True, log=text, message="ok")

    @refusals_as(pb.TasklogSinceResponse)
    async def GetTasklogSince(
        self, request: pb.TasklogSinceRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TasklogSinceResponse:
        caller = await self.caller(request.token)
        text, next_offset = await self.p.tasks.log_since(caller, request.task_id, request.offset)
        return pb.TasklogSinceResponse(success=True, message="ok", log=text, next_offset=next_offset)

    async def Health(self, request: pb.HealthRequest, context: grpc.aio.ServicerContext[Any, Any]) -> pb.HealthResponse:
        return pb.HealthResponse(version=__version__, extensions=list(EXTENSIONS), time=self.p.clock())


def node_info(row: Any, online: bool) -> pb.NodeInfo:
    return pb.NodeInfo(
        node_id=row["node_id"],
        hostname=row["hostname"],
        port=row["port"],
        status=row["status"],
        online=online,
        cpu_cores=row["cpu_cores"],
        memory_gb=row["memory_gb"],
        cpu_score=row["cpu_score"],
        gpu_score=row["gpu_score"],
        gpu_memory_gb=row["gpu_memory_gb"],
        gpu_name=row["gpu_name"],
        location=row["location"],
        cpu_usage=row["cpu_usage"],
        memory_usage=row["memory_usage"],
        gpu_usage=row["gpu_usage"],
        gpu_memory_usage=row["gpu_memory_usage"],
        running_tasks=row["running_tasks"],
        slots=row["slots"],
        last_heartbeat=row["last_heartbeat"],
        docker_status=row["docker_status"],
        state=row["state"],
        isolation=row["isolation"],
    )


class NodeInfoCache:
    """Each node's NodeInfo, kept while its row is the same object (`NodeRegistry.all` keeps the row of a
    node that did not change) and its being online did not flip.

    A console refreshes the node list every second or so; with 1,000 nodes that heartbeat every few seconds,
    most rows are the same as last time, and building their messages again was half of GetNodeList."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[Any, bool, pb.NodeInfo]] = {}

    def messages(self, rows: Sequence[Any], online: Callable[[Any], bool]) -> list[pb.NodeInfo]:
        kept: dict[str, tuple[Any, bool, pb.NodeInfo]] = {}
        for row in rows:
            up = online(row)
            old = self._kept.get(row["node_id"])
            kept[row["node_id"]] = (
                old if old is not None and old[0] is row and old[1] == up else (row, up, node_info(row, up))
            )
        self._kept = kept  # nodes that are gone are dropped with it
        return [message for _, _, message in kept.values()]


class NodeManagerServicer(_Base, pb_grpc.NodeManagerServiceServicer):
    def __init__(self, parts: PoolParts) -> None:
        super().__init__(parts)
        self._node_infos = NodeInfoCache()

    @refusals_as(pb.StatusResponse)
    async def RegisterWorkerNode(
        self, request: pb.RegisterWorkerNodeRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StatusResponse:
        peer = peer_host(context.peer())
        if self.tells_outcomes(context):
            kind, address = OURS, request.advertise_host or peer
        elif self.p.hivemind is not None:
            await self.p.hivemind.check_registration(request.node_id, context)
            # HiveMind dials the host name it is sent; we dial it where it names a place we can reach.
            kind = HIVEMIND
            address = request.hostname if self.p.hivemind.compat else dial_host(request.hostname, peer)
        elif bearer(context):
            raise PoolRefusal(
                codes.PERMISSION_DENIED,
                "this pool takes no HiveMind-style workers (it would with pool serve --accept-hivemind-workers)",
            )
        else:
            raise PoolRefusal(codes.PERMISSION_DENIED, "worker secret missing or wrong")
        await self.p.nodes.register(
            Registration(
                node_id=request.node_id,
                hostname=request.hostname,
                address=address,
                port=request.port,
                cpu_cores=request.cpu_cores,
                memory_gb=request.memory_gb,
                cpu_score=request.cpu_score,
                gpu_score=request.gpu_score,
                gpu_memory_gb=request.gpu_memory_gb,
                gpu_name=request.gpu_name,
                location=request.location,
                docker_status=request.docker_status,
                slots=request.slots,
                instance_id=request.instance_id,
                held={t.task_id: t.attempt for t in request.held},
                isolation=request.isolation[:200] if kind == OURS else HIVEMIND_ISOLATION,
                kind=kind,
                peer=peer,
            )
        )
        return pb.StatusResponse(success=True, message="ok")

    @refusals_as(pb.JoinWorkerResponse)
    async def JoinWorker(
        self, request: pb.JoinWorkerRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.JoinWorkerResponse:
        if self.p.join is None:
            raise PoolRefusal("NOT_SUPPORTED", "this pool does not take join tokens")
        joined = await self.p.join.join(request.token_id, request.join_secret, request.node_id, request.csr_pem)
        return pb.JoinWorkerResponse(
            success=True,
            message="ok",
            worker_secret=joined.worker_secret,
            certificate_pem=joined.certificate_pem,
            ca_pem=joined.ca_pem,
            pool_port=joined.pool_port,
        )

    @refusals_as(pb.RunningStatusResponse)
    async def ReportStatus(
        self, request: pb.RunningStatusRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.RunningStatusResponse:
        await self.worker(context, node_id=request.node_id)
        await self.p.nodes.heartbeat(
            request.node_id,
            {
                "status": request.status,
                "cpu_usage": request.cpu_usage,
                "memory_usage": request.memory_usage,
                "gpu_usage": request.gpu_usage,
                "gpu_memory_usage": request.gpu_memory_usage,
                "docker_status": request.docker_status,
                "running_tasks": request.running_tasks,
            },
            request.instance_id,
        )
        stop: list[str] = []
        if request.reconciles and self.p.reconcile is not None:
            stop = await self.p.reconcile(request.node_id, {t.task_id: t.attempt for t in request.running})
        return pb.RunningStatusResponse(success=True, message="ok", stop_task_ids=stop)

    @refusals_as(pb.GetNodeListResponse)
    async def GetNodeList(
        self, request: pb.GetNodeListRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.GetNodeListResponse:
        await self.caller(request.token)
        rows = await self.p.nodes.all()
        return pb.GetNodeListResponse(
            success=True, message="ok", nodes=self._node_infos.messages(rows, self.p.nodes.is_online)
        )

    @refusals_as(pb.SetNodeStateResponse)
    async def SetNodeState(
        self, request: pb.SetNodeStateRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.SetNodeStateResponse:
        caller = await self.caller(request.token)
        await self.p.nodes.set_state(caller, request.node_id, request.state)
        return pb.SetNodeStateResponse(success=True, message="ok")


class PoolWorkerServicer(_Base, pb_grpc.WorkerNodeServiceServicer):
    """The pool's half of WorkerNodeService; ExecuteTask and StopTaskExecution are the workers' half."""

    async def ExecuteTask(
        self, request: pb.ExecuteTaskRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.ExecuteTaskResponse:
        await not_served_here(context)

    async def StopTaskExecution(
        self, request: pb.StopTaskExecutionRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.StopTaskExecutionResponse:
        await not_served_here(context)

    @refusals_as(pb.TaskOutputUploadResponse)
    async def TaskOutputUpload(
        self, request: pb.TaskOutputUploadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskOutputUploadResponse:
        node = await self.worker(context, task_id=request.task_id)
        offset = request.offset if request.HasField("offset") else None
        await self.p.reports.output(node, request.task_id, request.output, offset, request.attempt)
        return pb.TaskOutputUploadResponse(success=True, message="ok")

    @refusals_as(pb.TaskOutputResponse)
    async def TaskOutput(
        self, request: pb.TaskOutputRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskOutputResponse:
        node = await self.worker(context, task_id=request.task_id)
        await self.p.reports.output(node, request.task_id, request.output)
        return pb.TaskOutputResponse(success=True, message="ok")

    @refusals_as(pb.TaskUsageResponse)
    async def TaskUsage(
        self, request: pb.TaskUsageRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskUsageResponse:
        if request.task_id == NODE_REPORT:  # HiveMind's node-level report: a heartbeat, its token the node id
            node = await self.worker(context, node_id=request.token)
            await self.p.nodes.touch(node or request.token, request.cpu_usage, request.memory_usage)
            return pb.TaskUsageResponse(success=True, message="ok")
        node = await self.worker(context, task_id=request.task_id)
        await self.p.reports.usage(
            node,
            request.task_id,
            request.cpu_usage,
            request.memory_usage,
            request.gpu_usage,
            request.gpu_memory_usage,
            request.attempt,
        )
        return pb.TaskUsageResponse(success=True, message="ok")

    @refusals_as(pb.TaskResultUploadResponse)
    async def TaskResultUpload(
        self, request: pb.TaskResultUploadRequest, context: grpc.aio.ServicerContext[Any, Any]
    ) -> pb.TaskResultUploadResponse:
        node = await self.worker(context, task_id=request.task_id)
        status = await self.p.reports.result(
            node,
            request.task_id,
            request.result_zip,
            request.exit_code if self.tells_outcomes(context) else None,
            request.failure_reason,
            request.attempt,
        )
        return pb.TaskResultUploadResponse(success=True, message=f"ok: {status}")


EXTENSION_RPCS = frozenset(
    {
        "Logout",
        "GetNodeList",
        "SetNodeState",
        "GetTasklogSince",
        "Health",
        "UploadTaskStream",
        "StopTasks",
        "JoinWorker",
    }
)


def strip_extensions(message: Any) -> Any:
    """Clear every field at our extension numbers (20 and up in HiveMind's messages), recursively."""
    for field in message.DESCRIPTOR.fields:
        if field.number >= 20 and field.containing_type.name not in _OUR_MESSAGES:
            message.ClearField(field.name)
        elif field.message_type is not None:
            values = getattr(message, field.name)
            for item in values if field.is_repeated else [values]:
                strip_extensions(item)
    return message


_OUR_MESSAGES = frozenset(
    {"NodeInfo", "GetNodeListResponse", "HealthResponse", "TasklogSinceResponse", "StopTasksResponse", "StoppedTask"}
)


def hivemind_compatible(servicer: Any, service: str, imitation: HivemindImitation) -> Any:
    """Make `servicer` answer as a HiveMind pool: extensions UNIMPLEMENTED, extension fields unset, and
    HiveMind's own words and quirks where `imitation` has them (nodepool/hivemind_imitation.py)."""
    for method in pb.DESCRIPTOR.services_by_name[service].methods:
        original = getattr(servicer, method.name)
        if method.name in EXTENSION_RPCS:

            async def unimplemented(request: Any, context: grpc.aio.ServicerContext[Any, Any]) -> Any:
                await context.abort(grpc.StatusCode.UNIMPLEMENTED, "Method not implemented!")

            setattr(servicer, method.name, unimplemented)
            continue
        imitated = getattr(imitation, method.name, None)

        async def answered(
            request: Any, context: grpc.aio.ServicerContext[Any, Any], _call: Any = original, _as: Any = imitated
        ) -> Any:
            if _as is None:
                return strip_extensions(await _call(request, context))
            return strip_extensions(await _as(request, context, lambda: _call(request, context)))

        setattr(servicer, method.name, answered)
    return servicer


def new_server(options: Sequence[tuple[str, Any]]) -> grpc.aio.Server:
    """A gRPC server that owns its port. gRPC sets SO_REUSEPORT by default, which lets a second process listen
    on a port already taken and answer half of the first one's clients."""
    return grpc.aio.server(options=[*options, ("grpc.so_reuseport", 0)])


def bind(server: grpc.aio.Server, listen: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Listen on `listen`; the port, or OSError naming the address when it is taken or not on this host."""
    try:
        port = server.add_secure_port(listen, credentials) if credentials else server.add_insecure_port(listen)
    except RuntimeError:  # grpcio raises where it used to return 0
        port = 0
    if port == 0:
        raise OSError(f"cannot listen on {listen}: the port is in use or the address is not here")
    return port


class _HandlerCapture:
    """Stands in for the server in a generated `add_..._to_server`, to keep the handlers it builds."""

    def __init__(self) -> None:
        self.handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def add_generic_rpc_handlers(self, handlers: Any) -> None:
        pass

    def add_registered_method_handlers(
        self, service: str, handlers: dict[str, grpc.RpcMethodHandler[Any, Any]]
    ) -> None:
        self.handlers = dict(handlers)


def add_master_servicer(server: grpc.aio.Server, servicer: Any) -> None:
    """The generated registration, except that UploadTaskStream reads its chunks with `upload_chunks`."""
    capture = _HandlerCapture()
    pb_grpc.add_MasterNodeServiceServicer_to_server(servicer, cast(grpc.aio.Server, capture))
    capture.handlers["UploadTaskStream"] = grpc.stream_unary_rpc_method_handler(
        servicer.UploadTaskStream,
        request_deserializer=upload_chunks.decode,
        response_serializer=pb.UploadTaskResponse.SerializeToString,
    )
    capture.handlers["GetAllUserTasks"] = grpc.unary_unary_rpc_method_handler(
        servicer.GetAllUserTasks,
        request_deserializer=pb.GetAllUserTasksRequest.FromString,
        response_serializer=encoded_or_message,
    )
    service = "nodepool.MasterNodeService"
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(service, capture.handlers),))
    server.add_registered_method_handlers(service, capture.handlers)


CLIENT_CERTIFICATE_REQUIRED = "CLIENT_CERTIFICATE_REQUIRED"
# Reachable without a client certificate under mutual TLS: a joining worker has none yet.
NO_CLIENT_CERTIFICATE_NEEDED = frozenset({"JoinWorker"})


def client_certificate_required(servicer: Any, service: str) -> Any:
    """Every rpc but JoinWorker refused to a peer that showed no certificate (on the join desk, none does:
    gRPC's TLS either requires a client certificate or never asks for one)."""
    for method in pb.DESCRIPTOR.services_by_name[service].methods:
        if method.name in NO_CLIENT_CERTIFICATE_NEEDED:
            continue
        original = getattr(servicer, method.name)

        async def checked(request: Any, context: grpc.aio.ServicerContext[Any, Any], _call: Any = original) -> Any:
            if not context.peer_identities():
                await context.abort(
                    grpc.StatusCode.UNAUTHENTICATED,
                    f"{CLIENT_CERTIFICATE_REQUIRED}: this pool accepts only clients with a certificate of its CA",
                )
            return await _call(request, context)

        setattr(servicer, method.name, checked)
    return servicer


def add_join_desk(server: grpc.aio.Server, parts: PoolParts) -> None:
    """The mutual-TLS pool's second port: JoinWorker for workers without a certificate yet, nothing else."""
    servicer = client_certificate_required(NodeManagerServicer(parts), "NodeManagerService")
    pb_grpc.add_NodeManagerServiceServicer_to_server(servicer, server)


def add_servicers(server: grpc.aio.Server, parts: PoolParts, hivemind_compat: bool = False) -> None:
    imitation = HivemindImitation(parts.accounts.authenticate, parts.tasks.find)

    def wrap(servicer: Any, service: str) -> Any:
        return hivemind_compatible(servicer, service, imitation) if hivemind_compat else servicer

    pb_grpc.add_UserServiceServicer_to_server(wrap(UserServicer(parts), "UserService"), server)
    add_master_servicer(server, wrap(MasterServicer(parts, not hivemind_compat), "MasterNodeService"))
    pb_grpc.add_NodeManagerServiceServicer_to_server(wrap(NodeManagerServicer(parts), "NodeManagerService"), server)
    pb_grpc.add_WorkerNodeServiceServicer_to_server(wrap(PoolWorkerServicer(parts), "WorkerNodeService"), server)
