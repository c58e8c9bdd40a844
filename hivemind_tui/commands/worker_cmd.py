"""`worker`: run a worker process that executes task zips for a pool."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from dataclasses import dataclass, replace
from pathlib import Path

import grpc
import psutil

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.core import tls
from hivemind_tui.core.errors import ConfigError, HivemindError, TlsProblemError, UnreachableError, UsageError
from hivemind_tui.core.hosts import addresses_of, is_loopback, source_address_towards
from hivemind_tui.core.join_token import decode as decode_token
from hivemind_tui.core.logging_setup import configure_logging, register_secret
from hivemind_tui.core.poolfile import running_pool
from hivemind_tui.core.tls_names import node_label, worker_name
from hivemind_tui.core.tls_probe import ChannelSecurity, diagnose
from hivemind_tui.core.tls_setup import client_security, read_file, tls_paths
from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.nodepool.hivemind_worker import WEAKER, HivemindLogin, HivemindWorker
from hivemind_tui.nodepool.join_client import JoinState, join_pool
from hivemind_tui.nodepool.sandbox import Sandbox
from hivemind_tui.nodepool.server import grpc_options, message_limit
from hivemind_tui.nodepool.task_runner import (
    BaseDirBusy,
    RunSettings,
    choose_task_python,
    watch_tasks_without_threads,
)
from hivemind_tui.nodepool.worker import Worker, WorkerConfig, default_node_id, is_wildcard, task_base_dir

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
        default=None,
        help="where the pool reaches this worker (default 127.0.0.1, any free port; with --hivemind, 127.0.0.2 "
        "for a pool on this host, else every address)",
    )
    cmd.add_argument("--node-id", metavar="ID", help="default: host name plus a suffix kept in the data dir")
    cmd.add_argument("--secret-file", metavar="F", type=Path, help="default: DATA_DIR/pool/worker-secret")
    cmd.add_argument(
        "--join",
        metavar="TOKEN",
        default=None,
        help="join a pool with a token from `pool join-token` (or HIVEMIND_JOIN_TOKEN); kept afterwards, "
        "so later starts need no token",
    )
    cmd.add_argument(
        "--hivemind",
        action="store_true",
        help="speak HiveMind's worker protocol: log in as --user (the node is named after it), no worker secret",
    )
    cmd.add_argument("--user", metavar="NAME", help="with --hivemind: the pool user this worker logs in as")
    cmd.add_argument("--password-file", metavar="F", type=Path, help="with --hivemind: a file with the password")
    cmd.add_argument("--password-stdin", action="store_true", help="with --hivemind: read the password from stdin")
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


@dataclass(frozen=True)
class PoolLink:
    """Where the worker's pool is and how it is reached."""

    address: str
    secret: str
    security: ChannelSecurity | None
    serve_tls: tuple[bytes, bytes] | None


def _joined_link(state: JoinState, record: dict[str, object]) -> PoolLink:
    secret = read_file(state.secret, "the worker secret").decode().strip()
    register_secret(secret)
    address = str(record["pool"])
    if not record.get("tls"):
        return PoolLink(address, secret, None, None)
    cert, key = read_file(state.cert, "the worker certificate"), read_file(state.key, "the worker key")
    security = ChannelSecurity(read_file(state.ca, "the pool's CA"), str(state.ca), cert, key)
    return PoolLink(address, secret, security, (cert, key))


def _worker_pair(ctx: Context, node_id: str) -> tuple[bytes, bytes]:
    """This worker's certificate: the settings', or one the data dir's own CA issues (a local worker)."""
    s = ctx.settings
    if s.tls_client_cert and s.tls_client_key:
        return read_file(Path(s.tls_client_cert).expanduser(), "tls_client_cert"), read_file(
            Path(s.tls_client_key).expanduser(), "tls_client_key"
        )
    paths = tls_paths(s)
    name = "worker-" + node_label(node_id)
    if not paths.cert(name).exists():
        if not paths.ca_key.exists():
            raise ConfigError(
                "the pool speaks TLS and this worker has no certificate of its CA: join with a token "
                "(worker --join) or set tls_client_cert and tls_client_key (from `tls issue NODE_ID`)"
            )
        cert, key = tls.issue(paths.ca.read_bytes(), paths.ca_key.read_bytes(), node_id, [worker_name(node_id)])
        tls.write_pair(paths, name, cert, key)
    return paths.cert(name).read_bytes(), paths.key(name).read_bytes()


