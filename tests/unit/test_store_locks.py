"""Opening a second store on the same file in one process must not drop the first one's SQLite locks.

Closing any descriptor of a file drops every POSIX lock the process holds on it: another process then
takes the WAL for abandoned, deletes it on close, and the first store's later commits go with it. The HTTP
face opens a store per /health call beside its long-lived one; this is that pattern."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from hivemind_tui.services.audit import AuditLog
from hivemind_tui.services.store import Store

PEEK = "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); print(c.execute(sys.argv[2]).fetchone()[0]); c.close()"


def in_another_process(path: Path, sql: str) -> str:
    return subprocess.run(
        [sys.executable, "-c", PEEK, str(path), sql], capture_output=True, text=True, check=True
    ).stdout


async def test_a_short_lived_second_store_keeps_the_first_ones_commits(tmp_path: Path) -> None:
    path = tmp_path / "console.db"
    async with Store(path) as first:
        async with Store(path) as second:  # opened and closed while the first stays open
            await second.fetchone("SELECT 1")
        await AuditLog(first).record("a", "before")
        in_another_process(path, "SELECT COUNT(*) FROM audit")  # its close must not take our WAL away
        await AuditLog(first).record("a", "after")
        assert in_another_process(path, "SELECT COUNT(*) FROM audit").strip() == "2"
