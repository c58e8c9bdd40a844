"""`health`, `status`, `watch`, `alerts`, `audit`: reports, and the headless refresh loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import time
from pathlib import Path

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import age, connect, resolve_address, table, when
from hivemind_tui.core.errors import ExitCode, UsageError
from hivemind_tui.services.alerts import Alerts
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.health import health_report
from hivemind_tui.services.history import History
from hivemind_tui.services.host_metrics import PsutilMetrics
from hivemind_tui.services.monitor import Monitor
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.retention import PRUNE_EVERY, prune_store
from hivemind_tui.services.session import Session
from hivemind_tui.services.store import Store

log = logging.getLogger(__name__)


def register(registry: CommandRegistry) -> None:
    registry.command("health", health, "is the pool reachable and the store usable (exit 0 healthy, 1 not)")
    registry.command("status", status, "cluster, user, tasks, alerts and this host in one report")
    watch_cmd = registry.command("watch", watch, "run the refresh loop headless: history, alerts, hooks")
    watch_cmd.add_argument("--iterations", type=int, default=0, help="stop after N refreshes (0: run until SIGTERM)")
    watch_cmd.set_defaults(process_kind="watch")
    alerts_cmd = registry.command("alerts", alerts, "active alerts (--all: also cleared ones)")
    alerts_cmd.add_argument("--all", action="store_true")
    registry.command("prune", prune, "remove parents finished, audit rows and cleared alerts older than retention_days")
    audit_cmd = registry.command("audit", audit, "the audit log")
    audit_cmd.add_argument("--since", default="24h", help="unix time, or an age like 30m, 24h, 7d (default 24h)")


def mounts(ctx: Context) -> list[Path]:
    return ctx.settings.mounts(ctx.data_dir.root)


async def health(ctx: Context) -> Result:
    """Answers within the deadline even when the pool is down, and never starts a pool."""
    address = await resolve_address(ctx, start=False)
    data = await health_report(ctx.settings, ctx.data_dir.console_db, address)
    healthy = data["status"] == "healthy"
    text = "healthy" if healthy else "unhealthy: " + "; ".join(data["problems"])
    if healthy:
        text += f" (pool {address}, {data['pool']['latency_ms']:.1f} ms)"
    return Result(data, text, ExitCode.OK if healthy else ExitCode.FAILED)


async def status(ctx: Context) -> Result:
    """A report that never starts a pool; without a login it still reports the pool and this host."""
    address = await resolve_address(ctx, start=False) or "(none)"
    client = PoolClient(ctx.settings, address)
    session = Session(client, ctx.data_dir.tokens)
    session.load()
    try:
        async with Store(ctx.data_dir.console_db, ctx.settings.db_busy_timeout) as store:
            monitor = Monitor(ctx.settings, session, PsutilMetrics(mounts(ctx)), None, Alerts(store))
            snap = await monitor.refresh()
    finally:
        await client.close()
    data = snap.status_json()
    if ctx.settings.readonly and data["user"]["role"]:
        data["user"]["role"] = "viewer"
    reachable = data["pool"]["reachable"]
    lines = [
        f"pool    {address}  {'reachable' if reachable else 'UNREACHABLE'}"
        + (f"  {data['pool']['latency_ms']:.1f} ms  version {data['pool']['version']}" if reachable else ""),
        f"user    {data['user']['name'] or '(not logged in)'}  {data['user']['role'] or ''}  "
        f"balance {data['user']['balance'] if data['user']['balance'] is not None else '-'}",
        "nodes   "
        + (
            f"{data['nodes']['online']} online / {data['nodes']['total']}"
            if data["nodes"]["online"] is not None
            else "not listed by this pool"
            if data["nodes"]["supported"] is False
            else "-"
        ),
        "tasks   " + (", ".join(f"{k} {v}" for k, v in sorted(data["tasks"].items())) or "none"),
        f"alerts  {len(data['alerts'])} active",
    ]
    if snap.host is not None:
        h = snap.host
        lines.append(
            f"host    cpu {h.cpu_percent:.0f}%  mem {h.memory_percent:.0f}%  disk {h.disk_percent:.0f}%  "
            f"load {' '.join(f'{x:.2f}' for x in h.load)}"
        )
    lines += [f"problem {p}" for p in snap.problems]
    return Result(data, "\n".join(lines), ExitCode.OK if reachable else ExitCode.UNREACHABLE)


async def watch(ctx: Context) -> Result:
    """The console's refresh loop without a console, for systemd: history, alerts, hooks."""
    if ctx.args.iterations < 0:
        raise UsageError("--iterations must be 0 or more")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    count = 0
    async with connect(ctx, start=True) as conn:
        monitor = Monitor(
            ctx.settings, conn.session, PsutilMetrics(mounts(ctx)), History(conn.store), Alerts(conn.store)
        )
        seen_failed: set[str] = set()
        pruned_at = 0.0
        while not stop.is_set():
            if time.monotonic() - pruned_at >= PRUNE_EVERY or not pruned_at:
                pruned_at = time.monotonic()
                pruned = await prune_store(
                    conn.store, time.time(), ctx.settings.retention_days, ctx.data_dir.root / "staging"
                )
                log.info("%s", pruned.text)
            snap = await monitor.refresh()
            for task in snap.tasks:
                if task.status == "FAILED" and task.task_id not in seen_failed:
                    seen_failed.add(task.task_id)
                    await conn.audit.record("watch", "saw_task_failed", task.task_id, task.message[:200])
            for alert in snap.raised:
                ctx.warn(f"alert raised: {alert.message}")
            for alert in snap.cleared:
                ctx.warn(f"alert cleared: {alert.message}")
            count += 1
            if ctx.args.iterations and count >= ctx.args.iterations:
                break
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), ctx.settings.refresh_interval)
    return Result({"refreshes": count}, f"watched {count} refresh(es)")


async def prune(ctx: Context) -> Result:
    async with Store(ctx.data_dir.console_db, ctx.settings.db_busy_timeout) as store:
        pruned = await prune_store(store, time.time(), ctx.settings.retention_days, ctx.data_dir.root / "staging")
    return Result(pruned.as_json(), pruned.text)


async def alerts(ctx: Context) -> Result:
    async with Store(ctx.data_dir.console_db, ctx.settings.db_busy_timeout) as store:
        found = await Alerts(store).list(include_cleared=ctx.args.all)
    rows = [
        (a.kind, a.subject, when(a.raised_at), when(a.cleared_at) if a.cleared_at else "active", a.message)
        for a in found
    ]
    return Result(
        {"alerts": [a.as_json() for a in found]},
        table(("KIND", "SUBJECT", "RAISED", "CLEARED", "MESSAGE"), rows) if rows else "no alerts",
    )


def parse_since(text: str, now: float) -> float:
    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if text[-1:] in units:
            return now - float(text[:-1]) * units[text[-1]]
        return float(text)
    except ValueError:
        raise UsageError(f"--since {text!r}: expected unix seconds or an age like 30m, 24h, 7d") from None


async def audit(ctx: Context) -> Result:
    since = parse_since(ctx.args.since, time.time())
    async with Store(ctx.data_dir.console_db, ctx.settings.db_busy_timeout) as store:
        entries = await AuditLog(store).since(since)
    rows = [(when(e.ts), age(e.ts), e.actor, e.action, e.target, e.detail) for e in entries]
    return Result(
        {"entries": [e.as_json() for e in entries]},
        table(("WHEN", "AGE", "WHO", "ACTION", "TARGET", "DETAIL"), rows) if rows else "no entries",
    )