def _local_link(ctx: Context, node_id: str) -> PoolLink:
    address = _pool_address(ctx)
    security = client_security(ctx.settings, address)
    if security is None:
        return PoolLink(address, _secret(ctx), None, None)
    cert, key = _worker_pair(ctx, node_id)
    return PoolLink(address, _secret(ctx), replace(security, cert=cert, key=key), (cert, key))


async def _link(ctx: Context, node_id: str, state: JoinState) -> PoolLink:
    record = state.joined()
    token_text = ctx.args.join or os.environ.get("HIVEMIND_JOIN_TOKEN", "")
    if record is None and token_text:
        token = decode_token(token_text)
        address = await join_pool(token, node_id, state, ctx.settings.rpc_deadline)
        ctx.warn(f"joined the pool at {address} as {node_id}; later starts need no token")
        record = state.joined()
        assert record is not None
    elif record is not None and token_text:
        ctx.warn(f"already joined the pool at {record['pool']}: the token is not needed")
    if record is not None:
        return _joined_link(state, record)
    return await asyncio.to_thread(_local_link, ctx, node_id)


def _password(ctx: Context) -> str:
    if ctx.args.password_file is not None:
        try:
            password = str(ctx.args.password_file.read_text()).strip()
        except OSError as exc:
            raise UsageError(f"cannot read the password file {ctx.args.password_file}: {exc.strerror}") from None
    elif ctx.args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    else:
        raise UsageError("--hivemind needs the password: --password-file F or --password-stdin")
    if not password:
        raise UsageError("the password is empty")
    register_secret(password)
    return password


def _hivemind_login(ctx: Context, address: str, listen: str) -> HivemindLogin:
    """Who this worker logs in as, the IP it tells the pool to dial, and the pool's addresses."""
    pool_host = address.rpartition(":")[0].strip("[]")
    host = listen.rpartition(":")[0].strip("[]")
    hostname = source_address_towards(pool_host) if is_wildcard(host) else host
    if hostname in ("", "127.0.0.1"):
        raise UsageError(
            f"a HiveMind pool never dials {hostname or 'an empty host name'}: listen on 127.0.0.2 for a pool on "
            "this host, or on an address the pool can reach (--listen HOST:PORT)"
        )
    pool_hosts = addresses_of(pool_host)
    if not pool_hosts:
        raise UsageError(f"cannot resolve the pool's host {pool_host}")
    return HivemindLogin(ctx.args.user, _password(ctx), hostname, pool_hosts)


def _default_listen(ctx: Context, address: str) -> str:
    if ctx.args.listen:
        return str(ctx.args.listen)
    if not ctx.args.hivemind:
        return "127.0.0.1:0"
    return "127.0.0.2:0" if is_loopback(address.rpartition(":")[0]) else "0.0.0.0:0"


