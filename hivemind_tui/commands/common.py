"""What the pool-facing commands share: finding the pool, the session, the store, roles, output helpers."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

from hivemind_tui.commands.base import Context
from hivemind_tui.core import timefmt
from hivemind_tui.core.errors import NotPermittedError, UnreachableError
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.errors import SessionExpiredError
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.pool_launcher import find_pool, start_pool
from hivemind_tui.services.session import Session
from hivemind_tui.services.store import Store


@dataclass
class Connection:
    client: PoolClient
    session: Session
    store: Store
    audit: AuditLog

    @property
    def user(self) -> str:
        return self.session.username


async def resolve_address(ctx: Context, start: bool) -> str | None:
    """The configured pool, or the data dir's embedded pool (started when `start` and not running)."""
    if ctx.settings.pool_address:
        return ctx.settings.pool_address
    address = await find_pool(ctx.data_dir.pool)
    if address is None and start:
        ctx.warn(
            f"starting the embedded Node Pool of {ctx.data_dir.root} (it keeps running; "
            "`hivemind-tui pool stop` ends it)"
        )
        address = await start_pool(ctx.data_dir.root, ctx.args.config)
    return address


@asynccontextmanager
async def connect(ctx: Context, need_login: bool = True, start: bool = True) -> AsyncIterator[Connection]:
    address = await resolve_address(ctx, start)
    if address is None:
        raise UnreachableError("no pool is configured and the embedded pool of this data dir is not running")
    client = PoolClient(ctx.settings, address)
    session = Session(client, ctx.data_dir.tokens)
    session.load()
    if need_login and not session.logged_in:
        await client.close()
        raise SessionExpiredError(f"not logged in to {address}: run `hivemind-tui login`")
    store = Store(ctx.data_dir.console_db, ctx.settings.db_busy_timeout)
    await store.open()
    try:
        yield Connection(client, session, store, AuditLog(store))
    finally:
        await store.close()
        await client.close()


def require_change(ctx: Context, conn: Connection, what: str) -> None:
    """Read-only sessions and viewers change nothing; the pool enforces roles too."""
    if ctx.settings.readonly:
        raise NotPermittedError(f"read-only: {what} changes state")
    if conn.session.role == "viewer":
        raise NotPermittedError(f"a viewer may not {what}")


def when(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).astimezone().strftime("%Y-%m-%d %H:%M:%S")


def age(ts: float | None, now: float | None = None) -> str:
    return timefmt.age(ts, time.time() if now is None else now)


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain text table, columns as wide as their widest cell."""
    cells = [[str(h) for h in headers], *[[str(c) for c in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells)
