"""Upload and tasks screens against a real pool with a worker: submit a split task and watch it finish,
switch screens during the upload, stop with confirm and cancel, download, follow a log, bad input."""

from __future__ import annotations

import zipfile
from pathlib import Path

from textual.widgets import Input, Static

from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.screens.confirm import ConfirmScreen
from hivemind_tui.ui.screens.task_detail import TaskDetailScreen
from hivemind_tui.ui.screens.tasks import TasksScreen
from hivemind_tui.ui.screens.upload import UploadScreen
from hivemind_tui.ui.widgets.virtual_table import VirtualTable
from tests.helpers import make_zip
from tests.ui.conftest import PoolProcess, make_app
from tests.ui.demo_shots import settle
from tests.ui.test_console import log_in, wait_until

SPLIT_MAIN = (
    "import os, time\nrows = open('data/in.csv').read().splitlines()\nprint('shard rows', len(rows), "
    "flush=True)\ntime.sleep(0.5)\nos.makedirs('output', exist_ok=True)\n"
    "open('output/out.csv', 'w').write(''.join(r.upper() + '\\n' for r in rows))\n"
)
MANIFEST = (
    '[task]\ntype = "data_processing"\n[split]\ninput = "data/in.csv"\nshards = 3\n'
    '[merge]\nconcat = ["output/out.csv"]\n'
)


def row(app: HivemindApp, task_id: str):
    screen = app.screen
    return screen.rows.get(task_id) if isinstance(screen, TasksScreen) else None


async def test_submit_watch_download_and_stop(pool: PoolProcess, tmp_path: Path) -> None:
    job = tmp_path / "job.zip"
    job.write_bytes(
        make_zip(
            {"main.py": SPLIT_MAIN, "hivemind.toml": MANIFEST, "data/in.csv": "".join(f"row{i}\n" for i in range(90))}
        )
    )
    app = make_app(pool, tmp_path, upload_folder=str(tmp_path))
    async with app.run_test(size=(110, 34)) as pilot:
        await settle(pilot)
        await log_in(pilot, app, "admin", pool.admin_password)
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.press("u")
        await settle(pilot)
        assert isinstance(app.screen, UploadScreen)
        form = app.screen
        form.query_one("#zip-path", Input).value = str(tmp_path / "missing.zip")
        await pilot.press("ctrl+r")
        await wait_until(
            pilot,
            lambda: (
                "missing.zip" in str(form.query_one("#plan", Static).render())
                or "No such file" in str(form.query_one("#plan", Static).render())
            ),
        )
        form.query_one("#priority", Input).value = "abc"
        await pilot.press("ctrl+s")
        await settle(pilot)
        assert "priority" in str(form.query_one("#form-error", Static).render())
        form.query_one("#priority", Input).value = "3"
        form.query_one("#zip-path", Input).value = str(job)
        form.read_manifest(job)
        await wait_until(pilot, lambda: "3 subtask(s)" in str(form.query_one("#plan", Static).render()))
        await pilot.press("ctrl+s")
        await pilot.press("escape", "t")  # leave the upload screen while it runs
        await wait_until(pilot, lambda: isinstance(app.screen, TasksScreen))
        await wait_until(pilot, lambda: any(r.split for r in app.screen.rows.values()), timeout=30)
        parent = next(r.task_id for r in app.screen.rows.values() if r.split)
        await wait_until(
            pilot, lambda: row(app, parent) is not None and row(app, parent).status == "COMPLETED", timeout=60
        )
        assert (row(app, parent).done, row(app, parent).total) == (3, 3)
        table = app.screen.query_one("#task-table", VirtualTable)
        table.cursor = table.visible_keys().index(parent)
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, TaskDetailScreen)
        detail = app.screen
        await wait_until(pilot, lambda: "shard rows" in "\n".join(detail.log_lines), timeout=15)
        assert detail.log_task == f"{parent}.0000"  # a split task shows the log of the subtask under the cursor
        await pilot.press("o")
        out = tmp_path / "result.zip"
        detail.query_one("#log-search", Input).value = str(out)
        await pilot.press("enter")
        await wait_until(pilot, lambda: out.exists(), timeout=20)
        with zipfile.ZipFile(out) as zf:
            assert zf.read("output/out.csv").decode().split() == [f"ROW{i}" for i in range(90)]
        await pilot.press("escape")
        await settle(pilot)

        # A long plain task: stop, cancel, then stop for real.
        long_job = tmp_path / "long.zip"
        long_job.write_bytes(make_zip({"main.py": "import time\nprint('up', flush=True)\ntime.sleep(60)"}))
        from hivemind_tui.services.task_manager import SubmitOptions

        task_id = await app.backend.submit(long_job, SubmitOptions(), lambda p: None)
        app.action_refresh()
        await wait_until(
            pilot, lambda: row(app, task_id) is not None and row(app, task_id).status == "RUNNING", timeout=30
        )
        table = app.screen.query_one("#task-table", VirtualTable)
        table.cursor = table.visible_keys().index(task_id)
        await pilot.press("s")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")
        await settle(pilot)  # a stop, had "no" sent one, would be done once the screen's workers are
        app.action_refresh()
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert row(app, task_id).status == "RUNNING" and "stop" not in row(app, task_id).message
        await pilot.press("s")
        await settle(pilot)
        await pilot.press("y")
        await wait_until(pilot, lambda: row(app, task_id).status == "STOPPED", timeout=30)


async def test_readonly_cannot_upload_or_stop(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path, readonly=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, app, "admin", pool.admin_password)
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.press("u")
        await settle(pilot)
        assert not isinstance(app.screen, UploadScreen)
        await pilot.press("t")
        await settle(pilot)
        await pilot.press("s")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert "read-only" in str(app.screen.query_one("#task-status", Static).render())
