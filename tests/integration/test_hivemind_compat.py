"""The CLI against `pool serve --hivemind-compat`, which answers as the public HiveMind pool does: its words,
its empty list for a bad token, its status codes on GetTasklog, its log layout, no exit codes, and new
signing keys (so no valid token) after a restart."""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import free_port, make_zip, task_zip
from tests.integration.cli_harness import CLI, admin_login, serve, wait_for
from tests.integration.test_split_tasks import DP_MAIN, DP_MANIFEST, run_whole


@pytest.fixture
def hm(tmp_path: Path) -> Iterator[CLI]:
    data = tmp_path / "hm"
    port = free_port()
    cli = CLI(data)
    cli.port = port  # type: ignore[attr-defined]
    cli.proc = serve(data, port, "--hivemind-compat", "--workers", "1")  # type: ignore[attr-defined]
    try:
        yield cli
    finally:
        cli("pool", "stop")
        cli.proc.wait(timeout=20)  # type: ignore[attr-defined]


def restart(cli: CLI) -> None:
    """Stop the pool and start it again on the same port: HiveMind then signs with a new random key."""
    assert cli("pool", "stop").returncode == 0
    cli.proc.wait(timeout=20)  # type: ignore[attr-defined]
    cli.proc = serve(cli.data, cli.port, "--hivemind-compat", "--workers", "1")  # type: ignore[attr-defined]


def submit(cli: CLI, tmp_path: Path, main: str, name: str) -> str:
    job = tmp_path / f"{name}.zip"
    job.write_bytes(task_zip(main))
    return str(cli.json("tasks", "submit", str(job))["task_id"])


def code_of(proc: subprocess.CompletedProcess[str]) -> str:
    return str(json.loads(proc.stdout)["error"]["code"]) if proc.stdout.strip() else ""


def test_an_invalid_session_is_noticed_everywhere(hm: CLI, tmp_path: Path) -> None:
    admin_login(hm, hivemind=True)
    done = submit(hm, tmp_path, "print('hello')\n", "done")
    wait_for(hm, done, {"COMPLETED"})
    rows = "id,name\n" + "".join(f"{i},name{i}\n" for i in range(1, 5))
    slow = {"main.py": "import time\ntime.sleep(30)\n" + DP_MAIN, "hivemind.toml": DP_MANIFEST, "data/in.csv": rows}
    (tmp_path / "slow.zip").write_bytes(make_zip(slow))
    parent = hm.json("tasks", "submit", str(tmp_path / "slow.zip"), "--shards", "2")["task_id"]
    restart(hm)  # every token issued before is now invalid, as after a HiveMind restart
    out = tmp_path / "r.zip"
    for command in (
        ("tasks", "list"),
        ("tasks", "show", done),
        ("tasks", "result", done, "--output", str(out)),
        ("tasks", "logs", done),
        ("tasks", "stop", done),
        ("balance",),
    ):
        proc = hm(*command, "--json")
        assert proc.returncode == 4, (command, proc.returncode, proc.stdout, proc.stderr)
        assert code_of(proc) == "SESSION_EXPIRED", (command, proc.stdout)
    assert not out.exists()  # no 0-byte result
    refused = hm("tasks", "stop", parent, "--json")
    assert refused.returncode == 4 and code_of(refused) == "SESSION_EXPIRED", refused.stdout
    admin_login(hm, hivemind=True)
    assert hm.json("tasks", "show", parent)["task"]["status"] != "STOPPED"  # what the pool answered: nothing

    wrong = hm("login", "--user", "admin", "--password-stdin", "--json", stdin="not-the-password\n")
    assert wrong.returncode == 4 and code_of(wrong) == "INVALID_CREDENTIALS", wrong.stdout


