"""The console in a browser, through textual-serve: each browser session runs its own console process.

The page and its websocket answer only a request that carries a live session of the HTTP face (the
cookie `POST /api/login` sets); anything else is sent to the login page, and the websocket also wants an
Origin naming this server. Each console process is handed
that browser session's pool login in a file of its own (0600, removed when the websocket closes), never the
login remembered on the host: a viewer who logs in on the page gets a viewer's console. textual-serve has
no public builder of its aiohttp application, so its own `_make_app` is used and mounted at /console/.
"""

from __future__ import annotations

import asyncio
import logging
import shlex
import sys
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from urllib.parse import urlsplit

from aiohttp import web
from textual_serve.app_service import AppService
from textual_serve.server import Server, to_int

LOGIN_PAGE = Path(__file__).with_name("login.html")

log = logging.getLogger(__name__)

# Writes the browser session's login to a file for one console process and removes it afterwards.
HandOver = Callable[[web.Request], AbstractContextManager[Path]]


def console_command(data_dir: Path, config_file: Path | None, pool: str) -> list[str]:
    words = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data_dir), "--pool", pool]
    if config_file is not None:
        words += ["--config", str(config_file)]
    return words


class ConsoleServer(Server):
    """textual-serve's server with one change: the command of each console names its own session file."""

    def __init__(self, command: list[str], public_url: str, hand_over: HandOver) -> None:
        super().__init__(shlex.join(command), title="hivemind-tui", public_url=public_url)
        self._words = command
        self._hand_over = hand_over

    async def handle_websocket(self, request: web.Request) -> web.WebSocketResponse:
        websocket = web.WebSocketResponse(heartbeat=15)
        width = to_int(request.query.get("width", "80"), 80)
        height = to_int(request.query.get("height", "24"), 24)

        async def close() -> None:
            await websocket.close()

        with self._hand_over(request) as session_file:
            command = shlex.join([*self._words, "--session-file", str(session_file)])
            app_service = AppService(
                command,
                write_bytes=websocket.send_bytes,
                write_str=websocket.send_str,
                close=close,
                download_manager=self.download_manager,
                debug=self.debug,
            )
            try:
                await websocket.prepare(request)
                await app_service.start(width, height)
                await self._process_messages(websocket, app_service)
            except asyncio.CancelledError:
                await websocket.close()
            except Exception:
                log.exception("the browser console failed")
            finally:
                await app_service.stop()
        return websocket


async def console_app(
    command: list[str], public_url: str, allowed: Callable[[web.Request], bool], hand_over: HandOver
) -> web.Application:
    app: web.Application = await ConsoleServer(command, public_url, hand_over)._make_app()

    @web.middleware
    async def require_login(request: web.Request, handler: Callable[[web.Request], object]) -> web.StreamResponse:
        if not allowed(request):
            if request.path.endswith("/ws"):
                return web.Response(status=401, text="log in first\n")
            raise web.HTTPFound("/")
        if request.path.endswith("/ws") and not same_origin(request):
            return web.Response(status=403, text="the console's websocket answers only its own page\n")
        response = await handler(request)  # type: ignore[misc]
        assert isinstance(response, web.StreamResponse)
        return response

    app.middlewares.append(require_login)
    return app


def same_origin(request: web.Request) -> bool:
    """The websocket's Origin names this server: another site's page cannot drive a console with the
    cookie the browser holds. The host is compared, not the scheme, so a TLS proxy in front still passes."""
    origin = request.headers.get("Origin", "")
    return bool(origin) and urlsplit(origin).netloc == request.host


async def login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(LOGIN_PAGE, headers={"Cache-Control": "no-store"})
