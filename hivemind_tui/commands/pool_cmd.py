"""`pool ...`: run the embedded Node Pool, find and stop it, and administer its users on the data dir."""

from __future__ import annotations

import asyncio
import getpass
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import TypeVar

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import table, when
from hivemind_tui.core import tls
from hivemind_tui.core.errors import ExitCode, HivemindError, NotPermittedError, UsageError
from hivemind_tui.core.hosts import is_loopback
from hivemind_tui.core.join_token import JoinToken
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.core.poolfile import read_pool_info, running_pool, stop_pool
from hivemind_tui.core.tls_setup import server_tls, tls_paths
from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.nodepool.accounts import ROLES, Accounts
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.joining import JoinTokens
from hivemind_tui.nodepool.local_workers import local_node_ids, start_local_workers, stop_local_workers
from hivemind_tui.nodepool.server import PoolServer, ensure_first_admin
from hivemind_tui.nodepool.storage import PoolPaths, PoolStorage
from hivemind_tui.nodepool.tasks import TaskBook
from hivemind_tui.nodepool.worker import default_node_id, is_wildcard

T = TypeVar("T")
STOP_WAIT = 20.0


def register(registry: CommandRegistry) -> None:
    pool = registry.group("pool", "run and administer the embedded Node Pool")
    serve_cmd = pool.command("serve", serve, "run the embedded Node Pool until SIGINT/SIGTERM")
    serve_cmd.add_argument("--listen", metavar="HOST:PORT", help="default: the pool_listen setting")
    serve_cmd.add_argument("--insecure-public", action="store_true", help="allow a non-loopback address without TLS")
    serve_cmd.add_argument(
        "--hivemind-compat",
        action="store_true",
        help="answer as a plain HiveMind pool (no extensions), to test clients against it",
    )
    serve_cmd.add_argument(
        "--accept-hivemind-workers",
        action="store_true",
        help="also take HiveMind-style workers (no worker secret: they log in as the user named like their node)",
    )
    serve_cmd.add_argument(
        "--workers",
        type=int,
        default=None,
        metavar="N",
        help="local worker processes to start (default: the local_workers setting, 1)",
    )
    serve_cmd.set_defaults(process_kind="pool")
    pool.command("status", status, "is this data dir's pool running, and where")
    pool.command("stop", stop, "stop this data dir's running pool (SIGTERM) and wait for it")
    add = pool.command("add-user", add_user, "create a user")
    add.add_argument("name")
    add.add_argument("--role", choices=ROLES, default="operator")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    add.add_argument("--balance", type=int, default=None, help="CPT balance (default: new_user_balance)")
    pool.command("list-users", list_users, "list users")
    pw = pool.command("set-password", set_password, "set a user's password")
    pw.add_argument("name")
    pw.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    role = pool.command("set-role", set_role, "set a user's role")
    role.add_argument("name")
    role.add_argument("role", choices=ROLES)
    disable = pool.command("disable-user", disable_user, "disable a user (their tokens stop working)")
    disable.add_argument("name")
    pool.command("prune", prune, "remove finished tasks older than retention_days now")
    join = pool.command("join-token", join_token, "print a token a worker on another host joins with")
    join.add_argument("--ttl", default="24h", help="how long the token works: 90s, 30m, 24h, 7d (default 24h)")
    join.add_argument(
        "--address",
        action="append",
        default=None,
        metavar="HOST:PORT",
        help="where workers reach the pool (repeat; default: the running pool's address)",
    )
    join.add_argument("--revoke", metavar="ID", help="revoke the token with this id (`all`: every live one)")
    join.add_argument("--list", action="store_true", help="list the tokens (ids, expiry, joins), not their secrets")


async def serve(ctx: Context) -> Result:
    server = PoolServer(
        ctx.settings,
        ctx.data_dir,
        listen=ctx.args.listen,
        insecure_public=ctx.args.insecure_public,
        hivemind_compat=ctx.args.hivemind_compat,
        accept_hivemind_workers=ctx.args.accept_hivemind_workers,
    )
    other = running_pool(server.paths.root)
    if other is not None:
        raise HivemindError(f"a pool for this data dir already runs at {other.address} (pid {other.pid})")
    stop_event = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop_event.set)
    workers = ctx.settings.local_workers if ctx.args.workers is None else ctx.args.workers
    if workers < 0:
        raise UsageError("--workers must be 0 or more")
    address = await server.start()
    local: list[asyncio.subprocess.Process] = []
    try:
        node_ids = local_node_ids(workers, default_node_id(ctx.data_dir.root / "worker"))
        logins = await server.local_hivemind_logins(node_ids) if server.hivemind_compat else None
        local = await start_local_workers(node_ids, address, ctx.data_dir.root, ctx.args.config, logins)
        ctx.warn(f"pool listening on {address} with {workers} local worker(s); data in {server.paths.root}")
        if server.first_admin_password is not None:
            # Printed only to a person at a terminal: under systemd it must not land in the journal.
            if sys.stdout.isatty() and not ctx.json:
                print(
                    f"first start: user 'admin', password {server.first_admin_password} "
                    f"(also in {server.paths.admin_password})",
                    flush=True,
                )
            else:
                ctx.warn(f"first start: the password of user 'admin' is in {server.paths.admin_password}")
        await stop_event.wait()
    finally:
        await stop_local_workers(local)
        await server.stop()
    return Result({"address": address, "stopped": True}, "pool stopped")


