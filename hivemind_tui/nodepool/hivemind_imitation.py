"""`pool serve --hivemind-compat`: our pool answering as the public HiveMind Node Pool (Python, commit
f4cfad5) answers, so that clients can be tested against what they will meet.

Our servicers do the work and say `CODE: words`; this module turns each answer into HiveMind's: its message
strings (Chinese ones included), which failures are `success=false` and which are gRPC status codes, its
silently empty answers, its cap on listed tasks and its log layout. Each imitated behaviour sits in one
function or table entry below, with a comment naming it, so that it can be checked against the real pool.
Extension rpcs answer UNIMPLEMENTED and extension fields (20 and up) are cleared, as HiveMind has neither.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc

from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.accounts import Caller
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.proto import nodepool_pb2 as pb

Context = grpc.aio.ServicerContext[Any, Any]
Call = Callable[[], Awaitable[Any]]

# GetAllUserTasks scans Redis `KEYS task:*` and stops after 100 of the caller's tasks: no order, no paging.
LISTED_TASKS_CAP = 100
# GetTasklog keeps the last 10240 characters of output (which can cut a line in half).
OUTPUT_KEPT = 10240
# The line GetTasklog puts between the pool's system lines and the task's output.
OUTPUT_HEADER = "--- Task Output ---"
# The stop lines our pool and worker append; HiveMind's pool puts its own system line above the output.
OUR_SYSTEM_PREFIX = "[hivemind]"
FINISHED = ("COMPLETED", "FAILED", "STOPPED")
# How StopTask, GetTaskResult and GetTasklog say that the token, the task's existence or its owner failed.
STOP_REFUSALS = {"token": "Invalid or expired token", "missing": "任務不存在", "owner": "無權限停止此任務"}
RESULT_REFUSALS = {"token": "Authentication failed", "missing": "任務不存在", "owner": "無權限訪問此任務"}
LOG_REFUSALS = {
    "token": (grpc.StatusCode.UNAUTHENTICATED, "Invalid or expired token"),
    "missing": (grpc.StatusCode.NOT_FOUND, "Task not found"),
    "owner": (grpc.StatusCode.PERMISSION_DENIED, "Access denied to this task"),
}


def pushes_to(address: str) -> bool:
    """HiveMind's dispatcher refuses to push to an empty host name or exactly 127.0.0.1 (`localhost` and
    127.0.0.2 pass); the task stays PENDING, and the client is told nothing."""
    return address not in ("", "127.0.0.1")


def code_of(message: str) -> str:
    return message.split(":", 1)[0].strip()


def verification_text(token: str, code: str) -> str:
    """UserService's token texts (Transfer, RefreshToken): format, expired, bad signature."""
    if not token or token.count(".") != 2:
        return "Token 驗證失敗: Token 格式不正確"
    return "令牌已過期" if code == codes.TOKEN_EXPIRED else "無效令牌"


def balance_token_text(token: str, code: str) -> str:
    """GetBalance's own token texts: English codes, not UserService's Chinese ones."""
    if not token:
        return "Token is required"
    return "TOKEN_EXPIRED" if code == codes.TOKEN_EXPIRED else "INVALID_TOKEN"


def hivemind_status(status: str, worker: str) -> str:
    """Any TaskResultUpload makes COMPLETED, also that of a stopped run, whose workspace the worker packs and
    uploads. (A script that exits 3 is COMPLETED already: results carry no exit code here, see reports.py.)"""
    return "COMPLETED" if status == "STOPPED" and worker else status


