"""TLS on every link and joining by token, with real processes on loopback.

A pool with certificates from `tls init`, its local worker and a worker that joined with a token: tasks
run on both over TLS. Plaintext, another CA, no client certificate under mutual TLS, and every bad token
are refused with one line that names the cause, and leave nothing behind.
"""

from __future__ import annotations

import datetime
import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from hivemind_tui.core import tls
from hivemind_tui.core.join_token import JoinToken, decode
from hivemind_tui.core.tls import TlsPaths
from tests.helpers import FAST_ENV, free_port, task_zip
from tests.integration.cli_harness import CLI, ENV, admin_login, serve, wait_for

pytestmark = pytest.mark.timeout(240)


def run_worker(
    data: Path, *args: str, env: dict[str, str] | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """A worker expected to stop by itself (refused): its exit code and its one line."""
    return subprocess.run(
        [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), "worker", *args],
        env={**os.environ, **FAST_ENV, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_worker(data: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), "worker", *args],
        env={**os.environ, **FAST_ENV, **(env or {})},
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(20)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def wait_for_nodes(cli: CLI, count: int, timeout: float = 60) -> list[dict]:
    deadline = time.monotonic() + timeout
    while True:
        nodes = [n for n in cli.json("nodes", "list")["nodes"] if n["online"]]
        if len(nodes) >= count:
            return nodes
        assert time.monotonic() < deadline, f"{len(nodes)} of {count} nodes registered"
        time.sleep(0.2)


def one_line(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.startswith("hivemind-tui:")]
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr and "grpc" not in proc.stderr.lower(), proc.stderr
    return lines[0]


def nothing_kept(data: Path) -> None:
    kept = data / "worker"
    assert not (kept / "join.json").exists() and not (kept / "worker-secret").exists()
    assert not (kept / "worker-key.pem").exists()


class TlsPool:
    def __init__(self, root: Path, env: dict[str, str] | None = None, workers: int = 1) -> None:
        self.data = root / "pool-host"
        self.cli = CLI(self.data)
        self.env = env or {}
        init = self.cli("tls", "init", "--host", "127.0.0.1", "--host", "localhost")
        assert init.returncode == 0, init.stderr
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        os.environ.update(self.env)
        try:
            self.proc = serve(self.data, self.port, "--workers", str(workers))
        finally:
            for key in self.env:
                os.environ.pop(key)

    def token(self, *args: str) -> str:
        return str(self.cli.json("pool", "join-token", *args)["token"])

    def close(self) -> None:
        stop(self.proc)


@pytest.fixture
def tls_pool(tmp_path: Path) -> Iterator[TlsPool]:
    pool = TlsPool(tmp_path)
    try:
        yield pool
    finally:
        pool.close()


def test_tasks_run_over_tls_on_a_local_and_a_joined_worker(tls_pool: TlsPool, tmp_path: Path) -> None:
    cli = tls_pool.cli
    assert json.loads((tls_pool.data / "pool" / "pool.json").read_text())["tls"] is True
    admin_login(cli)  # the CLI on the pool's data dir trusts its CA by itself
    wait_for_nodes(cli, 1)  # the local worker followed the pool into TLS
    token = tls_pool.token("--ttl", "1h")
    assert decode(token).addresses == (tls_pool.address,)
    remote = tmp_path / "worker-host"
    joined = start_worker(remote, "--slots", "1", "--node-id", "joined-1", env={"HIVEMIND_JOIN_TOKEN": token})
    try:
        nodes = wait_for_nodes(cli, 2)
        assert {n["node_id"] for n in nodes} >= {"joined-1"}
        kept = remote / "worker"
        for name in ("worker-secret", "worker-key.pem", "join.json"):
            assert stat.S_IMODE((kept / name).stat().st_mode) == 0o600, name
        job = tmp_path / "job.zip"
        # Long enough that all four are submitted before the first ends, however slow the CLI starts: the
        # local worker's slots fill and the joined worker gets the rest.
        job.write_bytes(task_zip("import time\ntime.sleep(8)\nprint('over tls')\n"))
        ids = [cli.json("tasks", "submit", str(job))["task_id"] for _ in range(4)]
        done = [wait_for(cli, task_id, {"COMPLETED", "FAILED"}, timeout=120) for task_id in ids]
        assert {d["status"] for d in done} == {"COMPLETED"}, done
        assert "joined-1" in {d["worker"] for d in done} and len({d["worker"] for d in done}) == 2, done
        log = cli.json("tasks", "logs", ids[0])
        assert "over tls" in json.dumps(log)
    finally:
        stop(joined)
    # A restart needs no token: the join was kept.
    again = start_worker(remote, "--slots", "1", "--node-id", "joined-1")
    try:
        wait_for_nodes(cli, 2)
    finally:
        stop(again)
    for log_file in [*(remote / "logs").glob("*.log"), *(tls_pool.data / "logs").glob("*.log")]:
        assert decode(token).secret not in log_file.read_text(), log_file


def test_plaintext_and_other_ca_workers_are_refused_with_one_line(tls_pool: TlsPool, tmp_path: Path) -> None:
    secret = tls_pool.data / "pool" / "worker-secret"
    plain = tmp_path / "plain"
    proc = run_worker(plain, "--pool", tls_pool.address, "--secret-file", str(secret))
    assert proc.returncode == 3 and "speaks TLS and this side does not" in one_line(proc)
    console = CLI(tmp_path / "console")(
        "login", "--pool", tls_pool.address, "--user", "admin", "--password-stdin", stdin="x\n"
    )
    assert console.returncode == 3 and "speaks TLS and this side does not" in one_line(console)
    other = tmp_path / "other"
    assert CLI(other)("tls", "init").returncode == 0
    proc = run_worker(
        other,
        "--pool",
        tls_pool.address,
        "--secret-file",
        str(secret),
        env={"HIVEMIND_TLS_CA": str(other / "tls" / "ca.pem")},
    )
    assert proc.returncode == 3 and "not signed by the trusted CA" in one_line(proc)


def test_an_expired_or_wrong_host_certificate_is_named(tmp_path: Path) -> None:
    data = tmp_path / "pool-host"
    cli = CLI(data)
    assert cli("tls", "init", "--host", "pool.example.invalid").returncode == 0
    port = free_port()
    proc = serve(data, port, "--workers", "0")
    try:
        refused = cli("login", "--user", "admin", "--password-stdin", stdin="x\n")
        assert refused.returncode == 3 and "does not name 127.0.0.1" in one_line(refused)
    finally:
        stop(proc)
    paths = TlsPaths(data / "tls")
    old = datetime.datetime.now(datetime.UTC) - datetime.timedelta(days=10)
    key, key_pem = tls.new_key()
    cert = tls.sign(paths.ca.read_bytes(), paths.ca_key.read_bytes(), key.public_key(), "pool", ["127.0.0.1"], 1, old)
    tls.write_pair(paths, "pool", cert, key_pem)
    proc = serve(data, port, "--workers", "0")
    try:
        refused = cli("login", "--user", "admin", "--password-stdin", stdin="x\n")
        assert refused.returncode == 3 and "has expired" in one_line(refused)
    finally:
        stop(proc)


def test_mutual_tls_refuses_a_console_without_a_client_certificate(tmp_path: Path) -> None:
    pool = TlsPool(tmp_path, env={"HIVEMIND_TLS_CLIENT_AUTH": "true"})
    try:
        admin_login(pool.cli)  # this data dir's client.pem
        wait_for_nodes(pool.cli, 1)  # the local worker shows its own certificate
        stranger = tmp_path / "stranger"
        env = {**os.environ, **ENV, "HIVEMIND_TLS_CA": str(pool.data / "tls" / "ca.pem")}
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "hivemind_tui",
                "--data-dir",
                str(stranger),
                "login",
                "--pool",
                pool.address,
                "--user",
                "admin",
                "--password-stdin",
            ],
            input="whatever\n",
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert proc.returncode == 3 and "certificate of its CA" in one_line(proc)
        joined = start_worker(tmp_path / "joiner", "--slots", "1", "--node-id", "joined-m", "--join", pool.token())
        try:
            assert "joined-m" in {n["node_id"] for n in wait_for_nodes(pool.cli, 2)}
        finally:
            stop(joined)
    finally:
        pool.close()


