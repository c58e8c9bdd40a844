"""The command line as a subprocess against a real pool process: helpers shared by the CLI tests."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import FAST_ENV

ENV = {**FAST_ENV, "HIVEMIND_REFRESH_INTERVAL": "0.3"}


class CLI:
    def __init__(self, data: Path) -> None:
        self.data = data

    def command(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "hivemind_tui", "--data-dir", str(self.data), *args]

    def environment(self) -> dict[str, str]:
        return {**os.environ, **ENV}

    def __call__(self, *args: str, stdin: str | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(*args),
            env=self.environment(),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=timeout,
        )

    def json(self, *args: str, code: int = 0, stdin: str | None = None) -> dict:
        proc = self(*args, "--json", stdin=stdin)
        assert proc.returncode == code, (args, proc.returncode, proc.stdout, proc.stderr)
        return json.loads(proc.stdout)


def serve(data: Path, port: int, *extra: str) -> subprocess.Popen:
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
            f"127.0.0.1:{port}",
            *extra,
        ],
        env={**os.environ, **ENV},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while not (data / "pool" / "pool.json").exists():
        assert time.monotonic() < deadline and proc.poll() is None
        time.sleep(0.05)
    return proc


def admin_login(cli: CLI, hivemind: bool = False) -> str:
    password = (cli.data / "pool" / "admin-password").read_text().strip()
    doc = cli.json("login", "--user", "admin", "--password-stdin", stdin=password + "\n")
    if hivemind:  # a HiveMind pool sends neither role nor expiry: operator, as the README says
        assert doc["role"] == "operator" and doc["expires_at"] is None
    else:
        assert doc["role"] == "admin" and doc["user"] == "admin" and doc["expires_at"] > time.time()
    return password


def wait_for_a_node(cli: CLI, timeout: float = 30) -> None:
    """Until the pool lists a node (its local worker has registered)."""
    deadline = time.monotonic() + timeout
    while not cli.json("nodes", "list")["nodes"]:
        assert time.monotonic() < deadline, "no node registered"
        time.sleep(0.2)


def wait_for(cli: CLI, task_id: str, statuses: set[str], timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        doc = cli.json("tasks", "show", task_id)["task"]
        if doc["status"] in statuses:
            return doc
        assert time.monotonic() < deadline, doc
        time.sleep(0.2)
