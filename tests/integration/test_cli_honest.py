"""The command line under bad input and odd states: one clear line, the right exit code, nothing half-done."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hivemind_tui.core.poolfile import PoolInfo, write_pool_info
from tests.helpers import free_port
from tests.integration.cli_harness import CLI, admin_login, serve


@pytest.mark.parametrize("where", ["/proc/hivemind-x", "/dev/null/x", "a-file"])
def test_an_unusable_data_dir_is_one_line_and_exit_2(tmp_path: Path, where: str) -> None:
    path = Path(where) if where.startswith("/") else tmp_path / where
    if where == "a-file":
        path.write_text("not a folder")
    for args in (("status",), ("vpn", "list"), ("pool", "list-users")):
        proc = CLI(path)(*args)
        assert proc.returncode == 2, (args, proc.stderr)
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
        assert lines[0].startswith(f"hivemind-tui: the data dir {path} cannot be used") and str(path) in lines[0]
        doc = json.loads(CLI(path)(*args, "--json").stdout)
        assert doc["error"]["code"] == "CONFIG"


def test_add_user_before_the_first_serve_still_makes_the_admin(tmp_path: Path) -> None:
    cli = CLI(tmp_path / "data")
    done = cli.json("pool", "add-user", "bob", "--password-stdin", stdin="bob-pass-1\n")
    assert done["name"] == "bob"
    assert (tmp_path / "data" / "pool" / "admin-password").stat().st_mode & 0o777 == 0o600
    users = {u["name"]: u["role"] for u in cli.json("pool", "list-users")["users"]}
    assert users == {"admin": "admin", "bob": "operator"}
    proc = serve(cli.data, free_port())
    try:
        admin_login(cli)
    finally:
        cli("pool", "stop")
        proc.wait(timeout=20)


def test_pool_stop_never_signals_a_process_that_is_not_our_pool(tmp_path: Path) -> None:
    """A pid reused after a crash: pool.json names a live process that is not the pool."""
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        pool_dir = tmp_path / "data" / "pool"
        pool_dir.mkdir(parents=True)
        write_pool_info(pool_dir, PoolInfo("127.0.0.1:1", stranger.pid, 0.0))
        cli = CLI(tmp_path / "data")
        assert cli.json("pool", "stop") == {"stopped": False, "was_running": False}
        assert stranger.poll() is None  # still alive: no signal was sent
        assert not (pool_dir / "pool.json").exists()
        assert cli("pool", "status").returncode == 1
    finally:
        stranger.kill()
        stranger.wait()


def test_unknown_status_filter_is_a_usage_error(cli: CLI) -> None:
    admin_login(cli)
    proc = cli("tasks", "list", "--status", "FOO")
    assert proc.returncode == 2
    assert "FOO" in proc.stderr and "PENDING" in proc.stderr and "COMPLETED" in proc.stderr
    assert cli.json("tasks", "list", "--status", "completed") == {"tasks": []}


@pytest.mark.parametrize("logged_in", [False, True])
def test_status_of_an_unreachable_pool_exits_3_with_its_json(cli: CLI, logged_in: bool) -> None:
    if logged_in:
        admin_login(cli)
    cli.json("pool", "stop")
    cli.proc.wait(timeout=20)  # type: ignore[attr-defined]
    for where in ((), ("--pool", f"127.0.0.1:{cli.port}")):  # type: ignore[attr-defined]
        proc = cli(*where, "status", "--json")
        assert proc.returncode == 3, (where, proc.stdout, proc.stderr)
        doc = json.loads(proc.stdout)
        assert doc["pool"]["reachable"] is False and "host" in doc


def test_a_task_that_has_not_run_has_no_exit_code(cli: CLI, tmp_path: Path) -> None:
    from tests.helpers import make_zip

    admin_login(cli)
    job = tmp_path / "wait.zip"
    job.write_bytes(make_zip({"main.py": "print(1)"}))
    submitted = cli.json("tasks", "submit", str(job), "--memory-gb", "100000")
    task = cli.json("tasks", "show", submitted["task_id"])["task"]
    assert task["status"] == "PENDING" and task["exit_code"] is None
    (listed,) = cli.json("tasks", "list")["tasks"]  # the list says why it waits, as `show` does
    assert listed["message"] == task["message"] and "100000 GB memory" in listed["message"]
    assert "exit_code       -\n" in cli("tasks", "show", submitted["task_id"]).stdout
    # Its staged copy waits for it, as private as the rest of the data dir.
    staging = cli.data / "staging"
    modes = {p.relative_to(staging).as_posix(): p.stat().st_mode & 0o777 for p in staging.rglob("*")}
    assert staging.stat().st_mode & 0o777 == 0o700
    assert modes == {submitted["task_id"]: 0o700, f"{submitted['task_id']}/0000.zip": 0o600}
