"""One refresh of everything the dashboard, `status` and `watch` show, with history, alerts and hooks.

Each part is fetched on its own, so an unreachable pool still leaves this host's figures, and a pool
without GetNodeList still gives tasks. The snapshot keeps the last good data of each part with its time,
so the console can show how old it is.
"""

from __future__ import annotations

import asyncio
import json
import logging
import shlex
from collections import Counter
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.alerts import Alert, Alerts, Condition
from hivemind_tui.services.errors import NotConnectedError
from hivemind_tui.services.history import History, SustainedCpu
from hivemind_tui.services.host_metrics import HostSample, MetricsSource
from hivemind_tui.services.models import ConnectionState, NodeList, PoolHealth, TaskInfo, TaskListing
from hivemind_tui.services.session import Session

log = logging.getLogger(__name__)
_online = attrgetter("online")  # counted over 50,000 nodes at each refresh of the node monitor

RECENT_FAILURES = 3600.0
COMPACT_EVERY = 300.0
# Refreshes between full task lists; in between only tasks changed since the last answer are fetched.
FULL_TASK_SYNC_EVERY = 12
SKEW = 2.0


@dataclass
class ClusterSnapshot:
    taken_at: float
    pool_address: str
    connection: ConnectionState
    health: PoolHealth | None = None
    username: str = ""
    role: str = ""
    balance: int | None = None
    nodes: NodeList | None = None
    nodes_at: float | None = None
    tasks: list[TaskInfo] = field(default_factory=list)
    tasks_at: float | None = None
    # Tasks by status, kept by the monitor as entries change; None: counted from `tasks` when asked.
    counts: dict[str, int] | None = None
    host: HostSample | None = None
    active_alerts: list[Alert] = field(default_factory=list)
    raised: list[Alert] = field(default_factory=list)
    cleared: list[Alert] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def task_counts(self) -> dict[str, int]:
        if self.counts is not None:
            return dict(self.counts)
        return dict(Counter(t.status for t in self.tasks))

    @property
    def nodes_online(self) -> int:
        return sum(map(_online, self.nodes.nodes)) if self.nodes else 0

    def status_json(self) -> dict[str, Any]:
        """The `status --json` shape (the README's command line section)."""
        host = self.host
        return {
            "pool": pool_json(self.pool_address, self.health, self.connection),
            "user": {"name": self.username or None, "role": self.role or None, "balance": self.balance},
            "nodes": {
                "supported": self.nodes.supported if self.nodes else None,
                "online": self.nodes_online if self.nodes and self.nodes.supported else None,
                "total": len(self.nodes.nodes) if self.nodes and self.nodes.supported else None,
            },
            "tasks": self.task_counts,
            "alerts": [a.as_json() for a in self.active_alerts],
            "host": None
            if host is None
            else {
                "cpu_percent": host.cpu_percent,
                "memory_percent": host.memory_percent,
                "disk_percent": host.disk_percent,
                "load": list(host.load),
                "swap_percent": host.swap_percent,
                "net_sent_rate": host.net_sent_rate,
                "net_recv_rate": host.net_recv_rate,
            },
            "problems": self.problems,
            "timestamp": self.taken_at,
        }


def pool_json(address: str, health: PoolHealth | None, connection: ConnectionState) -> dict[str, Any]:
    return {
        "address": address,
        "reachable": health is not None and connection.status == "connected",
        "latency_ms": None if health is None else round(health.latency_ms, 3),
        "version": None if health is None else health.version,
        "extensions": [] if health is None else list(health.extensions),
        "connection": connection.status,
    }


