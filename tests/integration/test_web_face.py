"""The HTTP face against a real pool process: `hivemind-tui serve` as a process, spoken to over loopback."""

from __future__ import annotations

import asyncio
import contextlib
import io
import json
import os
import re
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.helpers import free_port, make_zip, task_zip
from tests.integration.cli_harness import CLI, ENV, admin_login, wait_for, wait_for_a_node
from tests.integration.test_split_tasks import DP_MAIN, DP_MANIFEST, run_whole

METRICS_TOKEN = "metrics-" + "m" * 20


def multipart(fields: dict[str, str], file: bytes) -> tuple[bytes, str]:
    boundary = "hivemind-test-boundary"
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
        for name, value in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="job.zip"\r\n'
        "Content-Type: application/zip\r\n\r\n".encode()
        + file
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class Web:
    def __init__(self, port: int, https: ssl.SSLContext | None = None) -> None:
        self.base = f"{'https' if https else 'http'}://127.0.0.1:{port}"
        self.https = https

    def upload(self, token: str, file: bytes, **fields: str) -> tuple[int, Any]:
        body, kind = multipart(fields, file)
        request = urllib.request.Request(self.base + "/api/tasks", data=body, method="POST")  # noqa: S310
        request.add_header("Content-Type", kind)
        request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60, context=self.https) as reply:  # noqa: S310 - loopback
                return reply.status, json.loads(reply.read())
        except urllib.error.HTTPError as exc:
            return exc.code, json.loads(exc.read())

    def raw(self, path: str, token: str) -> tuple[int, bytes, str]:
        request = urllib.request.Request(self.base + path)  # noqa: S310 - http on loopback
        request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=60, context=self.https) as reply:  # noqa: S310 - loopback
                return reply.status, reply.read(), reply.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read(), exc.headers.get("Content-Type", "")

    def call(
        self, method: str, path: str, body: dict[str, Any] | None = None, token: str | None = None
    ) -> tuple[int, Any]:
        request = urllib.request.Request(self.base + path, method=method)  # noqa: S310 - http on loopback
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        try:
            with urllib.request.urlopen(request, timeout=30, context=self.https) as reply:  # noqa: S310 - loopback
                raw, status, kind = reply.read(), reply.status, reply.headers.get("Content-Type", "")
        except urllib.error.HTTPError as exc:
            raw, status, kind = exc.read(), exc.code, exc.headers.get("Content-Type", "")
        return status, json.loads(raw) if "json" in kind else raw.decode()