def test_hivemind_answers_mean_what_they_say(hm: CLI, tmp_path: Path) -> None:
    admin_login(hm, hivemind=True)
    three = submit(hm, tmp_path, "import sys\nprint('bye')\nsys.exit(3)\n", "three")
    shown = wait_for(hm, three, {"COMPLETED", "FAILED"})
    assert shown["status"] == "COMPLETED"  # HiveMind calls any run with a result COMPLETED...
    task = hm.json("tasks", "show", three)["task"]
    assert task["exit_code"] is None  # ...and sends no exit code: unknown, not 0
    assert task["owner"] == "admin" and task["created_at"] is not None  # known here, from the submit
    assert re.search(r"^exit_code\s+-$", hm("tasks", "show", three).stdout, re.MULTILINE)

    assert hm("pool", "add-user", "bob", "--password-stdin", stdin="bob-pass-1\n").returncode == 0
    bob = CLI(hm.data.parent / "bob")
    bob_pool = ("--pool", f"127.0.0.1:{hm.port}")  # type: ignore[attr-defined]
    login = bob(*bob_pool, "login", "--user", "bob", "--password-stdin", stdin="bob-pass-1\n")
    assert login.returncode == 0, login.stderr
    for command in (("tasks", "stop", three), ("tasks", "result", three, "--output", str(tmp_path / "b.zip"))):
        proc = bob(*bob_pool, *command, "--json")
        # Another user's task: refused (exit 5), or not found where the client asks its list first.
        assert proc.returncode == 5 or code_of(proc) == "TASK_NOT_FOUND", (command, proc.returncode, proc.stdout)
    assert bob.json(*bob_pool, "tasks", "list")["tasks"] == []  # and not listed to bob

    stopped = hm.json("tasks", "stop", three)  # finished: the pool says COMPLETED and stops nothing
    assert stopped["status"] == "COMPLETED", stopped
    assert hm.json("tasks", "show", three)["task"]["status"] == "COMPLETED"


def test_logs_follow_a_log_the_pool_rewrites(hm: CLI, tmp_path: Path) -> None:
    admin_login(hm, hivemind=True)
    main = "import time\nfor i in range(200):\n    print(f'line {i}', flush=True)\n    time.sleep(0.05)\n"
    slow = submit(hm, tmp_path, main, "slow")
    wait_for(hm, slow, {"RUNNING"})
    follower = subprocess.Popen(
        hm.command("tasks", "logs", slow, "--follow"), stdout=subprocess.PIPE, text=True, env=hm.environment()
    )
    deadline = time.monotonic() + 30
    while "line 5" not in hm.json("tasks", "logs", slow)["log"]:
        assert time.monotonic() < deadline
        time.sleep(0.2)
    assert hm.json("tasks", "stop", slow)["status"] == "STOPPED"
    out, _ = follower.communicate(timeout=60)
    lines = out.splitlines()
    assert follower.returncode == 0
    output = [line for line in lines if line.startswith("line ")]
    assert output == [f"line {i}" for i in range(len(output))]  # in order, none twice, none missing
    assert any("請求停止" in line for line in lines)  # the system line the pool put above the output
    assert lines.count("--- Task Output ---") == 1


def test_a_parent_larger_than_the_pools_list_is_whole(hm: CLI, tmp_path: Path) -> None:
    """HiveMind lists at most 100 of a user's tasks: the subtasks it leaves out are asked for by id, and a
    result is aggregated from every subtask or refused."""
    admin_login(hm, hivemind=True)
    rows = "id,name\n" + "".join(f"{i},name{i}\n" for i in range(1, 111))
    files = {"main.py": DP_MAIN, "hivemind.toml": DP_MANIFEST, "data/in.csv": rows}
    job = tmp_path / "big.zip"
    job.write_bytes(make_zip(files))
    parent = hm.json("tasks", "submit", str(job), "--shards", "110")["task_id"]
    pool_db = hm.data / "pool" / "pool.db"
    deadline = time.monotonic() + 240
    while True:  # the pool's own database, read as an observer: every subtask finished
        with sqlite3.connect(f"file:{pool_db}?mode=ro", uri=True) as db:
            (left,) = db.execute("SELECT COUNT(*) FROM tasks WHERE status NOT IN ('COMPLETED', 'FAILED')").fetchone()
        if left == 0:
            break
        assert time.monotonic() < deadline, f"{left} subtasks unfinished"
        time.sleep(0.5)
    subtasks = hm.json("tasks", "show", parent)["subtasks"]
    assert sum(s["status"] == "UNKNOWN" for s in subtasks) == 10  # the pool lists 100 of the 110
    out = tmp_path / "big-result.zip"
    got = hm.json("tasks", "result", parent, "--output", str(out))["aggregate"]
    assert got["completed"] == got["total"] == 110, got
    with zipfile.ZipFile(out) as zf:
        assert zf.read("output/result.csv").splitlines() == run_whole(tmp_path, files)["output/result.csv"].splitlines()
    shown = hm.json("tasks", "show", parent)["task"]
    assert shown["status"] == "COMPLETED" and shown["progress"] == {"done": 110, "total": 110}, shown