class Monitor:
    def __init__(
        self,
        settings: Settings,
        session: Session,
        metrics: MetricsSource | None,
        history: History | None,
        alerts: Alerts | None,
        clock: Clock = system_clock,
    ) -> None:
        self.settings = settings
        self.session = session
        self.metrics = metrics
        self.history = history
        self._sustained_cpu = SustainedCpu(history) if history is not None else None
        self.alerts = alerts
        self.clock = clock
        self.last: ClusterSnapshot | None = None
        self._last_compact = 0.0
        self._tasks: dict[str, TaskInfo] = {}
        self._counts: Counter[str] = Counter()
        self._tasks_since: float | None = None
        self._tasks_seq: int | None = None
        self._refreshes = 0

    async def refresh(self) -> ClusterSnapshot:
        client = self.session.client
        now = self.clock()
        previous = self.last
        snap = ClusterSnapshot(
            now, client.address, client.state, username=self.session.username, role=self.session.role
        )
        if previous is not None:  # last known data stays until something newer arrives
            snap.nodes, snap.nodes_at = previous.nodes, previous.nodes_at
            snap.tasks, snap.tasks_at, snap.counts = previous.tasks, previous.tasks_at, previous.counts
            snap.balance, snap.health = previous.balance, previous.health
        host_task = asyncio.create_task(asyncio.to_thread(self.metrics.sample)) if self.metrics else None
        await self._fetch_pool(snap)
        if host_task is not None:
            snap.host = await host_task
        snap.connection = client.state
        await self._record(snap)
        self.last = snap
        return snap

    async def _fetch_pool(self, snap: ClusterSnapshot) -> None:
        session = self.session
        try:
            snap.health = await session.client.check_health()
            if session.logged_in:
                nodes, tasks, balance = await asyncio.gather(
                    session.call(session.client.list_nodes), self._fetch_tasks(), session.call(session.client.balance)
                )
                # Stamped with the refresh's time: `_record` tells fresh parts from carried-over ones by it.
                snap.nodes, snap.nodes_at = nodes, snap.taken_at
                snap.tasks, snap.tasks_at, snap.counts = (
                    tasks,
                    snap.taken_at,
                    {k: v for k, v in self._counts.items() if v},
                )
                snap.balance = balance
        except NotConnectedError as exc:
            snap.health = None
            snap.problems.append(exc.message)
        except HivemindError as exc:
            snap.problems.append(exc.message)
            if exc.exit_code == 4:
                raise

    async def _fetch_tasks(self) -> TaskListing:
        """Only what changed since the pool's last answer, with a full list now and then (pruned tasks drop
        out) and every time against a pool that gives no server time (HiveMind). "Changed" is by the pool's
        change number where it keeps one (exactly the changes), else by its clock, less SKEW for writes that
        committed late. The counts by status follow the entries that changed; a full list counts them again."""
        full = self._tasks_since is None or self._refreshes % FULL_TASK_SYNC_EVERY == 0
        self._refreshes += 1
        since = 0.0 if full else max((self._tasks_since or 0.0) - SKEW, 0.0)
        after = None if full else self._tasks_seq
        client = self.session.client
        known = self._tasks
        listed = await self.session.call(lambda token: client.list_tasks(token, since, after_seq=after, known=known))
        changed: set[str] | None = None
        if full:
            # An unchanged task came back as its known object (`known`): the tasks screen keeps the rows of the
            # objects it has seen, and a console that runs for weeks does not make every task again.
            self._tasks = {t.task_id: t for t in listed.tasks}
            self._counts = Counter(t.status for t in listed.tasks)
        else:
            changed = set()
            for task in listed.tasks:
                old = self._tasks.get(task.task_id)
                if old == task:
                    continue
                if old is not None:
                    self._counts[old.status] -= 1
                self._counts[task.status] += 1
                self._tasks[task.task_id] = task
                changed.add(task.task_id)
        self._tasks_since = listed.server_time
        self._tasks_seq = listed.seq
        # A copy: the next refresh changes the monitor's own while screens may still read this one.
        return TaskListing(dict(self._tasks), self, self._refreshes, None if changed is None else frozenset(changed))

    async def _record(self, snap: ClusterSnapshot) -> None:
        now = snap.taken_at
        if self.history is not None and snap.nodes is not None and snap.nodes_at == now:
            await self.history.record_nodes(snap.nodes.nodes, now)
        if self.history is not None and snap.tasks_at == now:
            await self.history.record_task_counts(snap.task_counts, now)
        if self.history is not None and now - self._last_compact > COMPACT_EVERY:
            await self.history.compact(now)
            self._last_compact = now
        if self.alerts is None:
            return
        conditions = await self._conditions(snap)
        judged = {"pool_unreachable", "host_disk"}
        if snap.nodes_at == now:
            judged |= {"node_offline", "node_cpu"}
        if snap.tasks_at == now:
            judged.add("task_failed")
        snap.raised, snap.cleared = await self.alerts.evaluate(conditions, now, judged)
        snap.active_alerts = await self.alerts.list()
        for alert in (*snap.raised, *snap.cleared):
            await self._run_hook(alert)

    async def _conditions(self, snap: ClusterSnapshot) -> list[Condition]:
        s = self.settings
        now = snap.taken_at
        held: list[Condition] = []
        if snap.health is None:
            held.append(
                Condition(
                    "pool_unreachable",
                    "pool_unreachable",
                    snap.pool_address,
                    f"the Node Pool at {snap.pool_address} cannot be reached",
                )
            )
        if snap.nodes is not None:
            for node in snap.nodes.nodes:
                if not node.online:
                    held.append(
                        Condition(
                            f"node_offline:{node.node_id}",
                            "node_offline",
                            node.node_id,
                            f"node {node.node_id} went offline",
                        )
                    )
            if self._sustained_cpu is not None:
                window = s.alert_cpu_minutes * 60
                for node_id in await self._sustained_cpu.nodes(snap.nodes.nodes, s.alert_cpu_percent, window, now):
                    held.append(
                        Condition(
                            f"node_cpu:{node_id}",
                            "node_cpu",
                            node_id,
                            f"node {node_id} CPU above {s.alert_cpu_percent:g}% for {s.alert_cpu_minutes:g} min",
                        )
                    )
        for task in snap.tasks:
            if task.status == "FAILED" and (task.updated_at or now) > now - RECENT_FAILURES:
                held.append(
                    Condition(
                        f"task_failed:{task.task_id}",
                        "task_failed",
                        task.task_id,
                        f"task {task.task_id} failed: {task.message[:120]}",
                    )
                )
        if snap.host is not None and snap.host.disk_percent > s.alert_disk_percent:
            held.append(
                Condition(
                    "host_disk",
                    "host_disk",
                    snap.host.disks[0].mount,
                    f"disk {snap.host.disks[0].mount} is {snap.host.disk_percent:.0f}% full",
                )
            )
        return held

    async def _run_hook(self, alert: Alert) -> None:
        if not self.settings.alert_hook:
            return
        payload = json.dumps({"event": "raised" if alert.active else "cleared", **alert.as_json()}).encode()
        try:
            proc = await asyncio.create_subprocess_exec(
                *shlex.split(self.settings.alert_hook),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.DEVNULL,
            )
            await asyncio.wait_for(proc.communicate(payload), 30)
        except (OSError, TimeoutError) as exc:
            log.warning("alert hook failed: %s", exc)
