"""The embedded pool's process: storage, the grpc.aio server, pool.json, first-run admin, housekeeping."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
from dataclasses import replace
from pathlib import Path

import grpc

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir, atomic_write
from hivemind_tui.core.errors import UsageError
from hivemind_tui.core.hosts import is_loopback
from hivemind_tui.core.logging_setup import register_secret
from hivemind_tui.core.poolfile import PoolInfo, process_started, remove_pool_info, write_pool_info
from hivemind_tui.core.tls_setup import ServerTls, server_tls, tls_paths
from hivemind_tui.core.zipsafe import ZipLimits
from hivemind_tui.nodepool.accounts import Accounts
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.hivemind_workers import HivemindWorkers
from hivemind_tui.nodepool.joining import JoinDesk, JoinTokens
from hivemind_tui.nodepool.ledger import Ledger
from hivemind_tui.nodepool.nodes import NodeRegistry
from hivemind_tui.nodepool.reports import TaskReports
from hivemind_tui.nodepool.scheduler import Scheduler
from hivemind_tui.nodepool.servicers import PoolParts, add_join_desk, add_servicers, bind, new_server
from hivemind_tui.nodepool.storage import PoolPaths, PoolStorage
from hivemind_tui.nodepool.tasks import TaskBook

log = logging.getLogger(__name__)

# Room for the other fields of a message around the largest zip.
MESSAGE_OVERHEAD = 1024 * 1024
PRUNE_EVERY = 3600.0


def message_limit(settings: Settings) -> int:
    return settings.max_upload_bytes + MESSAGE_OVERHEAD


def grpc_options(settings: Settings) -> list[tuple[str, int]]:
    limit = message_limit(settings)
    return [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)]


def load_or_create_secret(path: Path) -> str:
    """The worker secret: created once (0600), then read; workers on this host read the same file."""
    try:
        value = path.read_text().strip()
    except FileNotFoundError:
        value = ""
    if not value:
        value = secrets.token_urlsafe(32)
        atomic_write(path, value.encode(), mode=0o600)
    register_secret(value)
    return value


class PoolServer:
    """One embedded pool: `await start()`, then `await stop()`."""

    def __init__(
        self,
        settings: Settings,
        data_dir: DataDir,
        listen: str | None = None,
        clock: Clock = system_clock,
        insecure_public: bool = False,
        hivemind_compat: bool = False,
        accept_hivemind_workers: bool = False,
    ) -> None:
        self.settings = settings
        self.paths = PoolPaths(data_dir.pool)
        self.data_dir = data_dir
        self.listen = listen or settings.pool_listen
        self.clock = clock
        self.insecure_public = insecure_public
        self.hivemind_compat = hivemind_compat
        self.accept_hivemind_workers = accept_hivemind_workers
        self.address = ""
        self.first_admin_password: str | None = None
        self.storage = PoolStorage(self.paths)
        self.parts: PoolParts | None = None
        self._server: grpc.aio.Server | None = None
        self._join_server: grpc.aio.Server | None = None
        self._housekeeping: asyncio.Task[None] | None = None
        self.scheduler: Scheduler | None = None
        self.tls: ServerTls | None = None

    def _check_listen(self, credentials: ServerTls | None) -> None:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise UsageError(f"--listen {self.listen}: expected HOST:PORT")
        if is_loopback(host) or credentials is not None or self.insecure_public:
            return
        if host.strip("[]") == self.data_dir.vpn_server_address():
            log.info("listening on the VPN server's address %s without TLS: WireGuard encrypts the traffic", host)
            return
        raise UsageError(
            f"refusing to listen on {self.listen} without TLS: run `hivemind-tui tls init` (or set tls_cert "
            "and tls_key), listen on the VPN server's address, or pass --insecure-public if the network is trusted"
        )

    async def start(self) -> str:
        credentials = server_tls(self.settings)
        self._check_listen(credentials)
        if self.accept_hivemind_workers and credentials is not None:
            raise UsageError(
                "--accept-hivemind-workers: HiveMind workers speak plaintext gRPC and this pool speaks TLS; run a "
                "pool without TLS (on loopback, or on the VPN server's address) for them"
            )
        self.tls = credentials
        await self.storage.open()
        secret = await asyncio.to_thread(load_or_create_secret, self.paths.worker_secret)
        accounts = Accounts(
            self.storage,
            self.clock,
            self.settings.password_hash_cost,
            self.settings.token_ttl,
            self.settings.login_delay_base,
        )
        limits = ZipLimits(self.settings.max_unzipped_bytes, self.settings.max_zip_ratio)
        self.parts = PoolParts(
            accounts=accounts,
            ledger=Ledger(self.storage),
            tasks=TaskBook(
                self.storage, self.clock, self.settings.max_upload_bytes, limits, self.settings.retention_days
            ),
            nodes=NodeRegistry(self.storage, self.clock, self.settings.heartbeat_timeout),
            reports=TaskReports(self.storage, self.clock, limits, read_worker_status=not self.hivemind_compat),
            worker_secret=secret,
            clock=self.clock,
            join=JoinDesk(JoinTokens(self.storage, self.clock), secret, tls_paths(self.settings).root),
        )
        if self.hivemind_compat or self.accept_hivemind_workers:
            self.parts.hivemind = HivemindWorkers(accounts, self.parts.nodes, self.storage, self.hivemind_compat)
        await self._first_run_admin(accounts)
        self.scheduler = Scheduler(
            self.storage,
            self.parts.nodes,
            self.clock,
            secret,
            self.settings.task_retry_limit,
            grpc_options(self.settings),
            self.settings.transfer_deadline,
            None
            if credentials is None
            else grpc.ssl_channel_credentials(credentials.ca, credentials.key, credentials.chain),
            hivemind_compat=self.hivemind_compat,
        )
        self.parts.tasks.on_change = self.scheduler.wake
        self.parts.tasks.stop_running = self.scheduler.stop_on_worker
        self.parts.nodes.on_change = self.scheduler.wake
        self.parts.reports.on_finish = self.scheduler.wake
        self.parts.nodes.probe = self.scheduler.probe_instance
        self.parts.nodes.on_restart = self.scheduler.requeue_node
        self.parts.reconcile = self.scheduler.reconcile
        await self.scheduler.requeue_after_restart()
        if self.hivemind_compat:
            # HiveMind without SECRET_KEY draws a new signing key at every start: no earlier token is valid.
            await self.parts.accounts.revoke_all()
        self._server = new_server(grpc_options(self.settings))
        add_servicers(self._server, self.parts, self.hivemind_compat)
        host = self.listen.rpartition(":")[0]
        try:
            port = bind(self._server, self.listen, credentials.credentials() if credentials else None)
            assert self.parts.join is not None
            self.parts.join.pool_port = port
            join_address = await self._start_join_desk(host, port, credentials)
        except OSError as exc:
            await self.storage.close()
            raise UsageError(str(exc)) from None
        await self._server.start()
        self.address = f"{host}:{port}"
        info = PoolInfo(
            self.address, os.getpid(), self.clock(), process_started(os.getpid()), credentials is not None, join_address
        )
        await asyncio.to_thread(write_pool_info, self.paths.root, info)
        self._housekeeping = asyncio.create_task(self._housekeep())
        self.scheduler.start()
        mode = "plaintext" if credentials is None else "mutual TLS" if credentials.client_auth else "TLS"
        log.info("pool listening on %s with %s (data in %s)", self.address, mode, self.paths.root)
        return self.address

    async def local_hivemind_logins(self, node_ids: list[str]) -> dict[str, Path]:
        """A compat pool's local workers are HiveMind-style: each logs in as a user of its own name, with a
        password drawn now and kept in a 0600 file beside the worker secret."""
        assert self.parts is not None
        logins = {}
        for node_id in node_ids:
            password = secrets.token_urlsafe(24)
            register_secret(password)
            try:
                await self.parts.accounts.create_user(node_id, password, "viewer", 0)
            except PoolRefusal:  # the user exists from an earlier start
                await self.parts.accounts.set_password(node_id, password)
            path = self.paths.root / f"local-worker-{node_id}.password"
            await asyncio.to_thread(atomic_write, path, password.encode(), 0o600)
            logins[node_id] = path
        return logins

    async def _start_join_desk(self, host: str, port: int, credentials: ServerTls | None) -> str:
        """Under mutual TLS, a second port (the pool's plus one) where a worker without a certificate yet
        can call JoinWorker, and nothing else; the empty string when the pool's own port does that."""
        if credentials is None or not credentials.client_auth:
            return ""
        assert self.parts is not None
        self._join_server = new_server(grpc_options(self.settings))
        add_join_desk(self._join_server, self.parts)
        join_port = bind(self._join_server, f"{host}:{port + 1}", replace(credentials, client_auth=False).credentials())
        await self._join_server.start()
        log.info("join desk (JoinWorker only, no client certificate needed) on %s:%d", host, join_port)
        return f"{host}:{join_port}"

    async def _first_run_admin(self, accounts: Accounts) -> None:
        self.first_admin_password = await ensure_first_admin(accounts, self.paths, self.settings.new_user_balance)

    async def _housekeep(self) -> None:
        assert self.parts is not None
        while True:
            with contextlib.suppress(Exception):
                await self.parts.tasks.prune()
                await self.parts.accounts.prune_tokens()
            await asyncio.sleep(PRUNE_EVERY)

    async def stop(self, grace: float = 5.0) -> None:
        """Stop accepting, let in-flight rpcs finish (up to `grace` s), close storage, remove pool.json."""
        if self._housekeeping is not None:
            self._housekeeping.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._housekeeping
        if self.scheduler is not None:
            await self.scheduler.close()
        if self._join_server is not None:
            await self._join_server.stop(0)
            self._join_server = None
        if self._server is not None:
            await self._server.stop(grace)
            self._server = None
            await asyncio.to_thread(remove_pool_info, self.paths.root, os.getpid())
        await self.storage.close()
        log.info("pool stopped")


async def ensure_first_admin(accounts: Accounts, paths: PoolPaths, balance: int) -> str | None:
    """Make the user `admin` with a random password in `admin-password` while the pool has no admin; its
    password, or None when there is one. Every pool command that opens the pool's store calls this, so the
    first admin never depends on which command ran first."""
    if await accounts.has_admin():
        return None
    password = secrets.token_urlsafe(12)
    register_secret(password)
    await accounts.create_user("admin", password, "admin", balance)
    await asyncio.to_thread(atomic_write, paths.admin_password, (password + "\n").encode(), 0o600)
    log.info("created user admin; its password is in %s", paths.admin_password)
    return password
