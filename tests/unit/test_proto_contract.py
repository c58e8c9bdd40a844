"""The generated stubs match protos/ byte for byte, and every field of HiveMind's protocol keeps its number."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf.descriptor import FieldDescriptor as F

from hivemind_tui.proto import nodepool_pb2 as pb

ROOT = Path(__file__).resolve().parents[2]
S, B, BY, I32, I64, FL = F.TYPE_STRING, F.TYPE_BOOL, F.TYPE_BYTES, F.TYPE_INT32, F.TYPE_INT64, F.TYPE_FLOAT

# (message, field, number, type): the HiveMind protocol as HiveMind's own nodepool.proto defines it.
WIRE_FACTS = [
    ("LoginRequest", "username", 1, S),
    ("LoginRequest", "password", 2, S),
    ("LoginResponse", "success", 1, B),
    ("LoginResponse", "message", 2, S),
    ("LoginResponse", "token", 3, S),
    ("TransferRequest", "token", 1, S),
    ("TransferRequest", "receiver_username", 2, S),
    ("TransferRequest", "amount", 3, I64),
    ("GetBalanceRequest", "username", 1, S),
    ("GetBalanceRequest", "token", 2, S),
    ("GetBalanceResponse", "balance", 3, I64),
    ("RefreshTokenRequest", "old_token", 1, S),
    ("RefreshTokenResponse", "new_token", 3, S),
    ("RegisterWorkerNodeRequest", "node_id", 1, S),
    ("RegisterWorkerNodeRequest", "hostname", 2, S),
    ("RegisterWorkerNodeRequest", "cpu_cores", 3, I32),
    ("RegisterWorkerNodeRequest", "memory_gb", 4, I32),
    ("RegisterWorkerNodeRequest", "cpu_score", 5, I32),
    ("RegisterWorkerNodeRequest", "gpu_score", 6, I32),
    ("RegisterWorkerNodeRequest", "gpu_memory_gb", 7, I32),
    ("RegisterWorkerNodeRequest", "location", 8, S),
    ("RegisterWorkerNodeRequest", "port", 9, I32),
    ("RegisterWorkerNodeRequest", "gpu_name", 12, S),
    ("RegisterWorkerNodeRequest", "docker_status", 13, S),
    ("RunningStatusRequest", "node_id", 1, S),
    ("RunningStatusRequest", "status", 2, S),
    ("RunningStatusRequest", "cpu_usage", 3, FL),
    ("RunningStatusRequest", "memory_usage", 4, FL),
    ("RunningStatusRequest", "gpu_usage", 5, FL),
    ("RunningStatusRequest", "gpu_memory_usage", 6, FL),
    ("RunningStatusRequest", "docker_status", 7, S),
    ("RunningStatusRequest", "running_tasks", 8, I32),
    ("UploadTaskRequest", "task_id", 1, S),
    ("UploadTaskRequest", "task_zip", 2, BY),
    ("UploadTaskRequest", "memory_gb", 3, I32),
    ("UploadTaskRequest", "cpu_score", 4, I32),
    ("UploadTaskRequest", "gpu_score", 5, I32),
    ("UploadTaskRequest", "gpu_memory_gb", 6, I32),
    ("UploadTaskRequest", "location", 7, S),
    ("UploadTaskRequest", "gpu_name", 8, S),
    ("UploadTaskRequest", "token", 9, S),
    ("GetTaskResultRequest", "task_id", 1, S),
    ("GetTaskResultRequest", "token", 2, S),
    ("GetTaskResultResponse", "result_zip", 3, BY),
    ("GetAllUserTasksRequest", "token", 1, S),
    ("StopTaskRequest", "task_id", 1, S),
    ("StopTaskRequest", "token", 2, S),
    ("TasklogRequest", "task_id", 1, S),
    ("TasklogRequest", "token", 2, S),
    ("TasklogResponse", "success", 1, B),
    ("TasklogResponse", "log", 2, S),
    ("TaskInfo", "task_id", 1, S),
    ("TaskInfo", "status", 2, S),
    ("TaskInfo", "message", 4, S),
    ("TaskInfo", "cpu_usage", 5, FL),
    ("TaskInfo", "memory_usage", 6, FL),
    ("TaskInfo", "gpu_usage", 7, FL),
    ("TaskInfo", "gpu_memory_usage", 8, FL),
    ("TaskInfo", "worker_ip", 9, S),
    ("ExecuteTaskRequest", "task_id", 1, S),
    ("ExecuteTaskRequest", "task_zip", 2, BY),
    ("ExecuteTaskRequest", "cpu_usage", 3, FL),
    ("ExecuteTaskRequest", "gpu_usage", 4, FL),
    ("ExecuteTaskRequest", "memory_gb", 5, I32),
    ("ExecuteTaskRequest", "gpu_memory_gb", 6, I32),
    ("TaskOutputUploadRequest", "task_id", 1, S),
    ("TaskOutputUploadRequest", "output", 2, S),
    ("TaskOutputUploadRequest", "token", 3, S),
    ("TaskResultUploadRequest", "task_id", 1, S),
    ("TaskResultUploadRequest", "result_zip", 2, BY),
    ("TaskResultUploadRequest", "token", 3, S),
    ("TaskOutputRequest", "task_id", 1, S),
    ("TaskOutputRequest", "output", 2, S),
    ("TaskOutputRequest", "token", 3, S),
    ("StopTaskExecutionRequest", "task_id", 1, S),
    ("TaskUsageRequest", "task_id", 1, S),
    ("TaskUsageRequest", "cpu_usage", 2, FL),
    ("TaskUsageRequest", "memory_usage", 3, FL),
    ("TaskUsageRequest", "gpu_usage", 4, FL),
    ("TaskUsageRequest", "gpu_memory_usage", 5, FL),
    ("TaskUsageRequest", "token", 6, S),
]

# Responses that are plain {success=1, message=2}.
PLAIN_RESPONSES = [
    "LoginResponse",
    "TransferResponse",
    "GetBalanceResponse",
    "RefreshTokenResponse",
    "StatusResponse",
    "RunningStatusResponse",
    "UploadTaskResponse",
    "GetTaskResultResponse",
    "StopTaskResponse",
    "ExecuteTaskResponse",
    "TaskOutputUploadResponse",
    "TaskResultUploadResponse",
    "TaskOutputResponse",
    "StopTaskExecutionResponse",
    "TaskUsageResponse",
]

RPCS = {
    "UserService": {
        "Login": ("LoginRequest", "LoginResponse"),
        "Transfer": ("TransferRequest", None),
        "GetBalance": ("GetBalanceRequest", None),
        "RefreshToken": ("RefreshTokenRequest", None),
    },
    "NodeManagerService": {
        "RegisterWorkerNode": ("RegisterWorkerNodeRequest", "StatusResponse"),
        "ReportStatus": ("RunningStatusRequest", "RunningStatusResponse"),
    },
    "MasterNodeService": {
        "UploadTask": ("UploadTaskRequest", None),
        "GetTaskResult": ("GetTaskResultRequest", None),
        "GetAllUserTasks": ("GetAllUserTasksRequest", "GetAllTasksResponse"),
        "StopTask": ("StopTaskRequest", None),
        "GetTasklog": ("TasklogRequest", "TasklogResponse"),
    },
    "WorkerNodeService": {
        "ExecuteTask": ("ExecuteTaskRequest", None),
        "TaskOutputUpload": ("TaskOutputUploadRequest", None),
        "TaskResultUpload": ("TaskResultUploadRequest", None),
        "TaskOutput": ("TaskOutputRequest", None),
        "StopTaskExecution": ("StopTaskExecutionRequest", None),
        "TaskUsage": ("TaskUsageRequest", None),
    },
}


def test_package_is_nodepool() -> None:
    assert pb.DESCRIPTOR.package == "nodepool"


@pytest.mark.parametrize(("message", "name", "number", "type_"), WIRE_FACTS)
def test_hivemind_field_keeps_number_and_type(message: str, name: str, number: int, type_: int) -> None:
    descriptor = pb.DESCRIPTOR.message_types_by_name[message]
    field = descriptor.fields_by_name[name]
    assert (field.number, field.type) == (number, type_)
    assert not field.is_repeated


def test_get_all_tasks_response_repeats_task_info_at_1() -> None:
    field = pb.GetAllTasksResponse.DESCRIPTOR.fields_by_name["tasks"]
    assert field.number == 1 and field.is_repeated and field.message_type.name == "TaskInfo"


@pytest.mark.parametrize("message", PLAIN_RESPONSES)
def test_response_has_success_and_message(message: str) -> None:
    fields = pb.DESCRIPTOR.message_types_by_name[message].fields_by_name
    assert (fields["success"].number, fields["success"].type) == (1, B)
    assert (fields["message"].number, fields["message"].type) == (2, S)


def test_unused_numbers_are_reserved() -> None:
    assert "reserved 3;" in _message_source("TaskInfo")
    assert "reserved 10, 11;" in _message_source("RegisterWorkerNodeRequest")
    numbers = {f.number for f in pb.TaskInfo.DESCRIPTOR.fields}
    assert 3 not in numbers
    assert not {10, 11} & {f.number for f in pb.RegisterWorkerNodeRequest.DESCRIPTOR.fields}


def test_extensions_use_numbers_hivemind_does_not() -> None:
    hivemind = (
        {(m, n) for m, _, n, _ in WIRE_FACTS} | {(m, 1) for m in PLAIN_RESPONSES} | {(m, 2) for m in PLAIN_RESPONSES}
    )
    for message in {m for m, *_ in WIRE_FACTS} | set(PLAIN_RESPONSES):
        for field in pb.DESCRIPTOR.message_types_by_name[message].fields:
            if (message, field.number) not in hivemind:
                assert field.number >= 20, f"{message}.{field.name} extension at {field.number}"


@pytest.mark.parametrize("service", sorted(RPCS))
def test_services_and_rpcs(service: str) -> None:
    descriptor = pb.DESCRIPTOR.services_by_name[service]
    for rpc, (request, response) in RPCS[service].items():
        method = descriptor.methods_by_name[rpc]
        assert method.input_type.name == request
        if response:
            assert method.output_type.name == response
        assert not method.client_streaming and not method.server_streaming


def test_regeneration_is_byte_identical(tmp_path: Path) -> None:
    subprocess.run(
        [sys.executable, str(ROOT / "protos" / "compile.py"), "--out", str(tmp_path)], check=True, capture_output=True
    )
    for name in ("nodepool_pb2.py", "nodepool_pb2_grpc.py", "nodepool_pb2.pyi"):
        assert (tmp_path / name).read_bytes() == (ROOT / "hivemind_tui" / "proto" / name).read_bytes(), name


def test_generated_grpc_module_imports_relatively() -> None:
    text = (ROOT / "hivemind_tui" / "proto" / "nodepool_pb2_grpc.py").read_text()
    assert "from . import nodepool_pb2 as nodepool__pb2" in text
    assert "\nimport nodepool_pb2" not in text


def _message_source(name: str) -> str:
    text = (ROOT / "protos" / "nodepool.proto").read_text()
    start = text.index(f"message {name} {{")
    return text[start : text.index("}", start)]