class HivemindImitation:
    """The answers of one compat pool. `find` looks a task up for any user (HiveMind checks ownership itself
    and says "no permission" where our pool says "not found")."""

    def __init__(
        self,
        authenticate: Callable[[str], Awaitable[Caller]],
        find: Callable[[str], Awaitable[Any]],
    ) -> None:
        self._authenticate = authenticate
        self._find = find
        # StopTask's system lines with their local time, kept by the imitation: HiveMind shows them above all
        # output.
        self._system_lines: dict[str, list[str]] = {}

    async def _caller(self, token: str) -> Caller | None:
        try:
            return await self._authenticate(token)
        except PoolRefusal:
            return None

    # -- UserService --------------------------------------------------------------------------------
    async def Login(self, request: pb.LoginRequest, context: Context, call: Call) -> pb.LoginResponse:
        # Always OK; both an unknown user and a wrong password say "username or password incorrect".
        if not request.username or not request.password:
            return pb.LoginResponse(success=False, message="用戶名和密碼不能為空")
        reply = await call()
        if reply.success:
            return pb.LoginResponse(success=True, message="登錄成功", token=reply.token)
        return pb.LoginResponse(success=False, message="用戶名或密碼錯誤")

    async def RefreshToken(
        self, request: pb.RefreshTokenRequest, context: Context, call: Call
    ) -> pb.RefreshTokenResponse:
        reply = await call()
        if reply.success:
            return pb.RefreshTokenResponse(success=True, message="Token 刷新成功", new_token=reply.new_token)
        return pb.RefreshTokenResponse(
            success=False, message=verification_text(request.old_token, code_of(reply.message))
        )

    async def GetBalance(self, request: pb.GetBalanceRequest, context: Context, call: Call) -> pb.GetBalanceResponse:
        reply = await call()
        if reply.success:
            # HiveMind names the numeric database id; we name the account.
            caller = await self._caller(request.token)
            who = caller.username if caller else request.username
            return pb.GetBalanceResponse(
                success=True, message=f"Balance retrieved successfully for user {who}", balance=reply.balance
            )
        return pb.GetBalanceResponse(
            success=False, message=balance_token_text(request.token, code_of(reply.message)), balance=0
        )

    async def Transfer(self, request: pb.TransferRequest, context: Context, call: Call) -> pb.TransferResponse:
        reply = await call()
        code = code_of(reply.message)
        if not reply.success and code in (codes.INVALID_TOKEN, codes.TOKEN_EXPIRED):
            return pb.TransferResponse(success=False, message=verification_text(request.token, code))
        return pb.TransferResponse(success=reply.success, message=reply.message)

    # -- MasterNodeService ----------------------------------------------------------------------------
    async def UploadTask(self, request: pb.UploadTaskRequest, context: Context, call: Call) -> pb.UploadTaskResponse:
        reply = await call()
        if reply.success:
            return pb.UploadTaskResponse(success=True, message="任務上傳成功")
        code = code_of(reply.message)
        if code in (codes.INVALID_TOKEN, codes.TOKEN_EXPIRED):
            return pb.UploadTaskResponse(success=False, message="Authentication failed")
        if code == codes.TASK_EXISTS:
            return pb.UploadTaskResponse(success=False, message="任務 ID 已存在")
        return pb.UploadTaskResponse(success=False, message="任務創建失敗")

    async def GetAllUserTasks(
        self, request: pb.GetAllUserTasksRequest, context: Context, call: Call
    ) -> pb.GetAllTasksResponse:
        caller = await self._caller(request.token)
        if caller is None:
            # A bad, expired or empty token gets an empty list: it looks exactly like "no tasks".
            return pb.GetAllTasksResponse()
        reply = await call()
        mine = [t for t in reply.tasks if t.owner == caller.username]  # no admin sees others' tasks
        # Redis hash order (unsorted, unspecified), cut at 100.
        mine.sort(key=lambda t: hash(t.task_id))
        shown = []
        for task in mine[:LISTED_TASKS_CAP]:
            listed = pb.TaskInfo()
            listed.CopyFrom(task)
            listed.message = ""  # nothing ever writes TaskInfo.message
            listed.status = hivemind_status(listed.status, listed.worker_ip)
            shown.append(listed)
        return pb.GetAllTasksResponse(tasks=shown)

    async def _permission(self, token: str, task_id: str) -> tuple[Caller | None, Any, str]:
        """The checks StopTask, GetTaskResult and GetTasklog make, in their order: token, existence,
        ownership. The failed one is named ("token", "missing", "owner"); each rpc words it its own way."""
        caller = await self._caller(token)
        if caller is None:
            return None, None, "token"
        row = await self._find(task_id)
        if row is None:
            return caller, None, "missing"
        if row["owner"] != caller.username:
            return caller, row, "owner"
        return caller, row, ""

    async def StopTask(self, request: pb.StopTaskRequest, context: Context, call: Call) -> pb.StopTaskResponse:
        caller, row, problem = await self._permission(request.token, request.task_id)
        if problem:
            return pb.StopTaskResponse(success=False, message=STOP_REFUSALS[problem])
        assert caller is not None and row is not None
        status = hivemind_status(row["status"], row["worker"])
        if status in FINISHED:
            return pb.StopTaskResponse(success=False, message=f"任務已處於 {status} 狀態，無法停止")
        reply = await call()
        if not reply.success:
            return pb.StopTaskResponse(success=False, message="更新任務狀態失敗")
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())
        self._system_lines.setdefault(request.task_id, []).append(
            f"[{stamp}] [system] 任務 {request.task_id} 已被用戶 {caller.username} 請求停止"
        )
        # Success whatever the worker said.
        return pb.StopTaskResponse(success=True, message=f"任務 {request.task_id} 已停止，工作端正在處理結果打包")

    async def GetTaskResult(
        self, request: pb.GetTaskResultRequest, context: Context, call: Call
    ) -> pb.GetTaskResultResponse:
        _, _, problem = await self._permission(request.token, request.task_id)
        if problem:
            return pb.GetTaskResultResponse(success=False, message=RESULT_REFUSALS[problem])
        reply = await call()
        if reply.success and reply.result_zip:
            return pb.GetTaskResultResponse(success=True, message="任務結果獲取成功", result_zip=reply.result_zip)
        # Not looking at the status: PENDING, RUNNING and stopped-before-dispatch all look like this.
        return pb.GetTaskResultResponse(success=False, message="任務結果不存在或未完成")

    async def GetTasklog(self, request: pb.TasklogRequest, context: Context, call: Call) -> pb.TasklogResponse:
        # The only rpc that fails with status codes.
        _, _, problem = await self._permission(request.token, request.task_id)
        if problem:
            await context.abort(*LOG_REFUSALS[problem])
        reply = await call()
        return pb.TasklogResponse(
            success=True, log=self.log_layout(request.task_id, reply.log if reply.success else "")
        )

    def log_layout(self, task_id: str, ours: str) -> str:
        """System lines first (`[time] [system] text`), then `--- Task Output ---` and the last 10 KiB of
        output; whitespace-only lines dropped, joined with newlines, no trailing newline."""
        system = self._system_lines.get(task_id, [])
        output = "\n".join(line for line in ours.split("\n") if not line.startswith(OUR_SYSTEM_PREFIX))
        output = output[-OUTPUT_KEPT:]
        lines = system + ([OUTPUT_HEADER, *output.split("\n")] if output.strip() else [])
        return "\n".join(line for line in lines if line.strip())

    # -- NodeManagerService and the pool's WorkerNodeService: no check of any kind, HiveMind's words ----------
    async def RegisterWorkerNode(
        self, request: pb.RegisterWorkerNodeRequest, context: Context, call: Call
    ) -> pb.StatusResponse:
        await call()
        # "Node registered" every time: its failure branch can never run, even for garbage.
        return pb.StatusResponse(success=True, message="節點註冊成功")

    async def ReportStatus(
        self, request: pb.RunningStatusRequest, context: Context, call: Call
    ) -> pb.RunningStatusResponse:
        if not request.node_id:
            return pb.RunningStatusResponse(success=False, message="缺少 node_id")
        reply = await call()
        if not reply.success:
            return pb.RunningStatusResponse(success=False, message=f"節點 {request.node_id} 未註冊")
        return pb.RunningStatusResponse(success=True, message="狀態已更新")

    async def TaskOutputUpload(
        self, request: pb.TaskOutputUploadRequest, context: Context, call: Call
    ) -> pb.TaskOutputUploadResponse:
        reply = await call()
        words = "輸出上傳成功" if reply.success else "輸出上傳失敗"
        return pb.TaskOutputUploadResponse(success=reply.success, message=words)

    async def TaskResultUpload(
        self, request: pb.TaskResultUploadRequest, context: Context, call: Call
    ) -> pb.TaskResultUploadResponse:
        reply = await call()
        words = "結果上傳成功" if reply.success else "結果存儲失敗"
        return pb.TaskResultUploadResponse(success=reply.success, message=words)

    async def TaskUsage(self, request: pb.TaskUsageRequest, context: Context, call: Call) -> pb.TaskUsageResponse:
        if request.task_id == "0":  # the node-level report: its token carries the node id
            if not request.token:
                return pb.TaskUsageResponse(success=False, message="缺少 node_id(token)")
            reply = await call()
            if not reply.success:
                return pb.TaskUsageResponse(success=False, message=f"節點 {request.token} 不存在")
            return pb.TaskUsageResponse(success=True, message="節點狀態已更新")
        reply = await call()
        return pb.TaskUsageResponse(
            success=reply.success, message="任務使用情況已記錄" if reply.success else "任務不存在或更新失敗"
        )

    # The worker half of WorkerNodeService, as the pool serves it: does nothing, says it did.
    async def ExecuteTask(self, request: pb.ExecuteTaskRequest, context: Context, call: Call) -> pb.ExecuteTaskResponse:
        return pb.ExecuteTaskResponse(success=True, message="任務執行中")

    async def TaskOutput(self, request: pb.TaskOutputRequest, context: Context, call: Call) -> pb.TaskOutputResponse:
        return pb.TaskOutputResponse(success=True, message="輸出處理成功")

    async def StopTaskExecution(
        self, request: pb.StopTaskExecutionRequest, context: Context, call: Call
    ) -> pb.StopTaskExecutionResponse:
        return pb.StopTaskExecutionResponse(success=True, message="任務已停止")
