"""Every client command end to end against a real pool process with a real worker: JSON shapes, exit codes."""

from __future__ import annotations

import json
import signal
import time
import zipfile
from pathlib import Path

import psutil
import pytest

from tests.helpers import free_port, make_zip
from tests.integration.cli_harness import CLI, admin_login, serve, wait_for, wait_for_a_node


def test_commands_and_json_shapes(cli: CLI, tmp_path: Path) -> None:
    assert cli("balance").returncode == 4  # not logged in
    bad = cli.json("login", "--user", "admin", "--password-stdin", stdin="wrong\n", code=4)
    assert bad["error"]["code"] == "INVALID_CREDENTIALS"
    password = admin_login(cli)
    assert cli.json("whoami") == {
        "user": "admin",
        "role": "admin",
        "pool": f"127.0.0.1:{cli.port}",
        "expires_at": pytest.approx(time.time() + 3600, abs=120),
    }
    assert cli.json("--readonly", "whoami")["role"] == "viewer"
    assert cli.json("balance") == {"user": "admin", "balance": 1000}
    assert cli("pool", "add-user", "bob", "--password-stdin", stdin="bob-pass-1\n").returncode == 0
    assert cli.json("transfer", "bob", "5")["amount"] == 5
    assert cli.json("transfer", "bob", "100000", code=1)["error"]["code"] == "INSUFFICIENT_FUNDS"
    assert cli.json("--readonly", "transfer", "bob", "5", code=5)["error"]["code"] == "PERMISSION_DENIED"

    health = cli.json("health")
    assert health["status"] == "healthy" and health["database"]["ok"] and health["pool"]["reachable"]
    assert {"address", "reachable", "latency_ms", "extensions"} <= set(health["pool"])
    assert {"timestamp", "version", "problems"} <= set(health)

    wait_for_a_node(cli)
    nodes = cli.json("nodes", "list")
    assert nodes["supported"] is True
    node = nodes["nodes"][0]
    assert {
        "node_id",
        "hostname",
        "port",
        "status",
        "online",
        "cpu_usage",
        "memory_usage",
        "gpu_usage",
        "gpu_memory_usage",
        "running_tasks",
        "slots",
        "cpu_cores",
        "memory_gb",
        "last_heartbeat",
    } <= set(node)

    zip_path = tmp_path / "job.zip"
    zip_path.write_bytes(
        make_zip(
            {
                "main.py": "import os, time\nprint('line one', flush=True)\ntime.sleep(1)\n"
                "open('output/r.txt','w').write('done')\nprint('line two')"
            }
        )
    )
    from hivemind_tui.proto import nodepool_pb2 as pb  # the upload itself is the splitter's command

    del pb
    status = cli.json("status")
    assert {"pool", "user", "nodes", "tasks", "alerts", "host"} <= set(status)
    assert status["user"] == {"name": "admin", "role": "admin", "balance": 995}
    assert status["nodes"]["total"] >= 1 and {"cpu_percent", "memory_percent", "disk_percent", "load"} <= set(
        status["host"]
    )

    cli.json("nodes", "cordon", node["node_id"])
    assert cli.json("nodes", "list")["nodes"][0]["state"] == "cordoned"
    cli.json("nodes", "activate", node["node_id"])
    shown = cli.json("nodes", "show", node["node_id"])
    assert shown["node"]["node_id"] == node["node_id"] and isinstance(shown["history"], list)

    audit = cli.json("audit")["entries"]
    assert {e["action"] for e in audit} >= {"login", "transfer", "node_cordon", "node_activate"}
    assert cli.json("alerts") == {"alerts": []} or "alerts" in cli.json("alerts")

    cli.json("logout")
    assert cli("balance").returncode == 4
    log_text = "".join(p.read_text() for p in (cli.data / "logs").glob("*.log"))
    assert password not in log_text and "bob-pass-1" not in log_text


def test_health_when_pool_is_down_and_never_starts_it(tmp_path: Path) -> None:
    cli = CLI(tmp_path / "nopool")
    doc = cli.json("health", code=1)  # the harness's own timeout fails a health that hangs
    assert doc["status"] == "unhealthy" and doc["pool"]["reachable"] is False
    assert not (tmp_path / "nopool" / "pool" / "pool.json").exists()
    remote = cli.json("--pool", f"127.0.0.1:{free_port()}", "health", code=1)
    assert "cannot be reached" in remote["problems"][0]
    status = cli("--pool", f"127.0.0.1:{free_port()}", "status", "--json")
    assert status.returncode == 3 and json.loads(status.stdout)["pool"]["reachable"] is False