def status(ctx: Context) -> Result:
    pool_dir = ctx.data_dir.pool
    info = running_pool(pool_dir)
    if info is None:
        stale = read_pool_info(pool_dir) is not None
        text = "no pool is running for this data dir" + (" (a stale pool.json was left behind)" if stale else "")
        return Result({"running": False, "address": None, "pid": None, "stale_file": stale}, text, ExitCode.FAILED)
    return Result(
        {"running": True, "address": info.address, "pid": info.pid, "started_at": info.started_at, "stale_file": False},
        f"pool running at {info.address} (pid {info.pid})",
    )


async def stop(ctx: Context) -> Result:
    try:
        info = await asyncio.to_thread(stop_pool, ctx.data_dir.pool, STOP_WAIT)
    except TimeoutError as exc:
        raise HivemindError(str(exc)) from None
    if info is None:
        return Result({"stopped": False, "was_running": False}, "no pool was running for this data dir")
    return Result({"stopped": True, "was_running": True, "pid": info.pid}, f"pool (pid {info.pid}) stopped")


@asynccontextmanager
async def _pool_storage(ctx: Context) -> AsyncIterator[PoolStorage]:
    paths = PoolPaths(ctx.data_dir.pool)
    storage = PoolStorage(paths)
    await storage.open()
    try:
        if await ensure_first_admin(_accounts(ctx, storage), paths, ctx.settings.new_user_balance):
            ctx.warn(f"first start: made user 'admin'; its password is in {paths.admin_password}")
        yield storage
    finally:
        await storage.close()


def _accounts(ctx: Context, storage: PoolStorage) -> Accounts:
    s = ctx.settings
    return Accounts(storage, time.time, s.password_hash_cost, s.token_ttl, s.login_delay_base)


def _read_password(ctx: Context) -> str:
    if ctx.args.password_stdin:
        password = sys.stdin.readline().rstrip("\r\n")
    elif sys.stdin.isatty():
        password = getpass.getpass("password: ")
        if getpass.getpass("again: ") != password:
            raise UsageError("the passwords differ")
    else:
        raise UsageError("no terminal to ask for the password: pass --password-stdin and pipe it in")
    if not password:
        raise UsageError("the password must not be empty")
    return password


async def _refusal_to_error(action: Awaitable[T]) -> T:
    try:
        return await action
    except PoolRefusal as refusal:
        raise HivemindError(refusal.message, code=refusal.code) from None


def _require_writer(ctx: Context) -> None:
    if ctx.settings.readonly:
        raise NotPermittedError("read-only: user administration changes the pool")


async def add_user(ctx: Context) -> Result:
    _require_writer(ctx)
    password = _read_password(ctx)
    balance = ctx.settings.new_user_balance if ctx.args.balance is None else ctx.args.balance
    if balance < 0:
        raise UsageError("--balance must be 0 or more")
    async with _pool_storage(ctx) as storage:
        await _refusal_to_error(_accounts(ctx, storage).create_user(ctx.args.name, password, ctx.args.role, balance))
    return Result(
        {"name": ctx.args.name, "role": ctx.args.role, "balance": balance},
        f"user {ctx.args.name} created ({ctx.args.role}, {balance} CPT)",
    )


async def list_users(ctx: Context) -> Result:
    async with _pool_storage(ctx) as storage:
        rows = await storage.fetchall(
            "SELECT username, role, balance, disabled, created_at FROM users ORDER BY username"
        )
    users = [
        {
            "name": r["username"],
            "role": r["role"],
            "balance": r["balance"],
            "disabled": bool(r["disabled"]),
            "created_at": r["created_at"],
        }
        for r in rows
    ]
    lines = [f"{'NAME':<20} {'ROLE':<9} {'BALANCE':>10}  DISABLED"]
    lines += [f"{u['name']:<20} {u['role']:<9} {u['balance']:>10}  {'yes' if u['disabled'] else ''}" for u in users]
    return Result({"users": users}, "\n".join(lines))


async def _change_user(ctx: Context, change: Callable[[Accounts], Awaitable[None]], text: str) -> Result:
    _require_writer(ctx)
    async with _pool_storage(ctx) as storage:
        await _refusal_to_error(change(_accounts(ctx, storage)))
    return Result({"name": ctx.args.name, "changed": True}, text)