def test_bad_join_tokens_are_refused_and_leave_nothing(tls_pool: TlsPool, tmp_path: Path) -> None:
    short = tls_pool.token("--ttl", "1s")
    deadline = time.monotonic() + 30
    while tls_pool.cli.json("pool", "join-token", "--list")["tokens"][0]["state"] != "expired":
        assert time.monotonic() < deadline
        time.sleep(0.2)
    expired = run_worker(tmp_path / "expired", "--join", short)
    assert expired.returncode == 4 and "has expired" in one_line(expired)
    nothing_kept(tmp_path / "expired")

    revoked = tls_pool.token()
    tls_pool.cli.json("pool", "join-token", "--revoke", decode(revoked).token_id)
    proc = run_worker(tmp_path / "revoked", "--join", revoked)
    assert proc.returncode == 4 and "revoked" in one_line(proc)
    nothing_kept(tmp_path / "revoked")

    good = decode(tls_pool.token())
    tampered = JoinToken(good.addresses, "0" * 64, good.token_id, good.secret).encode()
    proc = run_worker(tmp_path / "tampered", "--join", tampered)
    assert proc.returncode == 3 and "fingerprint is not the token's" in one_line(proc)
    nothing_kept(tmp_path / "tampered")
    assert good.secret not in proc.stderr

    damaged = run_worker(tmp_path / "damaged", "--join", good.encode()[:-9])
    assert damaged.returncode == 2 and "damaged" in one_line(damaged)
    assert good.secret not in damaged.stderr

    # Used once, then revoked: the next host is refused, the first keeps working.
    first = start_worker(tmp_path / "first", "--slots", "1", "--node-id", "first", "--join", good.encode())
    try:
        admin_login(tls_pool.cli)
        wait_for_nodes(tls_pool.cli, 2)
        tls_pool.cli.json("pool", "join-token", "--revoke", "all")
        again = run_worker(tmp_path / "second", "--join", good.encode())
        assert again.returncode == 4 and "revoked" in one_line(again)
        nothing_kept(tmp_path / "second")
    finally:
        stop(first)
    for log_file in tmp_path.glob("*/logs/*.log"):  # every token above went on a command line
        text = log_file.read_text()
        for secret in (good.secret, good.encode(), short, tampered, decode(short).secret):
            assert secret not in text, log_file
