"""`serve`: the HTTP face (JSON API, /health, /metrics, the console) against the configured pool, until
SIGINT/SIGTERM. It speaks HTTPS with the pool's certificate whenever there is one (`tls init`, or the
tls_cert and tls_key settings); plain HTTP only on loopback, or anywhere with --insecure-public."""

from __future__ import annotations

import asyncio
import signal

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import resolve_address
from hivemind_tui.core.errors import UnreachableError, UsageError
from hivemind_tui.core.hosts import is_loopback
from hivemind_tui.core.tls_setup import https_context


def register(registry: CommandRegistry) -> None:
    cmd = registry.command(
        "serve", serve, "serve the HTTP face: JSON API, /health, /metrics, the console at /console/ (default :5000)"
    )
    cmd.add_argument("--listen", metavar="HOST:PORT", help="default: the web_listen setting")
    cmd.add_argument(
        "--insecure-public",
        action="store_true",
        help="allow a non-loopback address without TLS (put a TLS proxy in front)",
    )
    cmd.set_defaults(process_kind="serve")


async def serve(ctx: Context) -> Result:
    # Here, not at the top: every command imports this module to build the parser, and aiohttp with the web
    # face is a fifth of a second that `tasks list` or `status` would wait for.
    from aiohttp import web

    from hivemind_tui.services.host_metrics import PsutilMetrics
    from hivemind_tui.web.app import WebFace
    from hivemind_tui.web.console import console_command

    listen = ctx.args.listen or ctx.settings.web_listen
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise UsageError(f"--listen {listen}: expected HOST:PORT")
    https = https_context(ctx.settings)
    if https is None and not is_loopback(host) and not ctx.args.insecure_public:
        raise UsageError(
            f"refusing to serve plain HTTP on {listen}: passwords would cross the network in clear; run "
            "`hivemind-tui tls init --host HOST` (or set tls_cert and tls_key), or put a TLS proxy in front "
            "and pass --insecure-public"
        )
    address = await resolve_address(ctx, start=True)
    if address is None:
        raise UnreachableError("no pool is configured and the embedded pool could not start")
    metrics = PsutilMetrics(ctx.settings.mounts(ctx.data_dir.root))
    face = WebFace(ctx.settings, ctx.data_dir, address, metrics, secure_cookies=https is not None)
    scheme = "https" if https is not None else "http"
    bare = host.strip("[]")
    public = f"{scheme}://[{bare}]:{port}" if ":" in bare else f"{scheme}://{bare}:{port}"
    app = await face.app(console_command(ctx.data_dir.root, ctx.args.config, address), public)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        site = web.TCPSite(runner, bare, int(port), ssl_context=https)
        try:
            await site.start()
        except OSError as exc:
            raise UsageError(f"cannot listen on {listen}: {exc.strerror or exc}") from None
        bound = runner.addresses[0] if runner.addresses else (host, int(port))
        ctx.warn(f"serving {public.rpartition(':')[0]}:{bound[1]} for the pool at {address}")
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
    finally:
        await runner.cleanup()
    return Result({"listen": listen, "stopped": True}, "stopped")
