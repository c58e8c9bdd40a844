"""Worker nodes: registration, heartbeats, the node list and the admin's node states.

A node is online while its last heartbeat is younger than the heartbeat timeout. States: `active` takes
new tasks, `cordoned` and `draining` take none (a draining node goes offline once idle: its worker stops
heartbeating when told so); `forget` removes an offline node.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from urllib.parse import unquote

import aiosqlite

from hivemind_tui.core.clock import Clock
from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.accounts import Caller
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.storage import PoolStorage

log = logging.getLogger(__name__)

STATES = ("active", "cordoned", "draining", "forget")
NODE_FIELDS = (
    "hostname",
    "port",
    "cpu_cores",
    "memory_gb",
    "cpu_score",
    "gpu_score",
    "gpu_memory_gb",
    "gpu_name",
    "location",
    "docker_status",
    "slots",
    "address",
    "isolation",
    "kind",
    "peer",
)
USAGE_FIELDS = (
    "status",
    "cpu_usage",
    "memory_usage",
    "gpu_usage",
    "gpu_memory_usage",
    "docker_status",
    "running_tasks",
)


@dataclass(frozen=True)
class Registration:
    node_id: str
    hostname: str
    address: str
    port: int
    cpu_cores: int
    memory_gb: int
    cpu_score: int
    gpu_score: int
    gpu_memory_gb: int
    gpu_name: str
    location: str
    docker_status: str
    slots: int
    instance_id: str = ""
    isolation: str = ""
    # "ours", or "hivemind": a worker that speaks HiveMind's protocol (see hivemind_workers.py).
    kind: str = "ours"
    # Where the registration came from; a HiveMind-style node's later calls must come from there.
    peer: str = ""
    # Tasks (id -> attempt) whose result the worker holds unsent: they survive its restart.
    held: dict[str, int] = field(default_factory=dict)


def peer_host(peer: str) -> str:
    """The host part of a gRPC peer string: `ipv4:127.0.0.1:5000`, `ipv6:%5B::1%5D:5000`."""
    kind, _, rest = unquote(peer).partition(":")
    if kind == "ipv6":
        return rest.rpartition(":")[0].strip("[]")
    if kind == "ipv4":
        return rest.rpartition(":")[0]
    return "127.0.0.1"


async def _nobody_answers(row: aiosqlite.Row) -> str | None:
    return None


async def _nothing_to_do(node_id: str, held: dict[str, int]) -> None:
    return None


class NodeRegistry:
    def __init__(self, storage: PoolStorage, clock: Clock, heartbeat_timeout: float) -> None:
        self._storage = storage
        self._clock = clock
        self.heartbeat_timeout = heartbeat_timeout
        # `all()`'s rows by node id, as of change number `_seen_seq`.
        self._rows: dict[str, aiosqlite.Row] = {}
        self._seen_seq = -1
        # Called when a node may have room for new work (registered, heartbeat, state change).
        self.on_change: Callable[[], None] = lambda: None
        # The instance id the worker at a node's address answers with, None if nothing answers.
        self.probe: Callable[[aiosqlite.Row], Awaitable[str | None]] = _nobody_answers
        # Called when a node's worker process was replaced: its tasks but `held` ones go back to the queue.
        self.on_restart: Callable[[str, dict[str, int]], Awaitable[None]] = _nothing_to_do

    def is_online(self, row: aiosqlite.Row) -> bool:
        """Heard from within the timeout; a draining node counts as offline once it runs nothing."""
        if row["state"] == "draining" and row["running_tasks"] == 0:
            return False
        return bool(self._clock() - row["last_heartbeat"] < self.heartbeat_timeout)

    async def register(self, reg: Registration) -> None:
        if not reg.node_id or len(reg.node_id) > 128 or not reg.node_id.isprintable():
            raise PoolRefusal(codes.INVALID_ARGUMENT, "node_id must be 1 to 128 printable characters")
        if not 0 < reg.port < 65536:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "port must be from 1 to 65535")
        restarted = await self._replaces(reg)
        now = self._clock()
        values = {name: getattr(reg, name) for name in NODE_FIELDS}
        # A HiveMind worker says nothing of slots: it takes tasks while its cores last.
        values["slots"] = max(1, reg.slots if reg.slots or reg.kind == "ours" else reg.cpu_cores)
        values["instance_id"] = reg.instance_id
        columns = ", ".join(values)
        updates = ", ".join(f"{k} = excluded.{k}" for k in values)
        async with self._storage.write() as conn:
            await conn.execute(
                f"INSERT INTO nodes (node_id, {columns}, status, registered_at, last_heartbeat) "  # noqa: S608
                f"VALUES (?, {', '.join('?' * len(values))}, 'Idle', ?, ?) "
                f"ON CONFLICT(node_id) DO UPDATE SET {updates}, last_heartbeat = excluded.last_heartbeat",
                (reg.node_id, *values.values(), now, now),
            )
        log.info("node %s registered at %s:%d with %d slots", reg.node_id, reg.address, reg.port, values["slots"])
        if restarted:
            await self.on_restart(reg.node_id, reg.held)
        self.on_change()

    async def _replaces(self, reg: Registration) -> bool:
        """Whether this registration replaces another worker process of the node. Refused while that one
        lives: asked at its address (a restart does not wait out the heartbeat timeout)."""
        row = await self.node(reg.node_id)
        if row is None or not reg.instance_id or row["instance_id"] == reg.instance_id:
            return False
        recent = self._clock() - row["last_heartbeat"] < self.heartbeat_timeout
        if row["instance_id"] and recent and await self.probe(row) == row["instance_id"]:
            raise PoolRefusal(
                codes.NODE_IN_USE,
                f"node {reg.node_id} is live at {row['address']}:{row['port']} (another worker process); "
                "stop that one or pick another --node-id",
            )
        return True

    async def heartbeat(self, node_id: str, usage: dict[str, object], instance_id: str = "") -> None:
        """Record a heartbeat; one from a process the node no longer belongs to is told to register."""
        sets = ", ".join(f"{k} = ?" for k in USAGE_FIELDS)
        async with self._storage.write() as conn:
            cursor = await conn.execute(
                f"UPDATE nodes SET {sets}, last_heartbeat = ? "  # noqa: S608
                "WHERE node_id = ? AND (? = '' OR instance_id IN ('', ?))",
                (*(usage[k] for k in USAGE_FIELDS), self._clock(), node_id, instance_id, instance_id),
            )
            if cursor.rowcount == 0:
                raise PoolRefusal(codes.NODE_NOT_FOUND, "register first (or again: another process took the node)")
        self.on_change()

    async def touch(self, node_id: str, cpu_usage: float, memory_usage: float) -> None:
        """HiveMind's node-level usage report (TaskUsage for task "0"), which counts as a heartbeat."""
        async with self._storage.write() as conn:
            cursor = await conn.execute(
                "UPDATE nodes SET cpu_usage = ?, memory_usage = ?, last_heartbeat = ? WHERE node_id = ?",
                (cpu_usage, memory_usage, self._clock(), node_id),
            )
            if cursor.rowcount == 0:
                raise PoolRefusal(codes.NODE_NOT_FOUND, f"node {node_id[:128]} is not registered")
        self.on_change()

    async def all(self) -> list[aiosqlite.Row]:
        """Every node, by id. The rows are kept, and only those whose change number moved are read again: the
        scheduler and every console ask for all of them about once a second, and most did not change. A row
        object stays the same while its node does (GetNodeList keeps its message by it).

        The number is read before the rows, so a write that commits in between is read again next time. A
        removal moves the number but leaves no row to read; the count tells, and then all are read again (keeping
        the objects of rows whose number is the same)."""
        [(seq, count)] = await self._storage.fetchall(
            "SELECT (SELECT last FROM node_seq), (SELECT COUNT(*) FROM nodes)"
        )
        if seq != self._seen_seq or count != len(self._rows):
            changed = await self._storage.fetchall("SELECT * FROM nodes WHERE seq > ?", (self._seen_seq,))
            rows = self._rows | {row["node_id"]: row for row in changed}
            if len(rows) != count:
                rows = {row["node_id"]: self._kept(row) for row in await self._storage.fetchall("SELECT * FROM nodes")}
            self._rows = rows if rows.keys() == self._rows.keys() else dict(sorted(rows.items()))
            self._seen_seq = seq
        return list(self._rows.values())

    def _kept(self, row: aiosqlite.Row) -> aiosqlite.Row:
        old = self._rows.get(row["node_id"])
        return old if old is not None and old["seq"] == row["seq"] else row

    async def node(self, node_id: str) -> aiosqlite.Row | None:
        return await self._storage.fetchone("SELECT * FROM nodes WHERE node_id = ?", (node_id,))

    async def set_state(self, caller: Caller, node_id: str, state: str) -> None:
        if not caller.is_admin:
            raise PoolRefusal(codes.PERMISSION_DENIED, "only admins change node states")
        if state not in STATES:
            raise PoolRefusal(codes.INVALID_ARGUMENT, "state must be one of " + ", ".join(STATES))
        row = await self.node(node_id)
        if row is None:
            raise PoolRefusal(codes.NODE_NOT_FOUND, node_id[:128])
        async with self._storage.write() as conn:
            if state == "forget":
                if self.is_online(row):
                    raise PoolRefusal(codes.INVALID_ARGUMENT, "the node is online; drain it or stop its worker first")
                await conn.execute("DELETE FROM nodes WHERE node_id = ?", (node_id,))
            else:
                await conn.execute("UPDATE nodes SET state = ? WHERE node_id = ?", (state, node_id))
        log.info("node %s set to %s by %s", node_id, state, caller.username)
        self.on_change()
