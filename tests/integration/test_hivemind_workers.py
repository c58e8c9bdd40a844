"""Workers across the two pool kinds, with real pool and worker processes on loopback.

`worker --hivemind` serves a HiveMind pool (`pool serve --hivemind-compat`, which dials the host name a worker
registers, never 127.0.0.1, and sends no worker secret), and our pool takes HiveMind-style workers with
`--accept-hivemind-workers` (they authenticate as a user once, then are bound to their address). A
FaultProxy that dials from 127.0.0.5 stands for another host: what it sends must be refused.
"""

from __future__ import annotations

import asyncio
import io
import os
import sqlite3
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from hivemind_tui.proto import nodepool_pb2 as pb
from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc
from tests.helpers import FAST_ENV, free_port, task_zip
from tests.integration.cli_harness import CLI, admin_login, serve, wait_for
from tests.proxy import FaultProxy

pytestmark = pytest.mark.timeout(180)

OUTPUT_MAIN = "import os\nprint('hello from the task')\nopen('output/out.txt', 'w').write('42')\n"
OTHER_HOST = "127.0.0.5"


class Pool:
    def __init__(self, tmp_path: Path, *flags: str) -> None:
        self.data = tmp_path / "pool"
        self.port = free_port()
        self.cli = CLI(self.data)
        self.proc = serve(self.data, self.port, *flags, "--workers", "0")
        self.tmp = tmp_path
        self.workers: list[subprocess.Popen[str]] = []

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_user(self, name: str, password: str) -> Path:
        added = self.cli("pool", "add-user", name, "--password-stdin", stdin=password + "\n")
        assert added.returncode == 0, added.stderr
        path = self.tmp / f"{name}.password"
        path.write_text(password + "\n")
        path.chmod(0o600)
        return path

    def worker(self, user: str, password_file: Path, *extra: str) -> subprocess.Popen[str]:
        """`worker --hivemind` with a data dir of its own, as on another machine."""
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "hivemind_tui",
                "--data-dir",
                str(self.tmp / f"host-{user}"),
                "worker",
                "--hivemind",
                "--user",
                user,
                "--password-file",
                str(password_file),
                "--pool",
                self.address,
                *extra,
            ],
            env={**os.environ, **FAST_ENV},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.workers.append(proc)
        return proc

    def node(self, node_id: str, timeout: float = 30) -> sqlite3.Row:
        """The pool's own record of a node, once it has registered."""
        deadline = time.monotonic() + timeout
        while True:
            with sqlite3.connect(self.data / "pool" / "pool.db") as db:
                db.row_factory = sqlite3.Row
                row = db.execute("SELECT * FROM nodes WHERE node_id = ?", (node_id,)).fetchone()
            if row is not None:
                return row
            for proc in self.workers:
                assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, f"{node_id} never registered"
            time.sleep(0.1)

    def submit(self, main: str) -> str:
        job = self.tmp / f"job-{time.monotonic_ns()}.zip"
        job.write_bytes(task_zip(main))
        return str(self.cli.json("tasks", "submit", str(job))["task_id"])

    def result(self, task_id: str) -> zipfile.ZipFile:
        out = self.tmp / f"{task_id}.zip"
        fetched = self.cli("tasks", "result", task_id, "--output", str(out))
        assert fetched.returncode == 0, fetched.stderr
        return zipfile.ZipFile(io.BytesIO(out.read_bytes()))

    def __enter__(self) -> Pool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        for proc in self.workers:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.workers:
            try:
                proc.communicate(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
        self.cli("pool", "stop")
        self.proc.wait(timeout=20)


@pytest.fixture
def compat(tmp_path: Path) -> Iterator[Pool]:
    with Pool(tmp_path, "--hivemind-compat") as pool:
        yield pool


@pytest.fixture
def ours(tmp_path: Path) -> Iterator[Pool]:
    with Pool(tmp_path, "--accept-hivemind-workers") as pool:
        yield pool


async def rpc(host: str, port: int, source: str | None, method: str, request: object, token: str = "") -> object:
    """One worker-protocol rpc to `host:port`, through a proxy that dials from `source` when given."""
    proxy = await FaultProxy(port, host, source).start() if source else None
    target = proxy.address if proxy else f"{host}:{port}"
    metadata = (("authorization", f"Bearer {token}"),) if token else ()
    try:
        async with grpc.aio.insecure_channel(target) as channel:
            nodes = method in ("RegisterWorkerNode", "ReportStatus")
            stub = pb_grpc.NodeManagerServiceStub(channel) if nodes else pb_grpc.WorkerNodeServiceStub(channel)
            return await getattr(stub, method)(request, metadata=metadata, timeout=10)
    finally:
        if proxy is not None:
            await proxy.close()


def log_of(pool: Pool, user: str) -> str:
    return (pool.tmp / f"host-{user}" / "logs" / f"worker-{user}.log").read_text()


def test_our_worker_serves_a_hivemind_pool(compat: Pool) -> None:
    password = compat.add_user("w1", "w1-pass-123")
    worker = compat.worker("w1", password)
    node = compat.node("w1")
    # HiveMind dials the host name it is sent, and never 127.0.0.1: the worker sent one it listens on.
    assert (node["hostname"], node["address"], node["kind"]) == ("127.0.0.2", "127.0.0.2", "hivemind")
    admin_login(compat.cli, hivemind=True)
    good = compat.submit(OUTPUT_MAIN)
    bad = compat.submit("print('about to fail')\nraise SystemExit(3)\n")
    for task_id in (good, bad):
        # HiveMind calls every result COMPLETED and has no exit codes.
        done = wait_for(compat.cli, task_id, {"COMPLETED", "FAILED"})
        assert done["status"] == "COMPLETED" and done["exit_code"] is None, done
    with compat.result(good) as result:
        assert result.read("output/out.txt") == b"42"
        assert "Status: Success" in result.read("execution_log.txt").decode()
    with compat.result(bad) as result:
        assert "Status: Failed" in result.read("execution_log.txt").decode()
    assert "hello from the task" in compat.cli("tasks", "logs", good).stdout
    # Taken from the pool's address (loopback here) without a secret; refused from anywhere else.
    port = node["port"]
    asked = asyncio.run(rpc("127.0.0.2", port, None, "StopTaskExecution", pb.StopTaskExecutionRequest(task_id="x")))
    assert asked.message == "Task x not running"  # type: ignore[attr-defined]
    for method, request in (
        ("ExecuteTask", pb.ExecuteTaskRequest(task_id="evil", task_zip=task_zip("print('pwned')\n"))),
        ("StopTaskExecution", pb.StopTaskExecutionRequest(task_id=good)),
    ):
        reply = asyncio.run(rpc("127.0.0.2", port, OTHER_HOST, method, request))
        assert not reply.success and "pool's address only" in reply.message, reply  # type: ignore[attr-defined]
    assert worker.poll() is None
    text = log_of(compat, "w1")
    assert "weaker than with our pool: no worker secret" in text and f"refused a call from {OTHER_HOST}" in text
    assert "w1-pass-123" not in text


def test_hivemind_worker_refusals_are_clear(compat: Pool) -> None:
    password = compat.add_user("w1", "w1-pass-123")
    loopback = compat.worker("w1", password, "--listen", "127.0.0.1:0")
    _, err = loopback.communicate(timeout=30)
    assert loopback.returncode == 2 and "never dials 127.0.0.1" in err, err
    wrong = compat.tmp / "wrong.password"
    wrong.write_text("not-it\n")
    refused = compat.worker("w1", wrong)
    _, err = refused.communicate(timeout=30)
    assert refused.returncode == 4 and "refused the login of w1" in err and "not-it" not in err, err


def test_our_pool_takes_hivemind_style_workers(ours: Pool) -> None:
    password = ours.add_user("w2", "w2-pass-123")
    ours.worker("w2", password)
    node = ours.node("w2")
    assert node["kind"] == "hivemind" and node["peer"] == "127.0.0.1"
    admin_login(ours.cli)
    shown = ours.cli.json("nodes", "show", "w2")["node"]
    assert "HiveMind protocol" in shown["isolation"] and shown["online"], shown
    good = ours.submit(OUTPUT_MAIN)
    bad = ours.submit("raise SystemExit(3)\n")
    slow = ours.submit("import time\nprint('sleeping', flush=True)\ntime.sleep(60)\n")
    done = wait_for(ours.cli, good, {"COMPLETED", "FAILED"})
    assert (done["status"], done["worker"], done["exit_code"]) == ("COMPLETED", "w2", None), done
    failed = wait_for(ours.cli, bad, {"COMPLETED", "FAILED"})
    # No exit code on HiveMind's wire: the pool reads the worker's Status line, and the code stays unknown.
    assert failed["status"] == "FAILED" and failed["exit_code"] is None, failed
    assert "Status: Failed" in failed["message"], failed
    with ours.result(good) as result:
        assert result.read("output/out.txt") == b"42"
    wait_for(ours.cli, slow, {"RUNNING"})
    assert ours.cli("tasks", "stop", slow).returncode == 0
    assert wait_for(ours.cli, slow, {"STOPPED", "FAILED", "COMPLETED"})["status"] == "STOPPED"
    # gRPC in a HiveMind worker refuses a message over 4 MiB: such a zip is not sent to one, and says why.
    job = ours.tmp / "big.zip"
    job.write_bytes(task_zip("print('big')\n", **{"data.bin": os.urandom(5 * 1024 * 1024)}))
    big = str(ours.cli.json("tasks", "submit", str(job))["task_id"])
    deadline = time.monotonic() + 30
    while "4 MiB" not in (shown := ours.cli.json("tasks", "show", big)["task"])["message"]:
        assert shown["status"] == "PENDING" and time.monotonic() < deadline, shown
        time.sleep(0.2)


def test_our_pool_binds_hivemind_workers_to_their_address(ours: Pool) -> None:
    password = ours.add_user("w2", "w2-pass-123")
    ours.add_user("w3", "w3-pass-123")
    ours.worker("w2", password)
    ours.node("w2")
    admin_login(ours.cli)
    good = ours.submit(OUTPUT_MAIN)
    wait_for(ours.cli, good, {"COMPLETED"})
    login = asyncio.run(user_token(ours.address, "w2", "w2-pass-123"))
    pool = ("127.0.0.1", ours.port)
    attempts = {
        # A user registering as another user's node.
        "RegisterWorkerNode as w3": (
            "RegisterWorkerNode",
            pb.RegisterWorkerNodeRequest(node_id="w3", hostname="127.0.0.5", port=5000),
            login,
            None,
        ),
        # No token, from another address: not a repeat of w2's registration.
        "RegisterWorkerNode from elsewhere": (
            "RegisterWorkerNode",
            pb.RegisterWorkerNodeRequest(node_id="w2", hostname="127.0.0.5", port=5000),
            "",
            OTHER_HOST,
        ),
        "ReportStatus from elsewhere": (
            "ReportStatus",
            pb.RunningStatusRequest(node_id="w2", status="Idle"),
            "",
            OTHER_HOST,
        ),
        "TaskResultUpload from elsewhere": (
            "TaskResultUpload",
            pb.TaskResultUploadRequest(task_id=good, result_zip=b"", token=login),
            login,
            OTHER_HOST,
        ),
    }
    for name, (method, request, token, source) in attempts.items():
        reply = asyncio.run(rpc(*pool, source, method, request, token))
        assert not reply.success and reply.message.startswith("PERMISSION_DENIED"), (name, reply)  # type: ignore[attr-defined]
    assert ours.node("w2")["address"] == "127.0.0.2"
    with ours.result(good) as result:
        assert result.read("output/out.txt") == b"42"


def test_a_pool_without_the_flag_refuses_hivemind_workers(tmp_path: Path) -> None:
    with Pool(tmp_path) as pool:
        password = pool.add_user("w4", "w4-pass-123")
        worker = pool.worker("w4", password)
        _, err = worker.communicate(timeout=60)
        assert worker.returncode == 1 and "--accept-hivemind-workers" in err, err


async def user_token(address: str, user: str, password: str) -> str:
    async with grpc.aio.insecure_channel(address) as channel:
        reply = await pb_grpc.UserServiceStub(channel).Login(pb.LoginRequest(username=user, password=password))
    assert reply.success, reply.message
    return str(reply.token)
