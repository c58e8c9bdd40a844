"""After the console: the embedded pool it started is stopped when it has no unfinished tasks, whether or
not anyone logged in; otherwise it is named with the command that stops it."""

from __future__ import annotations

from pathlib import Path

from hivemind_tui.commands.console_cmd import exit_note
from tests.helpers import free_port, make_zip
from tests.integration.cli_harness import CLI, admin_login, serve


def test_the_pool_is_stopped_unless_it_has_unfinished_tasks(tmp_path: Path) -> None:
    data = tmp_path / "data"
    port = free_port()
    proc = serve(data, port)
    try:
        address = f"127.0.0.1:{port}"
        assert "(--keep-pool)" in exit_note(data / "pool", address, keep_pool=True)
        cli = CLI(data)
        admin_login(cli)
        job = tmp_path / "wait.zip"
        job.write_bytes(make_zip({"main.py": "print(1)"}))
        task = cli.json("tasks", "submit", str(job), "--memory-gb", "100000")["task_id"]
        cli("logout")  # nobody is logged in when the console quits: the pool itself is asked
        note = exit_note(data / "pool", address, keep_pool=False)
        assert note == (
            f"the embedded pool keeps running at {address}: 1 unfinished task(s); `hivemind-tui pool stop` ends it"
        )
        assert proc.poll() is None
        admin_login(cli)
        cli.json("tasks", "stop", task)
        assert exit_note(data / "pool", address, keep_pool=False) == "the embedded pool this console started is stopped"
        assert proc.wait(timeout=20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
