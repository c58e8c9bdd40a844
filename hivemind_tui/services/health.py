"""The health report: is the pool reachable and the console's store usable. `health` prints it, the HTTP
face serves it at /health; it answers within the rpc deadline even when the pool is down."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from hivemind_tui import __version__
from hivemind_tui.core.config import Settings
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.monitor import pool_json
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.store import Store


async def health_report(
    settings: Settings,
    console_db: Path,
    address: str | None,
    client: PoolClient | None = None,
    store: Store | None = None,
) -> dict[str, Any]:
    """The report (README: `health`); `status` is "healthy" or "unhealthy", `problems` say why. A caller that
    asks often (the HTTP face) passes its open `client` and `store`; otherwise each is opened for the report."""
    problems: list[str] = []
    pool: dict[str, Any] = {
        "address": address,
        "reachable": False,
        "latency_ms": None,
        "extensions": [],
        "version": None,
    }
    if address is None:
        problems.append("no pool is configured and the embedded pool of this data dir is not running")
    else:
        asker = client or PoolClient(settings, address)
        try:
            result = await asyncio.wait_for(
                asker.check_health(deadline=settings.rpc_deadline / 3), settings.rpc_deadline
            )
            pool = pool_json(address, result, asker.state)
        except (HivemindError, TimeoutError) as exc:
            problems.append(getattr(exc, "message", "") or f"the pool at {address} did not answer in time")
        finally:
            if client is None:
                await asker.close()
    database = {"ok": False, "path": str(console_db)}
    try:
        if store is None:
            async with Store(console_db, settings.db_busy_timeout) as opened:
                await opened.fetchone("SELECT 1")
        else:
            await store.fetchone("SELECT 1")
        database["ok"] = True
    except Exception as exc:  # any failure of the store is a finding, not a crash
        problems.append(f"the store {console_db} is not usable: {exc}")
    return {
        "status": "unhealthy" if problems else "healthy",
        "timestamp": time.time(),
        "version": __version__,
        "pool": pool,
        "database": database,
        "problems": problems,
    }
