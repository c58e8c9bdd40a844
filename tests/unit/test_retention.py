"""The client's store stays bounded: what finished or cleared longer ago than the retention goes."""

from __future__ import annotations

from pathlib import Path

import pytest

from hivemind_tui.services.retention import DAY, prune_store
from hivemind_tui.services.store import Store

NOW = 1_800_000_000.0


async def seed(store: Store, staging: Path) -> None:
    async with store.write() as conn:
        for parent_id, finished_at in (("old", NOW - 31 * DAY), ("recent", NOW - DAY), ("running", None)):
            (staging / parent_id).mkdir(parents=True)
            (staging / parent_id / "0001.zip").write_bytes(b"zip")
            await conn.execute(
                "INSERT INTO parents (parent_id, pool, owner, source, task_type, priority, total, plan, resources, "
                "concat, header, staging, created_at, finished_at) "
                "VALUES (?, 'p', 'o', 's', 'simulation', 0, 2, '[]', '{}', '[]', 0, ?, ?, ?)",
                (parent_id, str(staging / parent_id), NOW - 40 * DAY, finished_at),
            )
            for index in range(2):
                await conn.execute(
                    "INSERT INTO subtasks (task_id, parent_id, idx, attempt, zip_path, size, params, created_at) "
                    "VALUES (?, ?, ?, 0, '', 1, 'null', ?)",
                    (f"{parent_id}.{index}", parent_id, index, NOW - 40 * DAY),
                )
        for ts in (NOW - 40 * DAY, NOW - 31 * DAY, NOW - 2 * DAY):
            await conn.execute(
                "INSERT INTO audit (ts, actor, action, target, detail) VALUES (?, 'a', 'stop', 't', '')", (ts,)
            )
        rows = [
            ("a:old", NOW - 40 * DAY, NOW - 35 * DAY),
            ("a:new", NOW - 40 * DAY, NOW - DAY),
            ("a:active", NOW - 40 * DAY, None),
        ]
        for key, raised, cleared in rows:
            await conn.execute(
                "INSERT INTO alerts (key, kind, subject, message, raised_at, cleared_at) "
                "VALUES (?, 'k', 's', 'm', ?, ?)",
                (key, raised, cleared),
            )


async def test_old_finished_parents_audit_and_cleared_alerts_go(tmp_path: Path) -> None:
    staging = tmp_path / "staging"
    async with Store(tmp_path / "console.db") as store:
        await seed(store, staging)
        pruned = await prune_store(store, NOW, 30, staging)
        assert pruned.as_json() == {"parents": 1, "subtasks": 2, "audit": 2, "alerts": 1}
        parents = [r["parent_id"] for r in await store.fetchall("SELECT parent_id FROM parents ORDER BY parent_id")]
        assert parents == ["recent", "running"]
        assert (await store.fetchvalue("SELECT COUNT(*) FROM subtasks")) == 4
        assert [r["key"] for r in await store.fetchall("SELECT key FROM alerts ORDER BY key")] == ["a:active", "a:new"]
        assert sorted(p.name for p in staging.iterdir()) == ["recent", "running"]
        again = await prune_store(store, NOW, 30, staging)
        assert again.as_json() == {"parents": 0, "subtasks": 0, "audit": 0, "alerts": 0}


async def test_a_retention_of_zero_keeps_everything(tmp_path: Path) -> None:
    async with Store(tmp_path / "console.db") as store:
        await seed(store, tmp_path / "staging")
        assert (await prune_store(store, NOW + 1000 * DAY, 0, tmp_path / "staging")).parents == 0
        assert (await store.fetchvalue("SELECT COUNT(*) FROM parents")) == 3


async def test_pruning_removes_only_staged_folders_under_the_staging_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A row's staging path is data: an empty one (it would name the working directory) or one outside the
    data dir's staging folder is never removed. (An empty path once emptied the working directory.)"""
    cwd, outside, staging = tmp_path / "cwd", tmp_path / "precious", tmp_path / "staging"
    for folder in (cwd, outside, staging, staging / "ok"):
        folder.mkdir(parents=True)
        (folder / "keep.txt").write_text("x")
    monkeypatch.chdir(cwd)
    async with Store(tmp_path / "console.db") as store:
        async with store.write() as conn:
            for parent_id, path in (
                ("empty", ""),
                ("outside", str(outside)),
                ("root", str(staging)),
                ("ok", str(staging / "ok")),
            ):
                await conn.execute(
                    "INSERT INTO parents (parent_id, pool, owner, source, task_type, priority, total, plan, "
                    "resources, concat, header, staging, created_at, finished_at) "
                    "VALUES (?, 'p', 'o', 's', 'simulation', 0, 0, '[]', '{}', '[]', 0, ?, ?, ?)",
                    (parent_id, path, NOW - 40 * DAY, NOW - 31 * DAY),
                )
        pruned = await prune_store(store, NOW, 30, staging)
    assert pruned.parents == 4  # the rows go
    assert (cwd / "keep.txt").exists() and (outside / "keep.txt").exists() and (staging / "keep.txt").exists()
    assert not (staging / "ok").exists()
