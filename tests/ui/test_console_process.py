"""The console as `hivemind-tui` runs it, in a real pseudo-terminal on a real pool: what only the whole
process shows."""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from pathlib import Path

from tests.helpers import extra_malloc_arenas
from tests.integration.cli_harness import admin_login
from tests.ui.conftest import PoolProcess


def read_text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def test_the_console_threads_share_one_malloc_arena(pool: PoolProcess) -> None:
    """Its threads (gRPC's, SQLite's, the executor's) each took a glibc arena of their own, and each kept what
    was freed in it: the soak's console held 13, its RSS creeping up for an hour."""
    admin_login(pool.cli)  # remembered: the console opens on the dashboard and refreshes
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "HIVEMIND_REFRESH_INTERVAL": "0.2"}
    command = [sys.executable, "-m", "hivemind_tui", "--data-dir", str(pool.data), "--pool", pool.address]
    proc = subprocess.Popen(command, stdin=slave, stdout=slave, stderr=slave, env=env, close_fds=True)
    os.close(slave)
    try:
        seen = b""
        log = pool.data / "logs" / "console.log"
        deadline = time.monotonic() + 60
        # The dashboard, painted, then refreshed: the first refresh's sweep is logged.
        while b"This host" not in seen or "swept the oldest generation" not in read_text(log):
            assert time.monotonic() < deadline and proc.poll() is None, seen[-2000:]
            if select.select([master], [], [], 0.1)[0]:
                seen += os.read(master, 65536)
        threads = len(list(Path(f"/proc/{proc.pid}/task").iterdir()))
        assert threads >= 4, threads  # what would have taken arenas of their own
        assert extra_malloc_arenas(proc.pid) == 0
    finally:
        proc.kill()
        proc.wait()
        os.close(master)
