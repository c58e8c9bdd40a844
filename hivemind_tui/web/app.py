"""The Master's HTTP face: JSON routes for scripts, /health for load balancers, /metrics for Prometheus.

One aiohttp application over the services the CLI uses, against one pool. A browser or script logs in
with POST /api/login and gets a token of this server's own (a bearer token, also set as an HttpOnly
cookie); the pool's token stays here, never sent out. Errors are the CLI's error object with the HTTP
status that matches its exit code. /metrics reads the snapshot a background loop refreshes every
`refresh_interval` with the data dir's remembered login (`hivemind-tui login`), so a scrape never calls
the pool; /health needs no login and reveals only states.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir, create_private_file, make_private_dir
from hivemind_tui.core.errors import (
    ExitCode,
    HivemindError,
    NotAuthenticatedError,
    NotPermittedError,
    NotSupportedError,
    UsageError,
)
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.services.alerts import Alerts
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.health import health_report
from hivemind_tui.services.host_metrics import MetricsSource
from hivemind_tui.services.models import KNOWN_STATUSES
from hivemind_tui.services.monitor import ClusterSnapshot, Monitor
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.session import Session
from hivemind_tui.services.store import Store
from hivemind_tui.services.task_actions import TaskActions
from hivemind_tui.services.task_manager import SubmitOptions, TaskManager
from hivemind_tui.services.task_views import task_rows
from hivemind_tui.web.console import console_app, login_page
from hivemind_tui.web.metrics import registry_for

log = logging.getLogger(__name__)

COOKIE = "hivemind_session"
HTTP_STATUS: dict[int, int] = {
    ExitCode.USAGE: 422,
    ExitCode.UNREACHABLE: 503,
    ExitCode.NOT_AUTHENTICATED: 401,
    ExitCode.NOT_PERMITTED: 403,
    ExitCode.NOT_SUPPORTED: 501,
}
NOT_FOUND_CODES = ("TASK_NOT_FOUND", "NODE_NOT_FOUND", "NOT_FOUND")
MAX_LOGIN_BODY = 64 * 1024
# Failed logins an address may make in a window before it is told to wait (the pool slows guesses too).
LOGIN_FAILURES = 5
LOGIN_WINDOW = 60.0
UPLOAD_CHUNK = 1024 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: HivemindError) -> web.Response:
    if error.code in NOT_FOUND_CODES:
        status = 404
    elif error.code == "TOO_LARGE":
        status = 413
    elif error.code == "RATE_LIMITED":
        status = 429
    else:
        status = HTTP_STATUS.get(error.exit_code, 409)
    return web.json_response({"error": {"code": error.code, "message": error.message}}, status=status)


@web.middleware
async def errors_as_json(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every refusal as the CLI's error object; an unexpected error is logged and answered 500."""
    try:
        return await handler(request)
    except HivemindError as exc:
        return error_response(exc)
    except web.HTTPException:
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path)
        return web.json_response({"error": {"code": "INTERNAL", "message": "internal error; see the log"}}, status=500)


# The login page and the console page run only their own scripts; textual-serve's page inlines some, and
# its terminal talks over a websocket to this same host.
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self' ws: wss:; frame-ancestors 'none'; base-uri 'none'"
)


@web.middleware
async def security_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
    response = await handler(request)
    response.headers.setdefault("X-Content-Type-Options", "nosniff")
    response.headers.setdefault("Referrer-Policy", "no-referrer")
    if request.path == "/" or request.path.startswith("/console/"):
        response.headers.setdefault("Content-Security-Policy", CONTENT_SECURITY_POLICY)
        response.headers.setdefault("X-Frame-Options", "DENY")
    return response


@dataclass
class WebSession:
    session: Session
    expires_at: float