async def worker(ctx: Context) -> Result:
    s = ctx.settings
    slots = ctx.args.slots if ctx.args.slots is not None else (psutil.cpu_count() or 1)
    if slots < 1:
        raise UsageError("--slots must be 1 or more")
    if ctx.args.hivemind and not ctx.args.user:
        raise UsageError("--hivemind needs --user NAME: a HiveMind worker is the node named after its user")
    if ctx.args.hivemind and (ctx.args.join or ctx.args.node_id):
        raise UsageError("--hivemind takes neither --join nor --node-id: the node is named after --user")
    state_dir = ctx.data_dir.root / "worker"
    state = JoinState(state_dir)
    record = state.joined()
    node_id = (
        ctx.args.user
        if ctx.args.hivemind
        else ctx.args.node_id or (str(record["node_id"]) if record else "") or default_node_id(state_dir)
    )
    configure_logging(ctx.data_dir.logs, f"worker-{node_id}", s.log_level)
    hivemind: HivemindLogin | None = None
    if ctx.args.hivemind:
        address = _pool_address(ctx)
        listen = _default_listen(ctx, address)
        hivemind = _hivemind_login(ctx, address, listen)
        link = PoolLink(address, "", None, None)  # HiveMind speaks plaintext and has no worker secret
    else:
        listen = _default_listen(ctx, "")
        link = await _link(ctx, node_id, state)
    problem = await asyncio.to_thread(diagnose, link.address, link.security)
    if problem is not None:
        raise TlsProblemError(problem)
    watch_tasks_without_threads()
    sandbox = await asyncio.to_thread(Sandbox.detect, s.task_uids, s.task_network, s.task_bwrap)
    # A plain interpreter first, as HiveMind's worker gives each task a fresh venv: the task does not see the
    # worker's packages, and it starts without the worker's site-packages (.pth files) to import.
    candidates = [s.task_python] if s.task_python else ["/usr/bin/python3", "/usr/local/bin/python3", sys.executable]
    python = await asyncio.to_thread(choose_task_python, sandbox, candidates)
    config = WorkerConfig(
        pool_address=link.address,
        node_id=node_id,
        listen=listen,
        slots=slots,
        secret=link.secret,
        heartbeat_interval=s.heartbeat_interval,
        rpc_deadline=s.rpc_deadline,
        transfer_deadline=s.transfer_deadline,
        channel_options=grpc_options(s),
        cpu_score_cache=state_dir / "cpu-score.json",
        spool_dir=state_dir / "spool" / node_label(node_id),
        run=RunSettings(
            time_limit=s.task_time_limit,
            zip_limits=ZipLimits(s.max_unzipped_bytes, s.max_zip_ratio),
            max_result_bytes=message_limit(s) - 64 * 1024,
            sandbox=sandbox,
            python=python,
            base_dir=task_base_dir(node_id, state_dir, sandbox),
        ),
        pool_tls=link.security,
        serve_tls=link.serve_tls,
    )
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    running = Worker(config) if hivemind is None else HivemindWorker(config, hivemind)
    try:
        port = await running.start()
    except BaseDirBusy as exc:
        raise HivemindError(f"worker {node_id}: {exc}", code="NODE_IN_USE") from None
    except OSError as exc:
        await running.close()
        raise UsageError(str(exc)) from None
    except (HivemindError, grpc.aio.AioRpcError) as exc:
        await running.close()
        if isinstance(exc, grpc.aio.AioRpcError):
            raise UnreachableError(f"the pool at {config.pool_address} did not answer the login") from None
        raise
    ctx.warn(
        f"worker {node_id} on port {port}, {slots} slot(s), pool {config.pool_address}"
        + (" over TLS" if link.security else "")
        + (f", HiveMind protocol (the pool dials {hivemind.hostname})" if hivemind else "")
        + f"; tasks: {sandbox.describe()}"
    )
    if hivemind is not None:
        ctx.warn("HiveMind mode is weaker than our pool's protocol: " + "; ".join(WEAKER) + " (also in the log)")
    watch = asyncio.ensure_future(_until_orphaned(ctx.args.parent_pid, stop_event)) if ctx.args.parent_pid else None
    refused = asyncio.ensure_future(running.fatal.wait())
    try:
        await asyncio.wait([asyncio.ensure_future(stop_event.wait()), refused], return_when=asyncio.FIRST_COMPLETED)
    finally:
        if watch is not None:
            watch.cancel()
        await running.close()
    if running.fatal.is_set():
        code = "NODE_IN_USE" if hivemind is None else "PERMISSION_DENIED"
        raise HivemindError(f"the pool refused this worker: {running.fatal_reason}", code=code)
    return Result({"node_id": node_id, "stopped": True}, f"worker {node_id} stopped")