def test_pool_killed_mid_session_then_back(cli: CLI) -> None:
    admin_login(cli)
    workers = psutil.Process(cli.proc.pid).children()  # type: ignore[attr-defined]
    assert workers  # the pool's local worker
    cli.proc.send_signal(signal.SIGKILL)  # type: ignore[attr-defined]
    cli.proc.wait(timeout=10)  # type: ignore[attr-defined]
    _, alive = psutil.wait_procs(workers, timeout=10)
    assert alive == []  # a killed pool's workers end by themselves
    down = cli("--pool", f"127.0.0.1:{cli.port}", "balance", "--json")  # type: ignore[attr-defined]
    assert down.returncode == 3 and json.loads(down.stdout)["error"]["code"] == "UNREACHABLE"
    (cli.data / "pool" / "pool.json").unlink()
    cli.proc = serve(cli.data, cli.port)  # type: ignore[attr-defined]
    assert cli.json("balance")["balance"] == 1000  # the remembered session survives the pool restart


def test_degraded_pool_exit_codes(tmp_path: Path) -> None:
    data = tmp_path / "hm"
    port = free_port()
    proc = serve(data, port, "--hivemind-compat", "--workers", "0")
    cli = CLI(data)
    try:
        admin_login(cli, hivemind=True)
        assert cli.json("nodes", "list") == {"supported": False, "nodes": []}
        assert cli.json("nodes", "cordon", "x", code=6)["error"]["code"] == "NOT_SUPPORTED"
        health = cli.json("health")
        assert health["pool"]["extensions"] == []
        assert cli.json("logout") == {"logged_out": True, "user": "admin", "token_revoked": False}
        admin_login(cli, hivemind=True)
        assert "the token stays valid until it expires" in cli("logout").stdout
    finally:
        cli("pool", "stop")
        proc.wait(timeout=20)


def test_result_download_logs_and_stop(cli: CLI, tmp_path: Path) -> None:
    """Uses a task uploaded through the pool's own API, since `tasks submit` belongs to the splitter."""
    import asyncio

    import grpc

    from hivemind_tui.proto import nodepool_pb2 as pb
    from hivemind_tui.proto import nodepool_pb2_grpc as pb_grpc

    admin_login(cli)
    token = json.loads((next((cli.data / "tokens").iterdir())).read_text())["token"]

    async def upload(task_id: str, main: str) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{cli.port}") as channel:  # type: ignore[attr-defined]
            reply = await pb_grpc.MasterNodeServiceStub(channel).UploadTask(
                pb.UploadTaskRequest(task_id=task_id, task_zip=make_zip({"main.py": main}), token=token)
            )
            assert reply.success, reply.message

    asyncio.run(
        upload(
            "job-1",
            "import time\nprint('line one', flush=True)\ntime.sleep(1)\n"
            "open('output/r.txt','w').write('done')\nprint('line two')",
        )
    )
    follow = cli("tasks", "logs", "job-1", "--follow", timeout=60)
    assert follow.returncode == 0 and "line one" in follow.stdout and "line two" in follow.stdout
    listed = cli.json("tasks", "list")["tasks"]
    (task,) = [t for t in listed if t["task_id"] == "job-1"]
    assert task["status"] == "COMPLETED" and task["progress"] == {"done": 1, "total": 1}
    assert {
        "task_id",
        "owner",
        "parent_task_id",
        "status",
        "message",
        "progress",
        "task_type",
        "priority",
        "created_at",
        "updated_at",
        "worker",
    } <= set(task)
    out = tmp_path / "r.zip"
    assert cli.json("tasks", "result", "job-1", "--output", str(out))["bytes"] > 0
    with zipfile.ZipFile(out) as zf:
        assert zf.read("output/r.txt") == b"done"
    assert cli.json("tasks", "result", "job-1", "--output", str(out), code=2)["error"]["code"] == "USAGE"
    assert cli("tasks", "result", "job-1", "--output", str(out), "--force").returncode == 0
    assert cli.json("tasks", "logs", "job-1")["log"].count("line one") == 1
    asyncio.run(upload("job-2", "import time\ntime.sleep(60)"))
    wait_for(cli, "job-2", {"RUNNING"})
    assert cli.json("--readonly", "tasks", "stop", "job-2", code=5)
    assert cli.json("tasks", "stop", "job-2")["task_id"] == "job-2"
    assert wait_for(cli, "job-2", {"STOPPED", "FAILED", "COMPLETED"})["status"] == "STOPPED"
    assert cli.json("tasks", "list", "--status", "stopped")["tasks"][0]["task_id"] == "job-2"
    assert cli.json("tasks", "show", "nope", code=1)["error"]["code"] == "TASK_NOT_FOUND"


def test_watch_runs_bounded_and_records_history(cli: CLI) -> None:
    admin_login(cli)
    wait_for_a_node(cli)  # so that the refreshes have a node to sample
    done = cli.json("watch", "--iterations", "3")
    assert done == {"refreshes": 3}
    import sqlite3

    with sqlite3.connect(cli.data / "console.db") as db:
        assert db.execute("SELECT COUNT(*) FROM node_frames").fetchone()[0] >= 1
        assert db.execute("SELECT COUNT(DISTINCT ts) FROM task_counts").fetchone()[0] >= 0
