"""`:` jumps to a section, a task or a node; ctrl+c quits when no text is selected."""

from __future__ import annotations

from textual.pilot import Pilot
from textual.widgets import Input

from hivemind_tui.ui.screens.jump import resolve
from hivemind_tui.ui.screens.node_detail import NodeDetailScreen
from hivemind_tui.ui.screens.task_detail import TaskDetailScreen
from hivemind_tui.ui.screens.tasks import TasksScreen
from tests.ui.demo_shots import demo_app, settle


async def jump(pilot: Pilot[None], target: str) -> None:
    await pilot.press("colon")
    await settle(pilot)
    pilot.app.screen.query_one("#jump-input", Input).value = target
    await pilot.press("enter")
    await settle(pilot)


async def test_colon_jumps_to_sections_tasks_and_nodes() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await jump(pilot, "ta")
        assert isinstance(app.screen, TasksScreen)
        await jump(pilot, "render-b81e04")
        assert isinstance(app.screen, TaskDetailScreen) and app.screen.task_id == "render-b81e04"
        await pilot.press("escape")
        await jump(pilot, "worker-00003")
        assert isinstance(app.screen, NodeDetailScreen) and app.screen.node_id == "worker-00003"
        await pilot.press("escape")
        await jump(pilot, "nothing-here")
        assert any("no section, task or node" in n.message for n in app._notifications)


def test_resolve_prefers_an_unambiguous_section() -> None:
    assert resolve("d", set(), set()) == ("section", "dashboard")
    assert resolve(":vpn", set(), set()) == ("section", "vpn")
    assert resolve("job-1", {"job-1"}, set()) == ("task", "job-1")
    assert resolve("w1", set(), {"w1"}) == ("node", "w1")
    assert resolve("x", {"y"}, {"z"}) is None


async def test_ctrl_c_quits_when_nothing_is_selected() -> None:
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("ctrl+c")
        await pilot.pause()
        assert not app.is_running


async def test_help_lists_the_screens_keys_then_the_apps_then_textuals() -> None:
    from textual.widgets import Static

    app = demo_app(start="tasks")
    async with app.run_test(size=(100, 40)) as pilot:
        await settle(pilot)
        await pilot.press("question_mark")
        await settle(pilot)
        text = str(app.screen.query_one("#help-text", Static).render())
        headings = [line for line in text.splitlines() if line and not line.startswith(" ")]
        assert headings[:3] == ["Tasks: keys", "Everywhere", "Also"]
        assert text.index("Filter") < text.index("Dashboard") < text.index("Focus Next")


async def test_the_vpn_screen_filters_its_peers() -> None:
    from hivemind_tui.ui.widgets.virtual_table import VirtualTable

    app = demo_app(start="vpn")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#vpn-peers", VirtualTable)
        assert table.visible_keys() == ["laptop-alice", "phone-bob"]
        await pilot.press("slash", *"bob")
        await settle(pilot)
        assert table.visible_keys() == ["phone-bob"]
        await pilot.press("enter", "escape")
        await settle(pilot)
        assert table.visible_keys() == ["laptop-alice", "phone-bob"]
