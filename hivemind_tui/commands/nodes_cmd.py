"""`nodes list|show|cordon|drain|activate|forget`: the workers of the pool."""

from __future__ import annotations

import time

from hivemind_tui.commands.base import CommandRegistry, Context, Result
from hivemind_tui.commands.common import age, connect, require_change, table
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.history import History
from hivemind_tui.services.models import NodeInfo

LIST_KEYS = (
    "node_id",
    "hostname",
    "port",
    "status",
    "online",
    "state",
    "cpu_usage",
    "memory_usage",
    "gpu_usage",
    "gpu_memory_usage",
    "running_tasks",
    "slots",
    "cpu_cores",
    "memory_gb",
    "last_heartbeat",
)


def register(registry: CommandRegistry) -> None:
    nodes = registry.group("nodes", "the pool's worker nodes")
    nodes.command("list", list_nodes, "every node with its state and live usage")
    show_cmd = nodes.command("show", show, "one node with its history from the store (last hour)")
    show_cmd.add_argument("node_id", metavar="ID")
    for state, verb in (("cordoned", "cordon"), ("draining", "drain"), ("active", "activate"), ("forget", "forget")):
        cmd = nodes.command(verb, set_state, f"{verb} a node (admins)")
        cmd.add_argument("node_id", metavar="ID")
        cmd.set_defaults(state=state, verb=verb)


def node_json(node: NodeInfo) -> dict[str, object]:
    data = node.as_json()
    return {k: data[k] for k in LIST_KEYS} | {k: v for k, v in data.items() if k not in LIST_KEYS}


async def list_nodes(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        listed = await conn.session.call(conn.client.list_nodes)
    if not listed.supported:
        return Result({"supported": False, "nodes": []}, "this Node Pool does not list nodes")
    now = time.time()
    rows = [
        (
            n.node_id,
            n.hostname,
            n.status,
            "online" if n.online else "OFFLINE",
            n.state,
            f"{n.cpu_usage:.0f}%",
            f"{n.memory_usage:.0f}%",
            f"{n.gpu_usage:.0f}%",
            f"{n.running_tasks}/{n.slots}",
            age(n.last_heartbeat, now),
        )
        for n in listed.nodes
    ]
    text = table(("ID", "HOST", "STATUS", "ONLINE", "STATE", "CPU", "MEM", "GPU", "TASKS", "HEARTBEAT"), rows)
    return Result({"supported": True, "nodes": [node_json(n) for n in listed.nodes]}, text if rows else "no nodes")


async def show(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        listed = await conn.session.call(conn.client.list_nodes)
        if not listed.supported:
            raise HivemindError("this Node Pool does not list nodes", code="NOT_SUPPORTED")
        node = next((n for n in listed.nodes if n.node_id == ctx.args.node_id), None)
        if node is None:
            raise HivemindError(f"no node {ctx.args.node_id}", code="NODE_NOT_FOUND")
        points = await History(conn.store).node_history(node.node_id, time.time() - 3600)
        tasks = (await conn.session.call(conn.client.list_tasks)).tasks
    running = [t.task_id for t in tasks if t.worker == node.node_id and t.status in ("ASSIGNED", "RUNNING")]
    history = [{"ts": p.ts, "cpu": p.cpu, "memory": p.memory, "gpu": p.gpu} for p in points]
    lines = [f"{k:<16} {v}" for k, v in node_json(node).items()]
    lines.append(f"{'history':<16} {len(points)} samples in the last hour")
    lines.append(f"{'running':<16} {', '.join(running) or '-'}")
    return Result({"node": node_json(node), "history": history, "running_tasks": running}, "\n".join(lines))


async def set_state(ctx: Context) -> Result:
    async with connect(ctx) as conn:
        require_change(ctx, conn, f"{ctx.args.verb} nodes")  # the pool itself admits admins only
        await conn.session.call(lambda token: conn.client.set_node_state(token, ctx.args.node_id, ctx.args.state))
        await conn.audit.record(conn.user, f"node_{ctx.args.verb}", ctx.args.node_id)
    return Result({"node_id": ctx.args.node_id, "state": ctx.args.state}, f"node {ctx.args.node_id}: {ctx.args.state}")
