"""The console in a browser, through textual-serve: each browser session runs its own console process.

The page and its websocket answer only a request that carries a live session of the HTTP face (the
cookie `POST /api/login` sets); anything else is sent to the login page. textual-serve has no public
builder of its aiohttp application, so its own `_make_app` is used and mounted at /console/.
"""

from __future__ import annotations

import shlex
import sys
from collections.abc import Callable
from pathlib import Path

from aiohttp import web
from textual_serve.server import Server

LOGIN_PAGE = Path(__file__).with_name("login.html")


def console_command(data_dir: Path, config_file: Path | None) -> str:
    words = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data_dir)]
    if config_file is not None:
        words += ["--config", str(config_file)]
    return shlex.join(words)


async def console_app(command: str, public_url: str, allowed: Callable[[web.Request], bool]) -> web.Application:
    server = Server(command, title="hivemind-tui", public_url=public_url)
    app: web.Application = await server._make_app()

    @web.middleware
    async def require_login(request: web.Request, handler: Callable[[web.Request], object]) -> web.StreamResponse:
        if not allowed(request):
            if request.path.endswith("/ws"):
                return web.Response(status=401, text="log in first\n")
            raise web.HTTPFound("/")
        response = await handler(request)  # type: ignore[misc]
        assert isinstance(response, web.StreamResponse)
        return response

    app.middlewares.append(require_login)
    return app


async def login_page(request: web.Request) -> web.FileResponse:
    return web.FileResponse(LOGIN_PAGE, headers={"Cache-Control": "no-store"})
