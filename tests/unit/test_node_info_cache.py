"""The node list is read again only where it changed: `NodeRegistry.all` keeps the rows of nodes whose change
number did not move, and GetNodeList's messages are rebuilt only for nodes whose row, or being online, did."""

from __future__ import annotations

from pathlib import Path

from hivemind_tui.nodepool.nodes import NodeRegistry
from hivemind_tui.nodepool.servicers import NodeInfoCache
from hivemind_tui.nodepool.storage import PoolPaths, PoolStorage


async def add_nodes(storage: PoolStorage, *names: str) -> None:
    async with storage.write() as conn:
        await conn.executemany(
            "INSERT INTO nodes (node_id, hostname, registered_at, last_heartbeat) VALUES (?, ?, 0, 0)",
            [(name, "h" + name) for name in names],
        )


async def test_unchanged_nodes_keep_their_rows_and_messages(tmp_path: Path) -> None:
    async with PoolStorage(PoolPaths(tmp_path / "pool")) as storage:
        await add_nodes(storage, "n1", "n0", "n2")
        registry = NodeRegistry(storage, clock=lambda: 0.0, heartbeat_timeout=10)
        cache = NodeInfoCache()
        offline = {"n2"}
        first_rows = await registry.all()
        first = cache.messages(first_rows, lambda row: row["node_id"] not in offline)
        assert [(m.node_id, m.hostname, m.online) for m in first] == [
            ("n0", "hn0", True),
            ("n1", "hn1", True),
            ("n2", "hn2", False),
        ]
        async with storage.write() as conn:
            await conn.execute("UPDATE nodes SET cpu_usage = 50 WHERE node_id = 'n1'")
            await conn.execute("DELETE FROM nodes WHERE node_id = 'n0'")
        offline.clear()  # n2 came back
        second_rows = await registry.all()
        assert second_rows[1] is first_rows[2]  # n2's row was not read again
        second = cache.messages(second_rows, lambda row: row["node_id"] not in offline)
        assert [(m.node_id, m.online) for m in second] == [("n1", True), ("n2", True)]
        assert second[0].cpu_usage == 50 and second[0] is not first[1]
        third_rows = await registry.all()
        assert all(a is b for a, b in zip(third_rows, second_rows, strict=True))
        third = cache.messages(third_rows, lambda row: True)
        assert third[0] is second[0] and third[1] is second[1]  # nothing changed: the same messages


async def test_the_node_rows_follow_writes_of_another_process(tmp_path: Path) -> None:
    """A pool's database is written by the pool, but also by `pool` commands run beside it."""
    paths = PoolPaths(tmp_path / "pool")
    async with PoolStorage(paths) as storage, PoolStorage(paths) as other:
        await add_nodes(storage, "b", "d")
        registry = NodeRegistry(storage, clock=lambda: 0.0, heartbeat_timeout=10)
        assert [r["node_id"] for r in await registry.all()] == ["b", "d"]
        await add_nodes(other, "c", "a")
        async with other.write() as conn:
            await conn.execute("UPDATE nodes SET hostname = 'moved' WHERE node_id = 'd'")
        rows = await registry.all()
        assert [(r["node_id"], r["hostname"]) for r in rows] == [("a", "ha"), ("b", "hb"), ("c", "hc"), ("d", "moved")]
        # A removal and an insertion in one go leave the count as it was; the change number still moves.
        async with other.write() as conn:
            await conn.execute("DELETE FROM nodes WHERE node_id = 'b'")
            await conn.execute(
                "INSERT INTO nodes (node_id, hostname, registered_at, last_heartbeat) VALUES ('e', 'he', 0, 0)"
            )
        assert [r["node_id"] for r in await registry.all()] == ["a", "c", "d", "e"]
        async with other.write() as conn:
            await conn.execute("DELETE FROM nodes")
        assert await registry.all() == []