@contextlib.contextmanager
def serving(cli: CLI, https: ssl.SSLContext | None = None) -> Iterator[Web]:
    """`hivemind-tui serve` on a free loopback port of the CLI's data dir, until the block ends."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "hivemind_tui", "--data-dir", str(cli.data), "serve", "--listen", f"127.0.0.1:{port}"],
        env={**os.environ, **ENV, "HIVEMIND_METRICS_TOKEN": METRICS_TOKEN, "HIVEMIND_MAX_UNZIPPED_BYTES": "200000"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    face = Web(port, https)
    deadline = time.monotonic() + 30
    while True:
        try:
            if face.call("GET", "/health")[0] in (200, 503):
                break
        except OSError:
            pass
        assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
        assert time.monotonic() < deadline, "serve did not answer"
        time.sleep(0.1)
    try:
        yield face
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@pytest.fixture
def web(cli: CLI) -> Iterator[Web]:
    admin_login(cli)  # the remembered login the face's snapshot (and /metrics) uses
    with serving(cli) as face:
        yield face


def metrics(face: Web) -> dict[str, float]:
    status, text = face.call("GET", "/metrics", token=METRICS_TOKEN)
    assert status == 200
    values = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            labels = ",".join(f"{k}={v}" for k, v in sorted(sample.labels.items()))
            values[f"{sample.name}{{{labels}}}" if labels else sample.name] = sample.value
    return values


def cluster_figures(values: dict[str, float]) -> dict[str, float]:
    """What /metrics and `status --json` both tell: pool up, nodes, tasks by status, active alerts."""
    return {
        k: v
        for k, v in values.items()
        if k.startswith(("hivemind_pool_up", "hivemind_nodes", "hivemind_tasks", "hivemind_alerts"))
    }


def same_moment_as_status(web: Web, cli: CLI) -> dict[str, float]:
    """/metrics with `status --json` taken between two scrapes that agree (nothing moved meanwhile): every
    figure both tell is the same."""
    deadline = time.monotonic() + 30
    while True:
        before = metrics(web)
        status = cli.json("status")
        after = metrics(web)
        if cluster_figures(before) == cluster_figures(after):
            break
        assert time.monotonic() < deadline, "the metrics never held still"
    told = {
        "hivemind_pool_up": float(status["pool"]["reachable"]),
        "hivemind_alerts_active": float(len(status["alerts"])),
        "hivemind_nodes{state=online}": float(status["nodes"]["online"]),
        "hivemind_nodes{state=offline}": float(status["nodes"]["total"] - status["nodes"]["online"]),
    }
    told |= {f"hivemind_tasks{{status={s}}}": float(n) for s, n in status["tasks"].items()}
    assert {k: after.get(k, 0.0) for k in told} == told
    assert all(v == 0 for k, v in cluster_figures(after).items() if k.startswith("hivemind_tasks") and k not in told)
    return after


def test_health_api_and_metrics(cli: CLI, web: Web, tmp_path: Path) -> None:
    status, health = web.call("GET", "/health")
    assert status == 200 and health["status"] == "healthy"
    with urllib.request.urlopen(web.base + "/health", timeout=30) as reply:  # noqa: S310 - loopback only
        assert reply.headers["X-Content-Type-Options"] == "nosniff"
    with urllib.request.urlopen(web.base + "/", timeout=30) as reply:  # noqa: S310 - the login page
        assert "default-src 'self'" in reply.headers["Content-Security-Policy"]
    assert set(health) == set(cli.json("health"))  # the CLI's health JSON, key for key
    assert "token" not in json.dumps(health)

    assert web.call("GET", "/api/tasks")[0] == 401
    status, refused = web.call("POST", "/api/login", {"user": "admin", "password": "wrong"})
    assert status == 401 and refused["error"]["code"]
    assert web.call("POST", "/api/login", {"user": "admin"})[0] == 422
    password = (cli.data / "pool" / "admin-password").read_text().strip()
    status, login = web.call("POST", "/api/login", {"user": "admin", "password": password})
    assert status == 200 and login["role"] == "admin" and login["expires_at"] > time.time()
    token = login["token"]
    pool_tokens = [json.loads(p.read_text())["token"] for p in (cli.data / "tokens").glob("*.json")]
    assert pool_tokens and all(t not in json.dumps(login) for t in pool_tokens)  # the pool's token stays inside

    wait_for_a_node(cli)
    job = tmp_path / "job.zip"
    job.write_bytes(task_zip())
    task_id = cli.json("tasks", "submit", str(job))["task_id"]
    wait_for(cli, task_id, {"COMPLETED"})
    status, listed = web.call("GET", "/api/tasks", token=token)
    assert status == 200 and listed["tasks"] == cli.json("tasks", "list")["tasks"]  # the CLI's JSON, row for row
    assert web.call("GET", "/api/tasks?status=running", token=token)[1]["tasks"] == []
    assert web.call("GET", "/api/tasks?status=nonsense", token=token)[0] == 422
    status, one = web.call("GET", f"/api/tasks/{task_id}", token=token)
    assert status == 200 and one["task"]["status"] == "COMPLETED"
    status, missing = web.call("GET", "/api/tasks/no-such-task", token=token)
    assert status == 404 and missing["error"]["code"] == "TASK_NOT_FOUND"
    status, nodes = web.call("GET", "/api/nodes", token=token)
    assert status == 200 and [n["node_id"] for n in nodes["nodes"]] == [
        n["node_id"] for n in cli.json("nodes", "list")["nodes"]
    ]

    deadline = time.monotonic() + 30  # the snapshot catches up within a refresh or two
    while metrics(web).get("hivemind_tasks{status=COMPLETED}", 0) < 1:
        assert time.monotonic() < deadline, metrics(web)
        time.sleep(0.2)
    values = same_moment_as_status(web, cli)
    assert values["hivemind_pool_up"] == 1 and values["hivemind_nodes{state=online}"] == 1
    assert values["hivemind_alerts_active"] == 0 and "process_cpu_seconds_total" in values
    assert any(k.startswith("hivemind_node_cpu_ratio{node=") for k in values)
    assert values["hivemind_task_run_seconds_count"] >= 1 and values["hivemind_task_wait_seconds_count"] >= 1
    assert web.call("GET", "/metrics")[0] == 401  # metrics_token is set
    status, system = web.call("GET", "/api/system/status", token=token)
    assert status == 200 and system["pool"]["reachable"] is True and system["host"]["cpu_percent"] is not None

    assert web.call("POST", "/api/logout", token=token)[0] == 200
    assert web.call("GET", "/api/tasks", token=token)[0] == 401

    cli("pool", "stop")
    status, down = web.call("GET", "/health")
    assert status == 503 and down["status"] == "unhealthy" and down["problems"]


def test_failed_logins_are_rate_limited_per_address(web: Web, cli: CLI) -> None:
    for _ in range(5):
        assert web.call("POST", "/api/login", {"user": "admin", "password": "guess"})[0] == 401
    status, limited = web.call("POST", "/api/login", {"user": "admin", "password": "guess"})
    assert status == 429 and limited["error"]["code"] == "RATE_LIMITED"
    password = (cli.data / "pool" / "admin-password").read_text().strip()
    assert web.call("POST", "/api/login", {"user": "admin", "password": password})[0] == 429  # even the right one


def test_serve_refuses_plain_http_on_a_public_address(tmp_path: Path) -> None:
    proc = CLI(tmp_path / "data")("serve", "--listen", "0.0.0.0:5999")
    assert proc.returncode == 2 and "TLS proxy" in proc.stderr


def test_serve_speaks_https_with_the_pools_certificate(cli: CLI) -> None:
    assert cli("tls", "init").returncode == 0  # the face takes DATA_DIR/tls/pool.pem by itself
    trusting = ssl.create_default_context(cafile=str(cli.data / "tls" / "ca.pem"))
    with serving(cli, trusting) as web:
        status, health = web.call("GET", "/health")
        assert status == 200 and health["status"] == "healthy"
        with pytest.raises(urllib.error.URLError, match="CERTIFICATE_VERIFY_FAILED"):  # a client without the CA
            urllib.request.urlopen(web.base + "/health", timeout=30)  # noqa: S310 - loopback only
        with pytest.raises((ConnectionError, urllib.error.URLError)):  # and plain HTTP gets no answer
            urllib.request.urlopen(web.base.replace("https", "http") + "/health", timeout=30)  # noqa: S310
        password = (cli.data / "pool" / "admin-password").read_text().strip()
        body = json.dumps({"user": "admin", "password": password}).encode()
        request = urllib.request.Request(web.base + "/api/login", data=body, method="POST")  # noqa: S310
        request.add_header("Content-Type", "application/json")
        with urllib.request.urlopen(request, timeout=30, context=trusting) as reply:  # noqa: S310 - loopback
            cookie = reply.headers["Set-Cookie"]
        assert "Secure" in cookie and "HttpOnly" in cookie


def test_submit_log_result_stop_and_alerts(cli: CLI, web: Web) -> None:
    password = (cli.data / "pool" / "admin-password").read_text().strip()
    token = web.call("POST", "/api/login", {"user": "admin", "password": password})[1]["token"]
    wait_for_a_node(cli)
    status, made = web.upload(token, task_zip("print('from the web')\n"), priority="3")
    assert status == 201 and made["status"] == "PENDING" and made["dry_run"] is False, made
    task_id = made["task_id"]
    wait_for(cli, task_id, {"COMPLETED"})
    assert cli.json("tasks", "show", task_id)["task"]["priority"] == 3  # the form's options reached the pool
    status, log = web.call("GET", f"/api/tasks/{task_id}/log", token=token)
    assert status == 200 and "from the web" in log["log"] and log["next_offset"] == len(log["log"].encode())
    assert web.call("GET", f"/api/tasks/{task_id}/log?offset={log['next_offset']}", token=token)[1]["log"] == ""
    assert web.call("GET", f"/api/tasks/{task_id}/log?offset=-1", token=token)[0] == 422
    status, body, kind = web.raw(f"/api/tasks/{task_id}/result", token)
    assert status == 200 and kind == "application/zip" and body[:2] == b"PK"
    assert not list((cli.data / "staging" / "downloads").glob("*"))  # the temp copy is gone

    status, dry = web.upload(token, task_zip(), dry_run="true", shards="2")
    assert status == 200 and dry["dry_run"] is True and dry["subtasks"] == []
    assert web.upload(token, b"x" * 300_000)[0] == 413  # over max_unzipped_bytes, refused while it streams
    assert web.upload(token, task_zip(), shards="zero")[0] == 422
    assert not list((cli.data / "staging" / "uploads").glob("*"))  # nothing half-written is left
    assert (cli.data / "staging").stat().st_mode & 0o777 == 0o700

    slow = web.upload(token, task_zip("import time\ntime.sleep(60)\n"))[1]["task_id"]
    wait_for(cli, slow, {"RUNNING"})
    status, stopped = web.call("POST", f"/api/tasks/{slow}/stop", token=token)
    assert status == 200 and stopped["stopped"] == [slow], stopped  # what the pool answered, as `tasks stop`
    wait_for(cli, slow, {"STOPPED"})
    entries = cli.json("audit")["entries"]
    assert any(e["action"] == "login" and "HTTP API" in e["detail"] for e in entries), entries
    assert any(e["action"] == "stop" and e["target"] == slow and e["actor"] == "admin" for e in entries), entries

    add = cli("pool", "add-user", "viewer1", "--role", "viewer", "--password-stdin", stdin="pw-viewer-123\n")
    assert add.returncode == 0, add.stderr
    viewer = web.call("POST", "/api/login", {"user": "viewer1", "password": "pw-viewer-123"})[1]["token"]
    status, refused = web.upload(viewer, task_zip())
    assert status == 403 and refused["error"]["code"]
    status, alerts = web.call("GET", "/api/alerts", token=token)
    assert status == 200 and isinstance(alerts["alerts"], list)


def test_a_split_task_by_multipart_and_the_errors_of_the_api(cli: CLI, web: Web, tmp_path: Path) -> None:
    password = (cli.data / "pool" / "admin-password").read_text().strip()
    token = web.call("POST", "/api/login", {"user": "admin", "password": password})[1]["token"]
    wait_for_a_node(cli)
    rows = "id,name\n" + "".join(f"{i},name{i}\n" for i in range(1, 41))
    files = {"main.py": DP_MAIN, "hivemind.toml": DP_MANIFEST, "data/in.csv": rows}
    status, made = web.upload(token, make_zip(files), shards="4")
    assert status == 201 and len(made["subtasks"]) == 4, made
    parent = made["task_id"]
    deadline = time.monotonic() + 120
    while web.call("GET", f"/api/tasks/{parent}", token=token)[1]["task"]["status"] != "COMPLETED":
        assert time.monotonic() < deadline, web.call("GET", f"/api/tasks/{parent}", token=token)
        time.sleep(0.3)
    status, body, kind = web.raw(f"/api/tasks/{parent}/result", token)
    assert status == 200 and kind == "application/zip"
    with zipfile.ZipFile(io.BytesIO(body)) as zf:  # the four subtasks' outputs, concatenated in order
        assert zf.read("output/result.csv").splitlines() == run_whole(tmp_path, files)["output/result.csv"].splitlines()

    bad = make_zip({"main.py": "print(1)\n", "hivemind.toml": "[task\ntype = 1\n"})
    status, refused = web.upload(token, bad)
    assert status == 422 and "hivemind.toml" in refused["error"]["message"], refused
    add = cli("pool", "add-user", "bob", "--password-stdin", stdin="bob-pass-1\n")
    assert add.returncode == 0, add.stderr
    bob = web.call("POST", "/api/login", {"user": "bob", "password": "bob-pass-1"})[1]["token"]
    status, other = web.call("POST", f"/api/tasks/{parent}/stop", token=bob)  # the admin's task
    assert status in (403, 404) and other["error"]["code"], other
    assert parent not in json.dumps(web.call("GET", "/api/tasks", token=bob)[1])  # nor listed to bob
    status, finished = web.call("POST", f"/api/tasks/{parent}/stop", token=token)  # nothing left to stop
    assert status == 200 and finished["status"] == "COMPLETED" and finished["stopped"] == [], finished
    assert web.call("GET", f"/api/tasks/{parent}", token=token)[1]["task"]["status"] == "COMPLETED"
    assert not list((cli.data / "staging" / "uploads").glob("*"))

    cli("pool", "stop")
    started = time.monotonic()
    status, down = web.call("GET", "/api/tasks", token=token)
    assert status == 503 and down["error"]["code"], down
    assert time.monotonic() - started < float(ENV.get("HIVEMIND_RPC_DEADLINE", "10")) * 3


class Chromium:
    """Debian's chromium, headless, driven over the DevTools protocol (one page)."""

    def __init__(self, profile: Path) -> None:
        self.port = free_port()
        self.proc = subprocess.Popen(
            [
                "chromium",
                "--headless=new",
                "--no-sandbox",
                "--disable-gpu",
                "--no-first-run",
                f"--remote-debugging-port={self.port}",
                f"--user-data-dir={profile}",
                "--window-size=1280,800",
                "about:blank",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        self._id = 0
        self.ws: Any = None

    async def connect(self, http: Any) -> None:
        deadline = time.monotonic() + 30
        while True:
            try:
                async with http.get(f"http://127.0.0.1:{self.port}/json/list") as reply:
                    pages = [t for t in await reply.json() if t["type"] == "page"]
                if pages:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "chromium did not start"
            await asyncio.sleep(0.2)
        self.ws = await http.ws_connect(pages[0]["webSocketDebuggerUrl"], max_msg_size=0)

    async def send(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json(timeout=30)
            if message.get("id") == self._id:
                assert "error" not in message, message
                return message["result"]

    async def evaluate(self, expression: str) -> Any:
        result = await self.send("Runtime.evaluate", expression=expression, returnByValue=True, awaitPromise=True)
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 30) -> Any:
        deadline = time.monotonic() + timeout
        while not (value := await self.evaluate(expression)):
            assert time.monotonic() < deadline, f"timed out waiting for {expression}"
            await asyncio.sleep(0.2)
        return value

    def close(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


# Keeps what the console sends to the page's terminal, as text, before textual-serve's own script runs.
RECORD_THE_TERMINAL = """
window.__terminal = [];
const decoder = new TextDecoder();
const NativeWebSocket = window.WebSocket;
window.WebSocket = class extends NativeWebSocket {
  constructor(...args) {
    super(...args);
    this.addEventListener("message", (e) => {
      if (typeof e.data !== "string") window.__terminal.push(decoder.decode(e.data, {stream: true}));
    });
  }
};
"""
ESCAPES = re.compile(r"\x1b(\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(\x07|\x1b\\)|[@-Z\\-_])")


async def terminal_text(browser: Chromium, since: int = 0) -> str:
    """What the console painted after the first `since` messages, escape sequences removed."""
    return ESCAPES.sub("", await browser.evaluate(f"window.__terminal.slice({since}).join('')"))


async def test_the_console_in_a_browser_sits_behind_the_login(cli: CLI, web: Web, tmp_path: Path) -> None:
    import aiohttp

    from tests.system import require_tools

    require_tools("chromium")
    add = cli("pool", "add-user", "viewer1", "--role", "viewer", "--password-stdin", stdin="pw-viewer-123\n")
    assert add.returncode == 0, add.stderr
    browser = Chromium(tmp_path / "profile")
    try:
        async with aiohttp.ClientSession() as http:
            await browser.connect(http)
            await browser.send("Page.enable")
            await browser.send("Page.addScriptToEvaluateOnNewDocument", source=RECORD_THE_TERMINAL)
            await browser.send("Page.navigate", url=web.base + "/console/")
            # Without a session the console is out of reach: the login page answers.
            await browser.until("document.getElementById('login') !== null")
            assert await browser.evaluate("location.pathname") == "/"
            async with http.get(web.base + "/console/ws") as refused:
                assert refused.status == 401
            await browser.evaluate(
                "document.getElementById('user').value = 'viewer1';"
                "document.getElementById('password').value = 'pw-viewer-123';"
                "document.getElementById('login').requestSubmit(); true"
            )
            await browser.until("location.pathname === '/console/'")
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as other:  # holds a live cookie
                # ...but speaks from another site's page, or from none: the websocket refuses.
                password = (cli.data / "pool" / "admin-password").read_text().strip()
                async with other.post(web.base + "/api/login", json={"user": "admin", "password": password}):
                    pass
                for origin, answer in (("http://evil.example", 403), (None, 403)):
                    headers = {"Origin": origin} if origin else {}
                    with pytest.raises(aiohttp.WSServerHandshakeError) as refused_ws:
                        await other.ws_connect(web.base + "/console/ws", headers=headers)
                    assert refused_ws.value.status == answer
            # Its own console process, logged in as the page's user (the host's remembered login is the
            # admin's), on the dashboard.
            deadline = time.monotonic() + 60
            while "This host" not in (painted := await terminal_text(browser)) or "viewer1 (viewer)" not in painted:
                assert time.monotonic() < deadline, painted[-2000:]
                await asyncio.sleep(0.2)
            assert "NODE" not in painted  # the node monitor's header, not yet shown
            assert list((cli.data / "web-consoles").glob("*.json"))  # its session, handed over in a file

            # Keys typed into the page reach the console: `n` opens the node monitor.
            mark = await browser.evaluate("window.__terminal.length")
            await browser.evaluate("document.querySelector('.xterm-helper-textarea').focus(); true")
            await browser.send("Input.dispatchKeyEvent", type="keyDown", key="n", text="n")
            await browser.send("Input.dispatchKeyEvent", type="keyUp", key="n")
            deadline = time.monotonic() + 30
            while "NODE" not in (after := await terminal_text(browser, mark)):
                assert time.monotonic() < deadline, after[-2000:]
                await asyncio.sleep(0.2)
            await browser.send("Page.navigate", url="about:blank")  # the websocket closes, the console ends
            deadline = time.monotonic() + 30
            while list((cli.data / "web-consoles").glob("*.json")):
                assert time.monotonic() < deadline, "the handed-over session outlived its console"
                await asyncio.sleep(0.2)
    finally:
        browser.close()
