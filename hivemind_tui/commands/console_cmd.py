"""The console (`hivemind-tui` with no command): find or start the pool, run the app, tidy up after.

With no pool configured the console uses the data dir's embedded pool, starting it (with one local
worker) if none runs. On exit it stops a pool it started itself, unless that pool still has unfinished
tasks or `--keep-pool` was given; then it leaves it running and says so.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from hivemind_tui.commands.base import Context, Result
from hivemind_tui.core.logging_setup import configure_logging

# The heavier modules (grpc, the screens) are imported where they are used, after argument parsing, so
# that only the console's own path pays for them.


def run_console(ctx: Context) -> Result:
    from hivemind_tui.core.heap import collect_less_often, one_malloc_arena

    one_malloc_arena()  # before the console starts any thread (core/heap.py)
    settings = ctx.settings
    configure_logging(ctx.data_dir.logs, "console", settings.log_level)
    started = False
    if settings.pool_address:
        address = settings.pool_address
    else:
        from hivemind_tui.core.poolfile import running_pool

        info = running_pool(ctx.data_dir.pool)
        if info is None:
            from hivemind_tui.services.pool_launcher import start_pool

            print(f"starting the embedded Node Pool of {ctx.data_dir.root}…", file=sys.stderr, flush=True)
            address = asyncio.run(start_pool(ctx.data_dir.root, ctx.args.config, workers=1))
            started = True
        else:
            address = info.address
    from hivemind_tui.ui.app import HivemindApp
    from hivemind_tui.ui.startup import DeferredBackend

    collect_less_often()  # a long-lived process with a large heap (core/heap.py)

    backend = DeferredBackend(
        settings,
        ctx.data_dir,
        address,
        not settings.pool_address,
        settings.mounts(ctx.data_dir.root),
        ctx.args.session_file,
    )
    HivemindApp(backend).run()
    if started:
        return Result({"pool": address}, exit_note(ctx.data_dir.pool, address, ctx.args.keep_pool))
    return Result({"pool": address}, "")


def exit_note(pool_dir: Path, address: str, keep_pool: bool) -> str:
    """After the console: stop the embedded pool it started unless that pool has unfinished tasks (asked of
    the pool's own database, so it does not matter whether anyone logged in) or --keep-pool was given; a
    pool left running is named, with the command that stops it."""
    from hivemind_tui.core.poolfile import stop_pool
    from hivemind_tui.nodepool.storage import PoolPaths, unfinished_tasks

    stop_hint = "`hivemind-tui pool stop` ends it"
    if keep_pool:
        return f"the embedded pool keeps running at {address} (--keep-pool); {stop_hint}"
    unfinished = unfinished_tasks(PoolPaths(pool_dir))
    if unfinished is None:
        return f"the embedded pool keeps running at {address}: its tasks could not be checked; {stop_hint}"
    if unfinished:
        return f"the embedded pool keeps running at {address}: {unfinished} unfinished task(s); {stop_hint}"
    stop_pool(pool_dir)
    return "the embedded pool this console started is stopped"
