"""Typed results of the Node Pool client: what screens and commands work with, never protobuf objects."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

FINISHED_STATUSES = frozenset({"COMPLETED", "FAILED", "STOPPED"})
KNOWN_STATUSES = ("PENDING", "ASSIGNED", "RUNNING", "COMPLETED", "FAILED", "STOPPED")


@dataclass(frozen=True)
class LoginResult:
    token: str
    role: str
    expires_at: float | None

    def __repr__(self) -> str:
        return f"LoginResult(role={self.role!r}, expires_at={self.expires_at!r})"


@dataclass(frozen=True)
class PoolHealth:
    version: str
    extensions: tuple[str, ...]
    time: float | None
    latency_ms: float


class TaskInfo(NamedTuple):
    """A task as the pool listed it. A named tuple, not a frozen dataclass: a full listing makes 100,000 of
    them, and a frozen dataclass sets each of its 17 fields through `object.__setattr__` (converting 100,000
    listed tasks: 0.62 s as a frozen dataclass, 0.36 s as this); that conversion is what `tasks list` waits for."""

    task_id: str
    status: str
    message: str = ""
    worker: str = ""
    owner: str = ""
    created_at: float | None = None
    updated_at: float | None = None
    priority: int = 0
    task_type: str = ""
    parent_task_id: str = ""
    exit_code: int | None = None
    cpu_usage: float = 0.0
    memory_usage: float = 0.0
    gpu_usage: float = 0.0
    gpu_memory_usage: float = 0.0
    started_at: float | None = None
    finished_at: float | None = None

    @property
    def finished(self) -> bool:
        """An unknown status counts as not finished: a newer pool may report statuses we do not know."""
        return self.status in FINISHED_STATUSES


@dataclass(frozen=True)
class TaskList:
    tasks: list[TaskInfo]
    server_time: float | None
    # The change number to ask from next (`after_seq`); None from a pool without change numbers (HiveMind).
    seq: int | None = None


class TaskListing(list[TaskInfo]):
    """The pool's tasks as the monitor keeps them between refreshes: a list (in the order the tasks were first
    listed; every screen sorts its own way) that also holds them by id, and which ids changed since the same
    monitor's previous listing (None: not known, as after a full list). With 100,000 tasks, the task manager
    then need not compare every entry to find the few that changed, and no refresh sorts them all."""

    def __init__(
        self,
        by_id: dict[str, TaskInfo],
        origin: object,
        generation: int,
        changed: frozenset[str] | None,
    ) -> None:
        super().__init__(by_id.values())
        self.by_id = by_id
        self.origin = origin
        self.generation = generation
        self.changed = changed

    def changes_since(self, origin: object, generation: int) -> frozenset[str] | None:
        """The ids changed since the listing `origin` made as number `generation`; None when not known."""
        if self.origin is not origin:
            return None
        if self.generation == generation:
            return frozenset()
        return self.changed if self.generation == generation + 1 else None


class NodeInfo(NamedTuple):
    """A node as the pool listed it. A named tuple for the reason TaskInfo is one: every refresh converts each
    node whose heartbeat changed it (all of them, every few seconds), and as a frozen dataclass that cost three
    times as much (1,000 nodes: 11 ms against 3.6 ms); comparing two is a tuple's comparison too."""

    node_id: str
    hostname: str = ""
    port: int = 0
    status: str = ""
    online: bool = False
    state: str = "active"
    cpu_cores: int = 0
    memory_gb: int = 0
    cpu_score: int = 0
    gpu_score: int = 0
    gpu_memory_gb: int = 0
    gpu_name: str = ""
    location: str = ""
    cpu_usage: float = 0.0
    memory_usage: float = 0.0
    gpu_usage: float = 0.0
    gpu_memory_usage: float = 0.0
    running_tasks: int = 0
    slots: int = 0
    last_heartbeat: float | None = None
    docker_status: str = ""
    isolation: str = ""

    def as_json(self) -> dict[str, Any]:
        return self._asdict()


@dataclass(frozen=True)
class NodeList:
    """`supported` is False against a pool without GetNodeList (a HiveMind pool)."""

    supported: bool
    nodes: list[NodeInfo] = field(default_factory=list)


@dataclass(frozen=True)
class ConnectionState:
    """What the header shows: connected, reconnecting (next try in N s) or disconnected since T."""

    status: str = "unknown"  # connected | reconnecting | disconnected | unknown
    since: float | None = None
    next_retry_at: float | None = None
    latency_ms: float | None = None
    failures: int = 0
