"""`pool serve` as a real process: pool.json, `pool status`, `pool stop`, SIGTERM, stale files, users."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

FAST = {"HIVEMIND_PASSWORD_HASH_COST": "min", "HIVEMIND_LOCAL_WORKERS": "0"}


def cli(data: Path, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **FAST}
    return subprocess.run(
        [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), *args],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=60,
    )


def start_serve(data: Path) -> subprocess.Popen[str]:
    env = {**os.environ, **FAST}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "hivemind_tui",
            "--data-dir",
            str(data),
            "pool",
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--workers",
            "0",
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if (data / "pool" / "pool.json").exists():
            return proc
        if proc.poll() is not None:
            raise AssertionError(proc.stderr.read())
        time.sleep(0.05)
    proc.kill()
    raise AssertionError("pool did not start")


def test_status_stop_and_sigterm(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert cli(data, "pool", "status").returncode == 1
    proc = start_serve(data)
    try:
        status = cli(data, "pool", "status", "--json")
        doc = json.loads(status.stdout)
        assert status.returncode == 0 and doc["running"] and doc["pid"] == proc.pid
        second = cli(data, "pool", "serve", "--listen", "127.0.0.1:0", "--workers", "0")
        assert second.returncode == 1 and "already runs" in second.stderr
        stop = cli(data, "pool", "stop", "--json")
        assert stop.returncode == 0 and json.loads(stop.stdout)["stopped"]
        assert proc.wait(timeout=10) == 0
        assert not (data / "pool" / "pool.json").exists()
        # Not a terminal: the admin password is not printed, only where it is.
        out, err = proc.communicate()
        password = (data / "pool" / "admin-password").read_text().strip()
        assert password not in out + err and "admin-password" in err
    finally:
        if proc.poll() is None:
            proc.kill()
    proc = start_serve(data)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    proc = start_serve(data)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=10) == 0


def test_stale_pool_json_is_detected(tmp_path: Path) -> None:
    data = tmp_path / "data"
    (data / "pool").mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (data / "pool" / "pool.json").write_text(json.dumps({"address": "127.0.0.1:1", "pid": dead.pid}))
    status = cli(data, "pool", "status", "--json")
    assert status.returncode == 1 and json.loads(status.stdout)["stale_file"] is True
    stop = cli(data, "pool", "stop", "--json")
    assert stop.returncode == 0 and json.loads(stop.stdout)["was_running"] is False
    assert not (data / "pool" / "pool.json").exists()


def test_refuses_public_address_without_tls(tmp_path: Path) -> None:
    result = cli(tmp_path, "pool", "serve", "--listen", "0.0.0.0:0", "--workers", "0")
    assert result.returncode == 2 and "without TLS" in result.stderr


def test_user_administration(tmp_path: Path) -> None:
    data = tmp_path / "data"
    assert (
        cli(
            data,
            "pool",
            "add-user",
            "dora",
            "--role",
            "viewer",
            "--password-stdin",
            "--balance",
            "7",
            stdin="s3cret-pass\n",
        ).returncode
        == 0
    )
    dup = cli(data, "pool", "add-user", "dora", "--password-stdin", "--json", stdin="x\n")
    assert dup.returncode == 1 and "exists" in json.loads(dup.stdout)["error"]["message"]
    bad = cli(data, "pool", "add-user", "bad name", "--password-stdin", stdin="x\n")
    assert bad.returncode == 1 and "INVALID_ARGUMENT" in bad.stderr
    no_tty = cli(data, "pool", "add-user", "eve")
    assert no_tty.returncode == 2 and "--password-stdin" in no_tty.stderr
    assert cli(data, "pool", "set-role", "dora", "operator").returncode == 0
    assert cli(data, "pool", "set-password", "dora", "--password-stdin", stdin="n3w-pass\n").returncode == 0
    assert cli(data, "pool", "disable-user", "dora").returncode == 0
    assert cli(data, "pool", "set-role", "ghost", "admin").returncode == 1
    users = json.loads(cli(data, "pool", "list-users", "--json").stdout)["users"]
    # The first pool command made the first-run admin, as `pool serve` would have.
    assert [(u["name"], u["role"]) for u in users] == [("admin", "admin"), ("dora", "operator")]
    assert users[1:] == [
        {
            "name": "dora",
            "role": "operator",
            "balance": 7,
            "disabled": True,
            "created_at": pytest.approx(time.time(), abs=120),
        }
    ]
    readonly = cli(data, "--readonly", "pool", "disable-user", "dora")
    assert readonly.returncode == 5
    log = (data / "logs" / "cli.log").read_text()
    assert "s3cret-pass" not in log and "n3w-pass" not in log
