"""Workers that speak HiveMind's protocol on our pool: who such a worker is, and where the pool may dial it.

A HiveMind worker has no worker secret. It logs in as an ordinary user, registers with node_id = its user
name and its JWT in `authorization: Bearer` metadata (on its first registration only), and then calls with
no credential at all (ReportStatus, the registration it repeats every 30 s), with its user name in
TaskUsage's token, or with a JWT it never refreshes (output and results, long after the JWT expired).

So with `pool serve --accept-hivemind-workers` the pool checks the JWT once, at the first registration (its
user must be the node id, and the id must not belong to one of our workers), and binds the node to the
address that registration came from: every later call for that node, and every report for a task running
on it, must come from that address. Weaker than our workers' secret and TLS, and said so in the README:
another process on that host (or behind the same NAT) could speak for the node.

With `--hivemind-compat` the pool imitates HiveMind, which checks nothing on worker rpcs: anyone registers as
any node id and reports for any task.
"""

from __future__ import annotations

from typing import Any

import grpc

from hivemind_tui.core.hosts import is_loopback
from hivemind_tui.nodepool import codes
from hivemind_tui.nodepool.accounts import Accounts
from hivemind_tui.nodepool.codes import PoolRefusal
from hivemind_tui.nodepool.nodes import NodeRegistry, peer_host
from hivemind_tui.nodepool.storage import PoolStorage

OURS = "ours"
HIVEMIND = "hivemind"
# The HiveMind worker's gRPC server keeps gRPC's default 4 MiB receive limit: a larger ExecuteTask is refused
# by gRPC itself, and its pool retries it every 10 s for ever. Room is kept for the request's other fields.
HIVEMIND_WORKER_MAX_ZIP = 4 * 1024 * 1024 - 4096
# What `nodes show` says confines a HiveMind-style node's tasks: its registration does not tell.
HIVEMIND_ISOLATION = "HiveMind protocol (no worker secret, plaintext, bound to its address); its sandbox unknown"
# The node-level TaskUsage report: task id "0", and the token field carries the node id.
NODE_REPORT = "0"


def bearer(context: grpc.aio.ServicerContext[Any, Any]) -> str:
    for name, value in context.invocation_metadata() or ():
        if name == "authorization":
            text = value if isinstance(value, str) else value.decode()
            return text.removeprefix("Bearer ").strip()
    return ""


def dial_host(hostname: str, peer: str) -> str:
    """Where our pool dials a HiveMind-style worker: the IP it sends as `hostname`, unless that names no
    reachable place (empty, or loopback while the call came from elsewhere); then the address it called from."""
    if not hostname or (is_loopback(hostname) and not is_loopback(peer)):
        return peer
    return hostname


class HivemindWorkers:
    """The pool's rules for workers without our secret; `compat` imitates HiveMind, which has none."""

    def __init__(self, accounts: Accounts, nodes: NodeRegistry, storage: PoolStorage, compat: bool) -> None:
        self._accounts = accounts
        self._nodes = nodes
        self._storage = storage
        self.compat = compat

    async def check_registration(self, node_id: str, context: grpc.aio.ServicerContext[Any, Any]) -> None:
        """Refuse a registration that is neither HiveMind's first (a valid JWT of the user named node_id)
        nor a repeat of one from the address the node registered from."""
        if self.compat:
            return
        token = bearer(context)
        row = await self._nodes.node(node_id)
        if token:
            caller = await self._accounts.authenticate(token)
            if caller.username != node_id:
                raise PoolRefusal(
                    codes.PERMISSION_DENIED,
                    f"a HiveMind-style worker registers as its user: node_id must be {caller.username!r}",
                )
            if row is not None and row["kind"] == OURS:
                raise PoolRefusal(codes.PERMISSION_DENIED, f"node {node_id} is one of this pool's own workers")
            return
        if row is not None and row["kind"] == HIVEMIND and row["peer"] == peer_host(context.peer()):
            return
        raise PoolRefusal(
            codes.PERMISSION_DENIED,
            "worker secret missing or wrong (a HiveMind-style worker logs in and sends its token on its first "
            "registration)",
        )

    async def reporting_node(self, node_id: str, task_id: str, context: grpc.aio.ServicerContext[Any, Any]) -> str:
        """The node a secret-less report speaks for: `node_id` when the rpc names one, else the node the task
        runs on. It must be a HiveMind-style node, called from the address it registered from. Under compat,
        any report for any task passes (the empty string: no node check)."""
        if self.compat:
            return node_id
        if not node_id:
            task = await self._storage.task(task_id)
            node_id = task["worker"] if task is not None else ""
        row = await self._nodes.node(node_id) if node_id else None
        if row is None or row["kind"] != HIVEMIND or row["peer"] != peer_host(context.peer()):
            raise PoolRefusal(codes.PERMISSION_DENIED, "worker secret missing or wrong")
        return node_id