class WebFace:
    def __init__(
        self,
        settings: Settings,
        data_dir: DataDir,
        address: str,
        metrics: MetricsSource | None,
        clock: Clock = system_clock,
        secure_cookies: bool = False,
    ) -> None:
        self.settings = settings
        self.secure_cookies = secure_cookies
        self.data_dir = data_dir
        self.address = address
        self.clock = clock
        self.client = PoolClient(settings, address, clock)
        self.watcher = Session(self.client, data_dir.tokens, clock)
        self.monitor = Monitor(settings, self.watcher, metrics, None, None, clock)
        self.snapshot: ClusterSnapshot | None = None
        self.sessions: dict[str, WebSession] = {}
        self.failed_logins: dict[str, list[float]] = {}
        self.store = Store(data_dir.console_db, settings.db_busy_timeout)
        self.registry = registry_for(lambda: self.snapshot)
        self._probe: asyncio.Future[dict[str, Any]] | None = None

    async def app(self, console_command: list[str] | None = None, public_url: str = "") -> web.Application:
        """The application; with `console_command`, also the console in the browser at /console/."""
        app = web.Application(middlewares=[security_headers, errors_as_json], client_max_size=MAX_LOGIN_BODY)
        if console_command is not None:
            app.router.add_get("/", login_page)
            app.add_subapp(
                "/console/", await console_app(console_command, public_url, self._has_session, self._hand_over)
            )
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_get("/api/tasks", self.tasks)
        app.router.add_post("/api/tasks", self.submit)
        app.router.add_get("/api/tasks/{task_id}", self.task)
        app.router.add_get("/api/tasks/{task_id}/log", self.log)
        app.router.add_post("/api/tasks/{task_id}/stop", self.stop)
        app.router.add_get("/api/tasks/{task_id}/result", self.result)
        app.router.add_get("/api/alerts", self.alerts)
        app.router.add_get("/api/nodes", self.nodes)
        app.router.add_get("/api/system/status", self.system_status)
        app.cleanup_ctx.append(self._lifetime)
        return app

    async def _lifetime(self, app: web.Application) -> AsyncIterator[None]:
        await self.store.open()
        self.watcher.load()
        refresher = asyncio.create_task(self._refresh_loop())
        yield
        refresher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await refresher
        await self.store.close()
        await self.client.close()

    async def _refresh_loop(self) -> None:
        while True:
            try:
                self.snapshot = await self.monitor.refresh()
            except HivemindError as exc:
                log.warning("snapshot refresh failed: %s", exc.message)
            except Exception:
                log.exception("snapshot refresh failed")
            await asyncio.sleep(self.settings.refresh_interval)

    # -- sessions -----------------------------------------------------------------------------------
    def _has_session(self, request: web.Request) -> bool:
        try:
            self._session(request)
        except NotAuthenticatedError:
            return False
        return True

    @contextlib.contextmanager
    def _hand_over(self, request: web.Request) -> Iterator[Path]:
        """The browser session's pool login in a file for its console process, gone when the console ends."""
        path = self.data_dir.root / "web-consoles" / f"{secrets.token_hex(8)}.json"
        self._session(request).write_to(path)
        try:
            yield path
        finally:
            path.unlink(missing_ok=True)

    def _session(self, request: web.Request) -> Session:
        header = request.headers.get("Authorization", "")
        token = (
            header.removeprefix("Bearer ").strip() if header.startswith("Bearer ") else request.cookies.get(COOKIE, "")
        )
        held = self.sessions.get(token) if token else None
        if held is None or held.expires_at <= self.clock():
            if held is not None:
                del self.sessions[token]
            raise NotAuthenticatedError("log in first: POST /api/login", code="SESSION_EXPIRED")
        return held.session

    async def login(self, request: web.Request) -> web.Response:
        try:
            body = await request.json()
        except (ValueError, UnicodeDecodeError):
            raise UsageError('expected a JSON body {"user": ..., "password": ...}') from None
        user, password = (body.get("user"), body.get("password")) if isinstance(body, dict) else (None, None)
        if not isinstance(user, str) or not isinstance(password, str) or not user or not password:
            raise UsageError('expected a JSON body {"user": ..., "password": ...}')
        address = request.remote or "?"
        now = self.clock()
        recent = [t for t in self.failed_logins.get(address, []) if now - t < LOGIN_WINDOW]
        if len(recent) >= LOGIN_FAILURES:
            raise RateLimitedError(f"too many failed logins from {address}; wait {LOGIN_WINDOW:.0f} s")
        session = Session(self.client, self.data_dir.tokens, self.clock)
        try:
            data = await session.login(user, password, remember=False)
        except NotAuthenticatedError:
            self.failed_logins[address] = [*recent, now]
            if len(self.failed_logins) > 10_000:  # stays small however many addresses try
                self.failed_logins = {a: ts for a, ts in self.failed_logins.items() if now - ts[-1] < LOGIN_WINDOW}
            raise
        self.failed_logins.pop(address, None)
        token = secrets.token_urlsafe(32)
        register_secret(token)
        expires = data.expires_at or self.clock() + self.settings.token_ttl
        self.sessions[token] = WebSession(session, expires)
        await AuditLog(self.store).record(user, "login", self.address, f"HTTP API from {request.remote or '?'}")
        response = web.json_response({"token": token, "expires_at": expires, "user": user, "role": data.role})
        response.set_cookie(
            COOKIE,
            token,
            httponly=True,
            samesite="Strict",
            secure=self.secure_cookies,
            max_age=int(expires - self.clock()),
        )
        return response

    async def logout(self, request: web.Request) -> web.Response:
        session = self._session(request)
        await session.logout()
        self.sessions = {k: v for k, v in self.sessions.items() if v.session is not session}
        response = web.json_response({"logged_out": True})
        response.del_cookie(COOKIE)
        return response

    # -- routes -------------------------------------------------------------------------------------
    async def health(self, request: web.Request) -> web.Response:
        report = await self._health_probe()
        return web.json_response(report, status=200 if report["status"] == "healthy" else 503)

    def _health_probe(self) -> asyncio.Future[dict[str, Any]]:
        """One probe of the pool and the store at a time, on the face's own channel and connection: requests
        that arrive while it runs share its answer, so a crowd of load balancers costs one health rpc."""
        if self._probe is None or self._probe.done():
            self._probe = asyncio.ensure_future(
                health_report(self.settings, self.data_dir.console_db, self.address, self.client, self.store)
            )
        return asyncio.shield(self._probe)

    async def metrics(self, request: web.Request) -> web.Response:
        wanted = self.settings.metrics_token
        if wanted:
            given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
            if not hmac.compare_digest(given.encode(), wanted.encode()):
                return web.Response(status=401, text="a bearer token is required (metrics_token)\n")
        body = await asyncio.to_thread(generate_latest, self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def tasks(self, request: web.Request) -> web.Response:
        session = self._session(request)
        status = request.query.get("status", "").upper()
        if status and status not in KNOWN_STATUSES:
            raise UsageError(f"unknown status {status!r}; one of {', '.join(KNOWN_STATUSES)}")
        try:
            since = float(request.query.get("updated_since", "0"))
        except ValueError:
            raise UsageError("updated_since must be unix seconds") from None
        _, rows = await task_rows(session, self._manager(session))
        rows = [r for r in rows if (not status or r["status"] == status) and (r["updated_at"] or 0) >= since]
        return web.json_response({"tasks": rows})

    async def task(self, request: web.Request) -> web.Response:
        session = self._session(request)
        task_id = request.match_info["task_id"]
        _, rows = await task_rows(session, self._manager(session))
        for row in rows:
            if row["task_id"] == task_id:
                return web.json_response({"task": row})
        raise HivemindError(f"no task {task_id}", code="TASK_NOT_FOUND")

    async def nodes(self, request: web.Request) -> web.Response:
        session = self._session(request)
        listed = await session.call(session.client.list_nodes)
        return web.json_response({"supported": listed.supported, "nodes": [n.as_json() for n in listed.nodes]})

    async def system_status(self, request: web.Request) -> web.Response:
        self._session(request)
        snap = self.snapshot
        if snap is None:
            return web.json_response({"error": {"code": "NOT_READY", "message": "no snapshot yet"}}, status=503)
        return web.Response(text=json.dumps(snap.status_json()), content_type="application/json")

    def _manager(self, session: Session) -> TaskManager:
        return TaskManager(self.settings, session, self.store, self.data_dir.root / "staging")

    def _actions(self, session: Session, what: str) -> TaskActions:
        """The CLI's task actions, as the session's user; viewers and read-only servers change nothing."""
        if self.settings.readonly:
            raise NotPermittedError(f"read-only: {what} changes state")
        if session.role == "viewer":
            raise NotPermittedError(f"a viewer may not {what}")
        return TaskActions(self._manager(session), AuditLog(self.store), session.username)

    async def submit(self, request: web.Request) -> web.Response:
        """multipart/form-data: the zip as `file` (streamed to disk, never held whole), and the options of
        `tasks submit` as fields (task_type, priority, shards, memory_gb, cpu_score, gpu_score,
        gpu_memory_gb, location, gpu_name, dry_run)."""
        session = self._session(request)
        actions = self._actions(session, "submit tasks")
        uploads = make_private_dir(self.data_dir.root / "staging" / "uploads")
        path = create_private_file(uploads / f"{secrets.token_hex(8)}.zip")
        try:
            fields = await self._receive(request, path)
            options = submit_options(fields)
            nodes = await session.call(session.client.list_nodes)
            if fields.get("dry_run", "").lower() in ("1", "true", "yes"):
                plan = await actions.manager.dry_run(path, options, nodes)
                return web.json_response(
                    {
                        "task_id": plan.parent_id,
                        "subtasks": [],
                        "status": "DRY_RUN",
                        "dry_run": True,
                        "plan": [p.as_json() for p in plan.subtasks],
                        "notes": plan.notes,
                        "problems": plan.problems,
                    }
                )
            done = await actions.submit(path, options, nodes, None)
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)
        return web.json_response(
            {
                "task_id": done.parent_id,
                "subtasks": done.task_ids if done.plan.split else [],
                "status": "PENDING",
                "dry_run": False,
                "plan": [p.as_json() for p in done.plan.subtasks],
                "notes": done.plan.notes,
            },
            status=201,
        )

    async def _receive(self, request: web.Request, path: Path) -> dict[str, str]:
        if not request.content_type.startswith("multipart/"):
            raise UsageError("send multipart/form-data with the zip as the field `file`")
        reader = await request.multipart()
        fields: dict[str, str] = {}
        got_file = False
        limit = self.settings.max_unzipped_bytes
        while (part := await reader.next()) is not None:
            if not isinstance(part, BodyPartReader) or not part.name:
                continue
            if part.name != "file":
                fields[part.name] = (await part.read(decode=True)).decode("utf-8", errors="replace")[:200]
                continue
            got_file, size = True, 0
            with path.open("wb") as out:
                while chunk := await part.read_chunk(UPLOAD_CHUNK):
                    size += len(chunk)
                    if size > limit:
                        raise TooLargeError(f"the zip is over {limit} bytes (max_unzipped_bytes)")
                    await asyncio.to_thread(out.write, chunk)
        if not got_file:
            raise UsageError("the field `file` (the task zip) is missing")
        return fields

    async def log(self, request: web.Request) -> web.Response:
        session = self._session(request)
        task_id = request.match_info["task_id"]
        try:
            offset = int(request.query.get("offset", "0"))
        except ValueError:
            raise UsageError("offset must be a whole number of bytes") from None
        if offset < 0:
            raise UsageError("offset must be 0 or more")
        try:
            text, next_offset = await session.call(
                partial(session.client.task_log_since, task_id=task_id, offset=offset)
            )
        except NotSupportedError:  # a HiveMind pool: the whole log, cut at the offset
            whole = await session.call(partial(session.client.task_log, task_id=task_id))
            data = whole.encode()
            text, next_offset = data[offset:].decode("utf-8", errors="replace"), len(data)
        return web.json_response({"task_id": task_id, "log": text, "offset": offset, "next_offset": next_offset})

    async def stop(self, request: web.Request) -> web.Response:
        session = self._session(request)
        task_id = request.match_info["task_id"]
        actions = self._actions(session, "stop tasks")
        tasks = (await session.call(session.client.list_tasks)).tasks
        stopped = await actions.stop(task_id, tasks)
        return web.json_response({"task_id": task_id, "status": stopped.status, "stopped": stopped.stopped})

    async def result(self, request: web.Request) -> web.StreamResponse:
        """The result zip (a parent's aggregated one), streamed from a private temp file."""
        session = self._session(request)
        task_id = request.match_info["task_id"]
        partial_result = request.query.get("partial", "").lower() in ("1", "true", "yes")
        actions = TaskActions(self._manager(session), AuditLog(self.store), session.username)
        tasks = (await session.call(session.client.list_tasks)).tasks
        downloads = make_private_dir(self.data_dir.root / "staging" / "downloads")
        path = downloads / f"{secrets.token_hex(8)}.zip"
        try:
            await actions.download(task_id, tasks, path, partial_result)
            response = web.StreamResponse(
                headers={
                    "Content-Type": "application/zip",
                    "Content-Disposition": f'attachment; filename="{safe_filename(task_id)}.zip"',
                }
            )
            await response.prepare(request)
            with path.open("rb") as source:
                path.unlink()  # gone from the folder at once; the open file streams on
                while chunk := await asyncio.to_thread(source.read, UPLOAD_CHUNK):
                    await response.write(chunk)
            await response.write_eof()
            return response
        finally:
            await asyncio.to_thread(path.unlink, missing_ok=True)

    async def alerts(self, request: web.Request) -> web.Response:
        self._session(request)
        include_cleared = request.query.get("all", "").lower() in ("1", "true", "yes")
        listed = await Alerts(self.store).list(include_cleared)
        return web.json_response({"alerts": [a.as_json() for a in listed]})


class TooLargeError(HivemindError):
    code = "TOO_LARGE"


class RateLimitedError(HivemindError):
    code = "RATE_LIMITED"


def safe_filename(task_id: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in task_id)[:100] or "result"


def submit_options(fields: dict[str, str]) -> SubmitOptions:
    """The options of `tasks submit`, from form fields; the same checks."""

    def number(name: str) -> int | None:
        raw = fields.get(name, "").strip()
        if not raw:
            return None
        try:
            value = int(raw)
        except ValueError:
            raise UsageError(f"{name} must be a whole number") from None
        if value < 0 or (name == "shards" and value < 1):
            raise UsageError(f"{name} must be {'1' if name == 'shards' else '0'} or more")
        return value

    resources: dict[str, Any] = {
        name: number(name) for name in ("memory_gb", "cpu_score", "gpu_score", "gpu_memory_gb")
    }
    resources["location"] = fields.get("location") or None
    resources["gpu_name"] = fields.get("gpu_name") or None
    return SubmitOptions(fields.get("task_type") or None, number("priority"), number("shards"), resources)