async def set_password(ctx: Context) -> Result:
    password = _read_password(ctx)
    return await _change_user(
        ctx, lambda a: a.set_password(ctx.args.name, password), f"password of {ctx.args.name} changed"
    )


async def set_role(ctx: Context) -> Result:
    return await _change_user(
        ctx, lambda a: a.set_role(ctx.args.name, ctx.args.role), f"{ctx.args.name} is now {ctx.args.role}"
    )


async def disable_user(ctx: Context) -> Result:
    return await _change_user(ctx, lambda a: a.set_disabled(ctx.args.name, True), f"{ctx.args.name} disabled")


async def prune(ctx: Context) -> Result:
    _require_writer(ctx)
    s = ctx.settings
    async with _pool_storage(ctx) as storage:
        book = TaskBook(
            storage, time.time, s.max_upload_bytes, ZipLimits(s.max_unzipped_bytes, s.max_zip_ratio), s.retention_days
        )
        removed = await book.prune()
    return Result({"pruned": removed}, f"{removed} finished tasks pruned")


DURATION_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str) -> float:
    text = text.strip().lower()
    unit = DURATION_UNITS.get(text[-1:], 0)
    number = text[:-1] if unit else text
    try:
        value = float(number) * (unit or 1)
    except ValueError:
        raise UsageError(f"--ttl {text}: expected a duration such as 90s, 30m, 24h or 7d") from None
    if not 0 < value <= 365 * 86400:
        raise UsageError("--ttl must be more than 0 and at most 365d")
    return value


def _join_addresses(ctx: Context) -> list[str]:
    if ctx.args.address:
        return list(ctx.args.address)
    info = running_pool(ctx.data_dir.pool)
    if info is None:
        raise UsageError("no pool runs for this data dir: pass --address HOST:PORT (where workers reach it)")
    address = info.join_address or info.address  # under mutual TLS, workers join at the join desk
    host, _, port = address.rpartition(":")
    if not is_wildcard(host):
        return [address]
    cert = tls_paths(ctx.settings).cert("pool")
    names = [n for n in tls.info(cert).names if not is_loopback(n)] if cert.exists() else []
    if not names:
        raise UsageError(f"the pool listens on {info.address} (every address): pass --address HOST:PORT")
    return [f"[{n}]:{port}" if ":" in n else f"{n}:{port}" for n in names]


def _pool_ca_sha256(ctx: Context) -> str:
    """The fingerprint of the CA a TLS pool shows, empty for a plaintext one (reached over the VPN)."""
    server = server_tls(ctx.settings)
    if server is None or server.ca is None:
        return ""
    return tls.fingerprint(server.ca)


async def new_join_token(ctx: Context, addresses: list[str], ttl: float) -> tuple[str, str, str]:
    """A join token for `addresses`: (token, its id, the CA fingerprint it pins or "")."""
    ca_sha256 = _pool_ca_sha256(ctx)
    async with _pool_storage(ctx) as storage:
        token_id, secret = await JoinTokens(storage, time.time).create(ttl)
    register_secret(secret)
    token = JoinToken(tuple(addresses), ca_sha256, token_id, secret).encode()
    register_secret(token)
    return token, token_id, ca_sha256


async def join_token(ctx: Context) -> Result:
    if ctx.args.list:
        async with _pool_storage(ctx) as storage:
            rows = await JoinTokens(storage, time.time).listed()
        now = time.time()
        listed = [
            {
                "id": r.token_id,
                "created_at": r.created_at,
                "expires_at": r.expires_at,
                "state": "revoked" if r.revoked_at else "expired" if r.expires_at <= now else "live",
                "joins": r.joins,
            }
            for r in rows
        ]
        text = table(
            ["ID", "STATE", "EXPIRES", "JOINS"],
            [[t["id"], t["state"], when(r.expires_at), r.joins] for t, r in zip(listed, rows, strict=True)],
        )
        return Result({"tokens": listed}, text if rows else "no join tokens")
    _require_writer(ctx)
    if ctx.args.revoke:
        target = None if ctx.args.revoke == "all" else ctx.args.revoke
        async with _pool_storage(ctx) as storage:
            count = await JoinTokens(storage, time.time).revoke(target)
        if target is not None and count == 0:
            raise HivemindError(f"no live join token {target}", code="NOT_FOUND")
        return Result({"revoked": count}, f"{count} join token(s) revoked")
    ttl = parse_duration(ctx.args.ttl)
    addresses = _join_addresses(ctx)
    token, token_id, ca_sha256 = await new_join_token(ctx, addresses, ttl)
    ctx.warn(
        f"join token {token_id} for {', '.join(addresses)}, valid {ctx.args.ttl}"
        + ("" if ca_sha256 else " (plaintext pool: use it only over the VPN)")
        + f"; revoke with `hivemind-tui pool join-token --revoke {token_id}`"
    )
    return Result(
        {"token": token, "id": token_id, "addresses": addresses, "expires_in": ttl, "tls": bool(ca_sha256)}, token
    )
