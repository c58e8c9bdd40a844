"""The console's store (`console.db`): tasks and subtasks, history, alerts, audit, VPN peers.

Each issue that needs a table appends a migration to `MIGRATIONS`; migrations are never edited once
released, only followed by new ones.
"""

from __future__ import annotations

from pathlib import Path

from hivemind_tui.core.sqlite_db import Database, Migration

MIGRATIONS: list[Migration] = [
    # 1: the frame itself; a key/value table for small facts such as the last refresh time.
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL)",
    # 2: history, alerts and the audit log (client services).
    [
        """CREATE TABLE node_samples (
            node_id TEXT NOT NULL, ts REAL NOT NULL, cpu REAL NOT NULL, memory REAL NOT NULL, gpu REAL NOT NULL,
            online INTEGER NOT NULL)""",
        "CREATE INDEX node_samples_node_ts ON node_samples(node_id, ts)",
        "CREATE INDEX node_samples_ts ON node_samples(ts)",
        """CREATE TABLE node_minutes (
            node_id TEXT NOT NULL, minute REAL NOT NULL, cpu REAL NOT NULL, memory REAL NOT NULL,
            gpu REAL NOT NULL, samples INTEGER NOT NULL, PRIMARY KEY (node_id, minute))""",
        "CREATE INDEX node_minutes_minute ON node_minutes(minute)",
        """CREATE TABLE task_counts (
            ts REAL NOT NULL, status TEXT NOT NULL, count INTEGER NOT NULL, PRIMARY KEY (ts, status))""",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, kind TEXT NOT NULL, subject TEXT NOT NULL,
            message TEXT NOT NULL, raised_at REAL NOT NULL, cleared_at REAL)""",
        "CREATE UNIQUE INDEX alerts_active ON alerts(key) WHERE cleared_at IS NULL",
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY AUTOINCREMENT, ts REAL NOT NULL, actor TEXT NOT NULL, action TEXT NOT NULL,
            target TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '')""",
        "CREATE INDEX audit_ts ON audit(ts)",
    ],
    # 3: split tasks (task manager): a parent and its subtasks, recorded before anything is uploaded.
    [
        """CREATE TABLE parents (
            parent_id TEXT PRIMARY KEY, pool TEXT NOT NULL, owner TEXT NOT NULL, source TEXT NOT NULL,
            task_type TEXT NOT NULL, priority INTEGER NOT NULL, total INTEGER NOT NULL, plan TEXT NOT NULL,
            resources TEXT NOT NULL, concat TEXT NOT NULL, header INTEGER NOT NULL, staging TEXT NOT NULL,
            created_at REAL NOT NULL, stopped INTEGER NOT NULL DEFAULT 0)""",
        """CREATE TABLE subtasks (
            task_id TEXT PRIMARY KEY, parent_id TEXT NOT NULL REFERENCES parents(parent_id) ON DELETE CASCADE,
            idx INTEGER NOT NULL, attempt INTEGER NOT NULL, zip_path TEXT NOT NULL, size INTEGER NOT NULL,
            params TEXT NOT NULL, uploaded INTEGER NOT NULL DEFAULT 0, superseded INTEGER NOT NULL DEFAULT 0,
            created_at REAL NOT NULL)""",
        "CREATE INDEX subtasks_parent ON subtasks(parent_id, idx)",
    ],
    # 4: WireGuard peers. Active peers own their name and address; a revoked peer's address is free again.
    [
        """CREATE TABLE vpn_peers (
            id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL, owner TEXT NOT NULL,
            address TEXT NOT NULL, address6 TEXT NOT NULL DEFAULT '', public_key TEXT NOT NULL,
            preshared_key TEXT NOT NULL, mode TEXT NOT NULL CHECK (mode IN ('full', 'split')),
            networks TEXT NOT NULL DEFAULT '', key_kept INTEGER NOT NULL DEFAULT 0, created_at REAL NOT NULL,
            revoked_at REAL)""",
        "CREATE UNIQUE INDEX vpn_peers_active_name ON vpn_peers(name) WHERE revoked_at IS NULL",
        "CREATE UNIQUE INDEX vpn_peers_active_address ON vpn_peers(address) WHERE revoked_at IS NULL",
    ],
    # 5: a subtask the pool refused for good (a bad value, too large): its reason; it is never sent again.
    "ALTER TABLE subtasks ADD COLUMN rejected TEXT NOT NULL DEFAULT ''",
    # 6: when the client first saw a parent finished, so that old ones can be pruned (services/retention.py).
    [
        "ALTER TABLE parents ADD COLUMN finished_at REAL",
        "CREATE INDEX parents_finished ON parents(finished_at) WHERE finished_at IS NOT NULL",
        "CREATE INDEX alerts_cleared ON alerts(cleared_at) WHERE cleared_at IS NOT NULL",
    ],
    # 7: a subtask's last status the pool listed: a pool that lists only some tasks (HiveMind: 100) must not
    # turn a finished subtask back into an unknown one.
    "ALTER TABLE subtasks ADD COLUMN last_status TEXT NOT NULL DEFAULT ''",
    # 8: a counter of changes to parents and subtasks, kept by triggers, so that a console keeps them in memory
    # and reads them again only when a submit, retry, stop or prune (here or in another process) changed them.
    # What a refresh itself writes (finished_at, zip_path, last_status) does not count: the console that
    # writes it knows it (services/parent_cache.py).
    [
        "CREATE TABLE changes (name TEXT PRIMARY KEY, n INTEGER NOT NULL)",
        "INSERT INTO changes (name, n) VALUES ('parents', 0)",
        "CREATE TRIGGER parents_insert AFTER INSERT ON parents "
        "BEGIN UPDATE changes SET n = n + 1 WHERE name = 'parents'; END",
        "CREATE TRIGGER parents_delete AFTER DELETE ON parents "
        "BEGIN UPDATE changes SET n = n + 1 WHERE name = 'parents'; END",
        "CREATE TRIGGER parents_update AFTER UPDATE OF stopped, owner, pool, task_type, priority, created_at "
        "ON parents "
        "BEGIN UPDATE changes SET n = n + 1 WHERE name = 'parents'; END",
        "CREATE TRIGGER subtasks_insert AFTER INSERT ON subtasks "
        "BEGIN UPDATE changes SET n = n + 1 WHERE name = 'parents'; END",
        "CREATE TRIGGER subtasks_delete AFTER DELETE ON subtasks "
        "BEGIN UPDATE changes SET n = n + 1 WHERE name = 'parents'; END",
        "CREATE TRIGGER subtasks_update AFTER UPDATE OF uploaded, rejected, superseded, attempt, params, size, idx, "
        "parent_id ON subtasks "
        "BEGIN UPDATE changes SET n = n + 1 WHERE name = 'parents'; END",
    ],
    # 9: the cluster's CPU once a refresh (the average of the online nodes), for the dashboard's trend: one row
    # a refresh, where averaging every node's raw samples of the hour read 3.6 million rows a refresh by the end
    # of the first hour (1,000 nodes, 1 s refresh). Filled from the samples already kept.
    [
        "CREATE TABLE cluster_samples (ts REAL PRIMARY KEY, cpu REAL NOT NULL, online INTEGER NOT NULL)",
        "INSERT INTO cluster_samples (ts, cpu, online) "
        "SELECT ts, AVG(cpu), COUNT(*) FROM node_samples WHERE online = 1 GROUP BY ts",
    ],
    # 10: raw node samples as one row a refresh, a "frame": every node's values packed, in the order of a
    # roster of node ids kept apart. A row per node and refresh cost ~20 ms of CPU a refresh at 1,000 nodes
    # (the (node_id, ts) index takes each refresh's rows in 1,000 places) and ~150 KB of store; a frame costs
    # 0.06 ms and 13 KB. The samples kept so far are folded into minute averages, as compact() would have.
    [
        "CREATE TABLE node_rosters (id INTEGER PRIMARY KEY, node_ids TEXT NOT NULL UNIQUE)",
        """CREATE TABLE node_frames (
            ts REAL PRIMARY KEY, roster INTEGER NOT NULL, cpu BLOB NOT NULL, memory BLOB NOT NULL,
            gpu BLOB NOT NULL, online BLOB NOT NULL)""",
        "INSERT INTO node_minutes (node_id, minute, cpu, memory, gpu, samples) "
        "SELECT node_id, CAST(ts / 60 AS INTEGER) * 60, AVG(cpu), AVG(memory), AVG(gpu), COUNT(*) "
        "FROM node_samples WHERE true GROUP BY node_id, CAST(ts / 60 AS INTEGER) "
        "ON CONFLICT(node_id, minute) DO UPDATE SET "
        "cpu = (cpu * samples + excluded.cpu * excluded.samples) / (samples + excluded.samples), "
        "memory = (memory * samples + excluded.memory * excluded.samples) / (samples + excluded.samples), "
        "gpu = (gpu * samples + excluded.gpu * excluded.samples) / (samples + excluded.samples), "
        "samples = samples + excluded.samples",
        "DROP TABLE node_samples",
    ],
]


class Store(Database):
    """The console's database; open it inside the running loop."""

    def __init__(self, path: Path, busy_timeout: float = 30.0) -> None:
        super().__init__(path, MIGRATIONS, busy_timeout)
