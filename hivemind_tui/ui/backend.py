"""What the console asks of the world, as one interface with two implementations.

`LiveBackend` stands on the services (a real pool, the store, psutil, WireGuard); `DemoBackend`
(`tests/ui/demo.py`) replays fixed data with a fixed clock, for snapshot tests and screenshots. Screens call a
backend only from workers; every method is a coroutine (or a cheap property) and is opened inside the
app's loop (`open()` in `on_mount`), never before `App.run()`.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Protocol

from hivemind_tui.core.clock import Clock, system_clock
from hivemind_tui.core.config import Settings
from hivemind_tui.core.datadir import DataDir
from hivemind_tui.services.alerts import Alerts
from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.history import History, NodePoint
from hivemind_tui.services.host_metrics import MetricsSource
from hivemind_tui.services.log_follow import LogFollower, LogSource
from hivemind_tui.services.models import ConnectionState, NodeList, TaskInfo
from hivemind_tui.services.monitor import ClusterSnapshot, Monitor
from hivemind_tui.services.nodepool_client import PoolClient
from hivemind_tui.services.retention import Pruned, prune_store
from hivemind_tui.services.session import Session
from hivemind_tui.services.store import Store
from hivemind_tui.services.task_actions import TaskActions
from hivemind_tui.services.task_manager import (
    ParentState,
    Progress,
    ProgressCallback,
    SubmitOptions,
    SubtaskState,
    TaskManager,
)
from hivemind_tui.services.task_splitter import SplitPlan
from hivemind_tui.services.wireguard import NewPeer, Peer, PeerStatus, ServerIdentity, WireGuard

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class TaskRow:
    """One row of the tasks screen: a parent (with progress), a plain task, or (`under` its parent's id) a
    subtask of an expanded parent."""

    task_id: str
    status: str
    message: str
    task_type: str
    priority: int
    owner: str
    created_at: float | None
    updated_at: float | None
    done: int
    total: int
    split: bool
    worker: str = ""
    under: str = ""

    @classmethod
    def of_parent(cls, p: ParentState) -> TaskRow:
        return cls(
            p.parent_id,
            p.status,
            p.message,
            p.task_type,
            p.priority,
            p.owner,
            p.created_at,
            p.updated_at,
            p.done,
            p.total,
            p.split,
        )

    @classmethod
    def of_task(cls, t: TaskInfo) -> TaskRow:
        """A task of the pool's outside any parent: done once it completed."""
        done = int(t.status == "COMPLETED")
        return cls(
            t.task_id,
            t.status,
            t.message,
            t.task_type,
            t.priority,
            t.owner,
            t.created_at,
            t.updated_at,
            done,
            1,
            False,
            t.worker,
        )

    @classmethod
    def of_subtask(cls, sub: SubtaskState, task: TaskInfo | None, parent: ParentState) -> TaskRow:
        """A subtask shown under its parent: the pool's entry where it has one (times, owner), else the
        console's record of it (not uploaded yet, or pruned from the pool)."""
        if task is not None:
            return replace(cls.of_task(task), under=parent.parent_id)
        done = int(sub.status == "COMPLETED")
        return cls(
            sub.task_id,
            sub.status,
            sub.message,
            parent.task_type,
            parent.priority,
            parent.owner,
            parent.created_at,
            None,
            done,
            1,
            False,
            sub.worker,
            parent.parent_id,
        )


class TaskRowList(list[TaskRow]):
    """The tasks screen's rows (newest first) as one `TaskRows` made them, numbered, with the rows that
    changed since its previous list when those are all that changed (the same tasks in the same order). A
    screen that showed the previous list then updates only those rows (of 20,000), as a node table does."""

    def __init__(self, rows: list[TaskRow], generation: int, changed: list[TaskRow] | None) -> None:
        super().__init__(rows)
        self.generation = generation
        self.changed = changed

    def changes_since(self, generation: int | None) -> list[TaskRow] | None:
        """The rows changed since list number `generation` of the same maker; None when not known."""
        if generation == self.generation:
            return []
        return self.changed if generation is not None and generation == self.generation - 1 else None


class TaskRows:
    """The tasks screen's rows, newest first. A parent or task that is the same object as last time (the
    manager keeps unchanged parents, the monitor unchanged tasks) keeps its row; when no task came or went,
    the order is kept rather than sorted again. The dashboard and the tasks screen may both ask in one
    refresh: the second gets the same list."""

    def __init__(self) -> None:
        self._kept: dict[str, tuple[object, TaskRow]] = {}
        self._rows = TaskRowList([], 0, None)

    def of(self, parents: list[ParentState], loose: list[TaskInfo]) -> TaskRowList:
        previous = self._kept
        kept: dict[str, tuple[object, TaskRow]] = {}
        changed: list[TaskRow] = []
        moved = False  # a changed row with another creation time: the order may change
        items: Iterable[tuple[str, ParentState | TaskInfo]] = itertools.chain(
            ((p.parent_id, p) for p in parents), ((t.task_id, t) for t in loose)
        )
        for item_id, item in items:
            entry = previous.get(item_id)
            if entry is None or entry[0] is not item:
                row = TaskRow.of_parent(item) if isinstance(item, ParentState) else TaskRow.of_task(item)
                moved = moved or entry is None or entry[1].created_at != row.created_at
                entry = (item, row)
                changed.append(row)
            kept[item_id] = entry
        self._kept = kept
        same_tasks = not moved and kept.keys() == previous.keys()
        if same_tasks and not changed:
            return self._rows
        if same_tasks:
            rows = [kept[r.task_id][1] for r in self._rows]
        else:
            rows = sorted((row for _, row in kept.values()), key=lambda r: r.created_at or 0, reverse=True)
        self._rows = TaskRowList(rows, self._rows.generation + 1, changed if same_tasks else None)
        return self._rows


@dataclass
class Trends:
    cluster_cpu: list[float] = field(default_factory=list)
    finished: list[float] = field(default_factory=list)


class ConsoleBackend(Protocol):
    settings: Settings
    clock: Clock

    @property
    def address(self) -> str: ...
    @property
    def embedded(self) -> bool: ...
    @property
    def username(self) -> str: ...
    @property
    def role(self) -> str: ...
    @property
    def pool_has_roles(self) -> bool: ...
    @property
    def connection(self) -> ConnectionState: ...
    @property
    def admin_password_file(self) -> Path | None: ...
    @property
    def exports_dir(self) -> Path: ...

    async def open(self) -> None: ...
    async def close(self) -> None: ...
    def has_session(self) -> bool: ...
    async def login(self, address: str, username: str, password: str, remember: bool) -> None: ...
    async def logout(self) -> None: ...
    async def refresh(self) -> ClusterSnapshot: ...
    async def trends(self, since: float, step: float) -> Trends: ...
    async def node_history(self, node_id: str, since: float) -> list[NodePoint]: ...
    async def set_node_state(self, node_ids: list[str], state: str) -> list[str]: ...
    async def task_rows(self, tasks: list[TaskInfo]) -> list[TaskRow]: ...
    async def parent(self, task_id: str, tasks: list[TaskInfo]) -> ParentState | None: ...
    async def stop_tasks(self, task_ids: list[str], tasks: list[TaskInfo]) -> list[str]: ...
    async def retry_tasks(self, task_ids: list[str], tasks: list[TaskInfo]) -> list[str]: ...
    def log_follower(self, task_id: str) -> LogSource: ...
    async def download(
        self, task_id: str, tasks: list[TaskInfo], path: Path, on_progress: ProgressCallback | None
    ) -> int: ...
    async def plan(self, zip_path: Path, options: SubmitOptions) -> SplitPlan: ...
    async def submit(self, zip_path: Path, options: SubmitOptions, on_progress: ProgressCallback) -> str: ...
    async def resume(self, on_progress: ProgressCallback) -> list[str]: ...
    async def prune(self) -> Pruned: ...
    async def vpn_server(self) -> ServerIdentity | None: ...
    async def vpn_peers(self) -> tuple[list[Peer], dict[str, PeerStatus] | None]: ...
    async def vpn_add(self, name: str, networks: tuple[str, ...], keep_key: bool) -> NewPeer: ...
    async def vpn_rekey(self, name: str) -> NewPeer: ...
    async def vpn_revoke(self, name: str) -> None: ...
    async def vpn_config(self, name: str) -> str: ...
    async def vpn_server_config(self) -> str: ...
    async def vpn_apply(self, dry_run: bool) -> tuple[Path, list[str], bool]: ...
    async def vpn_export(self, path: Path, text: str) -> None: ...


class LiveBackend:
    """The console on the real services."""

    def __init__(
        self,
        settings: Settings,
        data_dir: DataDir,
        address: str,
        embedded: bool,
        metrics: MetricsSource | None,
        clock: Clock = system_clock,
        session_file: Path | None = None,
    ) -> None:
        self.settings = settings
        self.data_dir = data_dir
        self.clock = clock
        self._address = address
        self._embedded = embedded
        self._metrics = metrics
        self.store = Store(data_dir.console_db, settings.db_busy_timeout)
        self.client = PoolClient(settings, address, clock)
        self.session = Session(self.client, data_dir.tokens, clock, session_file)
        self.session.load()
        self._monitor: Monitor | None = None
        self._manager: TaskManager | None = None
        self._task_rows = TaskRows()
        # Counted at close for an embedded pool, so the console can stop a pool it started (a session that
        # was not remembered leaves no token file to count them with afterwards).

    @property
    def address(self) -> str:
        return self._address

    @property
    def embedded(self) -> bool:
        return self._embedded

    @property
    def username(self) -> str:
        return self.session.username

    @property
    def role(self) -> str:
        return "viewer" if self.settings.readonly else self.session.role

    @property
    def pool_has_roles(self) -> bool:
        """False on a pool without roles (HiveMind): there nobody is an admin, and the node states cannot be
        changed at all."""
        health = self.client.health
        return health is None or "roles" in health.extensions

    @property
    def connection(self) -> ConnectionState:
        return self.client.state

    @property
    def admin_password_file(self) -> Path | None:
        return self.data_dir.pool / "admin-password" if self._embedded else None

    @property
    def exports_dir(self) -> Path:
        return self.data_dir.exports

    @property
    def manager(self) -> TaskManager:
        """One for the session, kept: it holds the parents between refreshes (services/parent_cache.py)."""
        if self._manager is None or self._manager.session is not self.session:
            self._manager = TaskManager(
                self.settings,
                self.session,
                self.store,
                self.data_dir.root / "staging",
                self.clock,
                settle_in_background=True,
            )
        return self._manager

    @property
    def actions(self) -> TaskActions:
        return TaskActions(self.manager, AuditLog(self.store, self.clock), self.username)

    @property
    def wireguard(self) -> WireGuard:
        return WireGuard(self.settings, self.data_dir.vpn, self.store, self.clock)

    async def open(self) -> None:
        await asyncio.to_thread(self.data_dir.ensure, "exports")
        await self.store.open()
        self._monitor = Monitor(
            self.settings, self.session, self._metrics, History(self.store), Alerts(self.store), self.clock
        )

    async def close(self) -> None:
        await self.client.close()
        if self._manager is not None:
            try:
                await self._manager.settled()
            except Exception:  # written again at the next start: the states it notes are worked out anew
                log.exception("the last refresh's notes of finished tasks were not written")
        await self.store.close()

    def has_session(self) -> bool:
        return self.session.logged_in

    async def login(self, address: str, username: str, password: str, remember: bool) -> None:
        if address != self._address:
            await self.client.close()
            self._address = address
            self._embedded = False
            self.client = PoolClient(self.settings, address, self.clock)
            self.session = Session(self.client, self.data_dir.tokens, self.clock)
            self._monitor = Monitor(
                self.settings, self.session, self._metrics, History(self.store), Alerts(self.store), self.clock
            )
        await self.session.login(username, password, remember)
        await AuditLog(self.store, self.clock).record(username, "login", address)

    async def logout(self) -> None:
        user = self.session.username
        await self.session.logout()
        await AuditLog(self.store, self.clock).record(user, "logout", self._address)

    async def refresh(self) -> ClusterSnapshot:
        assert self._monitor is not None
        return await self._monitor.refresh()

    async def trends(self, since: float, step: float) -> Trends:
        history = History(self.store)
        return Trends(await history.cluster_cpu(since, step), await history.finished(since, step))

    async def node_history(self, node_id: str, since: float) -> list[NodePoint]:
        return await History(self.store).node_history(node_id, since)

    async def set_node_state(self, node_ids: list[str], state: str) -> list[str]:
        done = []
        for node_id in node_ids:
            await self.session.call(partial(self.client.set_node_state, node_id=node_id, state=state))
            await AuditLog(self.store, self.clock).record(self.username, f"node_{state}", node_id)
            done.append(node_id)
        return done

    async def task_rows(self, tasks: list[TaskInfo]) -> TaskRowList:
        return self._task_rows.of(*await self.manager.overview(tasks))

    async def parent(self, task_id: str, tasks: list[TaskInfo]) -> ParentState | None:
        return await self.manager.parent(task_id, tasks)

    async def stop_tasks(self, task_ids: list[str], tasks: list[TaskInfo]) -> list[str]:
        stopped: list[str] = []
        for task_id in task_ids:
            stopped += (await self.actions.stop(task_id, tasks)).stopped
        return stopped

    async def retry_tasks(self, task_ids: list[str], tasks: list[TaskInfo]) -> list[str]:
        new: list[str] = []
        for task_id in task_ids:
            new += await self.actions.retry(task_id, tasks)
        return new

    def log_follower(self, task_id: str) -> LogSource:
        return LogFollower(self.session, task_id)

    async def download(
        self, task_id: str, tasks: list[TaskInfo], path: Path, on_progress: ProgressCallback | None
    ) -> int:
        return (await self.actions.download(task_id, tasks, path, on_progress=on_progress)).size

    async def _nodes(self) -> NodeList | None:
        try:
            return await self.session.call(self.client.list_nodes)
        except Exception:  # a plan without node weights is still a plan
            return None

    async def plan(self, zip_path: Path, options: SubmitOptions) -> SplitPlan:
        return await self.manager.dry_run(zip_path, options, await self._nodes())

    async def submit(self, zip_path: Path, options: SubmitOptions, on_progress: ProgressCallback) -> str:
        return (await self.actions.submit(zip_path, options, await self._nodes(), on_progress)).parent_id

    async def resume(self, on_progress: ProgressCallback) -> list[str]:
        return await self.manager.resume(on_progress)

    async def prune(self) -> Pruned:
        return await prune_store(self.store, self.clock(), self.settings.retention_days, self.data_dir.root / "staging")

    async def vpn_server(self) -> ServerIdentity | None:
        try:
            return await self.wireguard.server()
        except Exception:  # not initialised: the screen says how to start
            return None

    async def vpn_peers(self) -> tuple[list[Peer], dict[str, PeerStatus] | None]:
        wg = self.wireguard
        owner = None if self.role == "admin" else self.username
        peers = await wg.peers(owner=owner)
        return peers, await wg.status() if shutil.which("wg") else None

    async def vpn_add(self, name: str, networks: tuple[str, ...], keep_key: bool) -> NewPeer:
        return await self.wireguard.add(name, self.username, networks, keep_key, actor=self.username)

    async def vpn_rekey(self, name: str) -> NewPeer:
        return await self.wireguard.rekey(name, actor=self.username)

    async def vpn_revoke(self, name: str) -> None:
        await self.wireguard.revoke(name, actor=self.username)

    async def vpn_config(self, name: str) -> str:
        return await self.wireguard.kept_config(name)

    async def vpn_server_config(self) -> str:
        return await self.wireguard.server_config()

    async def vpn_apply(self, dry_run: bool) -> tuple[Path, list[str], bool]:
        result = await self.wireguard.apply(dry_run)
        if result[2]:
            await AuditLog(self.store, self.clock).record(self.username, "vpn_apply", str(result[0]))
        return result

    async def vpn_export(self, path: Path, text: str) -> None:
        await self.wireguard.export(path, text)


__all__ = ["ConsoleBackend", "LiveBackend", "Progress", "TaskRow", "Trends"]
