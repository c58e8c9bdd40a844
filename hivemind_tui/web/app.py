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
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir
from hivemind_tui.core.errors import ExitCode, HivemindError, NotAuthenticatedError, UsageError
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.services.health import health_report
from hivemind_tui.services.host_metrics import MetricsSource
from hivemind_tui.services.models import KNOWN_STATUSES
from hivemind_tui.services.monitor import ClusterSnapshot, Monitor
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.session import Session
from hivemind_tui.services.store import Store
from hivemind_tui.services.task_manager import TaskManager
from hivemind_tui.services.task_views import task_rows
from hivemind_tui.web.metrics import registry_for

log = logging.getLogger(__name__)

COOKIE = "hivemind_session"
HTTP_STATUS = {
    ExitCode.USAGE: 422,
    ExitCode.UNREACHABLE: 503,
    ExitCode.NOT_AUTHENTICATED: 401,
    ExitCode.NOT_PERMITTED: 403,
    ExitCode.NOT_SUPPORTED: 501,
}
NOT_FOUND_CODES = ("TASK_NOT_FOUND", "NODE_NOT_FOUND", "NOT_FOUND")
MAX_LOGIN_BODY = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def error_response(error: HivemindError) -> web.Response:
    status = 404 if error.code in NOT_FOUND_CODES else HTTP_STATUS.get(error.exit_code, 409)
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
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.address = address
        self.clock = clock
        self.client = PoolClient(settings, address, clock)
        self.watcher = Session(self.client, data_dir.tokens, clock)
        self.monitor = Monitor(settings, self.watcher, metrics, None, None, clock)
        self.snapshot: ClusterSnapshot | None = None
        self.sessions: dict[str, WebSession] = {}
        self.store = Store(data_dir.console_db, settings.db_busy_timeout)
        self.registry = registry_for(lambda: self.snapshot)

    def app(self) -> web.Application:
        app = web.Application(middlewares=[errors_as_json], client_max_size=MAX_LOGIN_BODY)
        app.router.add_get("/health", self.health)
        app.router.add_get("/metrics", self.metrics)
        app.router.add_post("/api/login", self.login)
        app.router.add_post("/api/logout", self.logout)
        app.router.add_get("/api/tasks", self.tasks)
        app.router.add_get("/api/tasks/{task_id}", self.task)
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
        session = Session(self.client, self.data_dir.tokens, self.clock)
        data = await session.login(user, password, remember=False)
        token = secrets.token_urlsafe(32)
        register_secret(token)
        expires = data.expires_at or self.clock() + self.settings.token_ttl
        self.sessions[token] = WebSession(session, expires)
        response = web.json_response({"token": token, "expires_at": expires, "user": user, "role": data.role})
        response.set_cookie(COOKIE, token, httponly=True, samesite="Strict", max_age=int(expires - self.clock()))
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
        report = await health_report(self.settings, self.data_dir.console_db, self.address)
        return web.json_response(report, status=200 if report["status"] == "healthy" else 503)

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
