"""`worker`: run a worker process that executes task zips for a pool."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from pathlib import Path

import psutil

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.core.errors import UsageError
from hivemind_tui.core.logging_setup import configure_logging, register_secret
from hivemind_tui.core.poolfile import running_pool
from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.nodepool.server import grpc_options, message_limit
from hivemind_tui.nodepool.task_runner import RunSettings, choose_task_python, task_user_for
from hivemind_tui.nodepool.worker import Worker, WorkerConfig, default_node_id, task_base_dir

ORPHAN_CHECK_SECONDS = 1.0


def register(registry: CommandRegistry) -> None:
    cmd = registry.command(
        "worker",
        worker,
        "run a worker that executes tasks for a pool (--pool ADDR, default: this data dir's running pool)",
    )
    cmd.add_argument("--slots", type=int, default=None, help="tasks at once (default: CPU count)")
    cmd.add_argument(
        "--listen",
        metavar="HOST:PORT",
        default="127.0.0.1:0",
        help="where the pool reaches this worker (default 127.0.0.1, any free port)",
    )
    cmd.add_argument("--node-id", metavar="ID", help="default: host name plus a suffix kept in the data dir")
    cmd.add_argument("--secret-file", metavar="F", type=Path, help="default: DATA_DIR/pool/worker-secret")
    cmd.add_argument("--parent-pid", type=int, default=None, help=argparse.SUPPRESS)  # see local_workers
    cmd.set_defaults(process_kind="worker")


def _pool_address(ctx: Context) -> str:
    if ctx.settings.pool_address:
        return ctx.settings.pool_address
    info = running_pool(ctx.data_dir.pool)
    if info is None:
        raise UsageError("no --pool given and no embedded pool runs for this data dir (start `pool serve`)")
    return info.address


def _secret(ctx: Context) -> str:
    path = ctx.args.secret_file or ctx.data_dir.pool / "worker-secret"
    try:
        secret = path.read_text().strip()
    except OSError as exc:
        raise UsageError(f"cannot read the worker secret {path}: {exc.strerror}") from None
    if not secret:
        raise UsageError(f"the worker secret {path} is empty")
    register_secret(secret)
    return secret


async def _until_orphaned(parent_pid: int, stop: asyncio.Event) -> None:
    """A pool's local worker ends with it, even when the pool was killed and could not stop it."""
    while True:
        await asyncio.sleep(ORPHAN_CHECK_SECONDS)
        if os.getppid() != parent_pid:
            stop.set()
            return


async def worker(ctx: Context) -> Result:
    s = ctx.settings
    slots = ctx.args.slots if ctx.args.slots is not None else (psutil.cpu_count() or 1)
    if slots < 1:
        raise UsageError("--slots must be 1 or more")
    state_dir = ctx.data_dir.root / "worker"
    node_id = ctx.args.node_id or default_node_id(state_dir)
    configure_logging(ctx.data_dir.logs, f"worker-{node_id}", s.log_level)
    user = task_user_for(s.task_user)
    candidates = [sys.executable, "/usr/bin/python3", "/usr/local/bin/python3"]
    python = await asyncio.to_thread(choose_task_python, user, candidates) if user else sys.executable
    config = WorkerConfig(
        pool_address=_pool_address(ctx),
        node_id=node_id,
        listen=ctx.args.listen,
        slots=slots,
        secret=_secret(ctx),
        heartbeat_interval=s.heartbeat_interval,
        rpc_deadline=s.rpc_deadline,
        transfer_deadline=s.transfer_deadline,
        channel_options=grpc_options(s),
        cpu_score_cache=state_dir / "cpu-score.json",
        run=RunSettings(
            time_limit=s.task_time_limit,
            zip_limits=ZipLimits(s.max_unzipped_bytes, s.max_zip_ratio),
            max_result_bytes=message_limit(s) - 64 * 1024,
            task_user=user,
            python=python,
            base_dir=task_base_dir(node_id),
        ),
    )
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    running = Worker(config)
    try:
        port = await running.start()
    except OSError as exc:
        raise UsageError(str(exc)) from None
    ctx.warn(
        f"worker {node_id} on port {port}, {slots} slot(s), pool {config.pool_address}"
        + (f", tasks run as {user}" if user else ", tasks run as this user")
    )
    watch = asyncio.ensure_future(_until_orphaned(ctx.args.parent_pid, stop_event)) if ctx.args.parent_pid else None
    try:
        await stop_event.wait()
    finally:
        if watch is not None:
            watch.cancel()
        await running.close()
    return Result({"node_id": node_id, "stopped": True}, f"worker {node_id} stopped")
