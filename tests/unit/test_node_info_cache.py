"""GetNodeList's messages are rebuilt only for nodes whose row, or whose being online, changed."""

from __future__ import annotations

from pathlib import Path

from hivemind_tui.nodepool.servicers import NodeInfoCache
from hivemind_tui.nodepool.storage import PoolPaths, PoolStorage


async def test_unchanged_nodes_keep_their_messages(tmp_path: Path) -> None:
    async with PoolStorage(PoolPaths(tmp_path / "pool")) as storage:
        async with storage.write() as conn:
            await conn.executemany(
                "INSERT INTO nodes (node_id, hostname, registered_at, last_heartbeat) VALUES (?, ?, 0, 0)",
                [(f"n{i}", f"h{i}") for i in range(3)],
            )

        async def rows() -> list:
            return await storage.fetchall("SELECT * FROM nodes ORDER BY node_id")

        cache = NodeInfoCache()
        offline = {"n2"}
        first = cache.messages(await rows(), lambda row: row["node_id"] not in offline)
        assert [(m.node_id, m.hostname, m.online) for m in first] == [
            ("n0", "h0", True),
            ("n1", "h1", True),
            ("n2", "h2", False),
        ]
        async with storage.write() as conn:
            await conn.execute("UPDATE nodes SET cpu_usage = 50 WHERE node_id = 'n1'")
            await conn.execute("DELETE FROM nodes WHERE node_id = 'n0'")
        offline.clear()  # n2 came back
        second = cache.messages(await rows(), lambda row: row["node_id"] not in offline)
        assert [(m.node_id, m.online) for m in second] == [("n1", True), ("n2", True)]
        assert second[0].cpu_usage == 50 and second[0] is not first[1]
        third = cache.messages(await rows(), lambda row: True)
        assert third[0] is second[0] and third[1] is second[1]  # nothing changed: the same messages
