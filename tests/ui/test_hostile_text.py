"""Text from users, tasks, nodes and pools is shown as text: markup in any of it neither crashes the console
nor turns into styles, links or actions."""

from __future__ import annotations

from dataclasses import replace

from textual.pilot import Pilot
from textual.widgets import Input

from hivemind_tui.core.config import Settings
from hivemind_tui.core.errors import HivemindError
from hivemind_tui.services.alerts import Alert
from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.screens.vpn import AddPeerScreen
from tests.ui.demo import CannedLog, DemoBackend
from tests.ui.demo_shots import settle

HOSTILE = "[/i][b][link=x][@click=app.quit]"


class HostileBackend(DemoBackend):
    """The demo cluster with markup at the end of every field that a user, a task, a node or a pool sets."""

    def __init__(self, logged_in: bool = True) -> None:
        super().__init__(Settings(refresh_interval=3600.0, upload_folder="tests/ui/demo_files"), logged_in=logged_in)
        self.nodes = [
            n._replace(node_id=n.node_id + HOSTILE, hostname=n.hostname + HOSTILE, gpu_name=HOSTILE, location=HOSTILE)
            for n in self.nodes
        ]
        self.tasks = [
            t._replace(message=t.message + HOSTILE, owner=t.owner + HOSTILE, worker=HOSTILE, task_type=HOSTILE)
            for t in self.tasks
        ]
        self.peers = [replace(p, name=p.name + HOSTILE, owner=p.owner + HOSTILE) for p in self.peers]

    async def login(self, address: str, username: str, password: str, remember: bool) -> None:
        if password != "demo":
            raise HivemindError(f"the pool refused: no user {username}")
        await super().login(address, username, password, remember)

    async def refresh(self) -> ClusterSnapshot:
        snap = await super().refresh()
        snap.active_alerts = [
            replace(a, subject=a.subject + HOSTILE, message=a.message + HOSTILE) for a in snap.active_alerts
        ]
        snap.raised = [Alert(9, "k" + HOSTILE, "node_offline", HOSTILE, "went away " + HOSTILE, 0.0, None)]
        snap.problems.append("pool says " + HOSTILE)
        return snap

    def log_follower(self, task_id: str) -> CannedLog:
        return CannedLog(f"line one {HOSTILE}\n[red]not red[/red]\n")


ACTION = "[@click=app.quit]"  # shorter than HOSTILE, so a wrapped line rarely cuts it


def shown(pilot: Pilot) -> str:
    return pilot.app.export_screenshot()


async def visit(pilot: Pilot, *presses: str) -> str:
    for key in presses:
        await pilot.press(key)
        await settle(pilot)
    assert pilot.app.is_running, "the console exited"
    return shown(pilot)


async def test_every_screen_shows_markup_as_text() -> None:
    app = HivemindApp(HostileBackend(), deterministic=True)
    async with app.run_test(size=(200, 50)) as pilot:
        await settle(pilot)
        assert ACTION in await visit(pilot)  # dashboard: alerts, problems, the raised-alert toast
        assert "[/i" in await visit(pilot, "n")  # node monitor (columns cut long values)
        assert ACTION in await visit(pilot, "enter")  # node details
        assert "[/i" in await visit(pilot, "escape", "t")  # tasks
        assert ACTION in await visit(pilot, "down", "enter")  # a task with its log
        await visit(pilot, "escape", "question_mark")
        assert "[/i" in await visit(pilot, "escape", "v")  # VPN peers
        assert ACTION in await visit(pilot, "enter")  # a peer's config and QR
        await visit(pilot, "escape", "a")
        assert isinstance(app.screen, AddPeerScreen)
        app.screen.query_one("#peer-name", Input).value = "ops[/i]box"
        added = await visit(pilot, "enter")
        assert "ops[/i]box" in added  # the new peer's config, shown once
        await visit(pilot, "escape")
        assert "ops[/i]box" in await visit(pilot, "end", "x")  # the revoke question names it
        await visit(pilot, "y")
        assert app.is_running


async def test_an_error_message_with_markup_is_shown_as_text() -> None:
    app = HivemindApp(HostileBackend(logged_in=False), deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.screen.query_one("#user", Input).value = "eve" + HOSTILE
        app.screen.query_one("#password", Input).value = "wrong"
        await pilot.press("enter")
        await settle(pilot)
        assert app.is_running and ACTION in shown(pilot)
