"""The node monitor on the fixture source: sort, filter, details, in-place updates, 10,000 rows, roles."""

from __future__ import annotations

import pytest
from textual.widgets import Input, Static

from hivemind_tui.services.models import NodeList
from hivemind_tui.ui.screens.confirm import ConfirmScreen
from hivemind_tui.ui.screens.node_detail import NodeDetailScreen
from hivemind_tui.ui.screens.nodes import NodesScreen
from hivemind_tui.ui.widgets.virtual_table import VirtualTable
from tests.ui.demo_shots import demo_app, settle


async def test_sort_filter_details_and_state_changes() -> None:
    app = demo_app(start="nodes")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        screen = app.screen
        assert isinstance(screen, NodesScreen)
        table = screen.query_one("#node-table", VirtualTable)
        assert table.row_count == 12
        await pilot.press("4")  # CPU%, ascending
        cpus = [table.row(k).node.cpu_usage for k in table.visible_keys()]
        assert cpus == sorted(cpus)
        await pilot.press("4")  # again: descending
        assert [table.row(k).node.cpu_usage for k in table.visible_keys()] == sorted(cpus, reverse=True)
        assert "CPU%▼" in table.header_text()
        await pilot.press("slash", *"status:offline", "enter")
        assert [str(k) for k in table.visible_keys()] == ["worker-00007"]
        assert "1 of 12 shown" in str(screen.query_one("#node-status", Static).render())
        await pilot.press("escape")
        assert table.row_count == 12
        await pilot.press("slash", *"gpu:yes", "enter")
        assert all(table.row(k).node.gpu_name for k in table.visible_keys()) and table.row_count == 3
        await pilot.press("escape", "home", "enter")
        await settle(pilot)
        assert isinstance(app.screen, NodeDetailScreen)
        assert "samples" in str(app.screen.query_one("#cpu-title", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        await pilot.press("home", "space", "space")
        marked = sorted(map(str, table.marked))
        assert len(marked) == 2
        await pilot.press("c")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("n")  # cancel: nothing changes
        await settle(pilot)
        assert app.backend.node_states == []
        await pilot.press("c", "y")
        await settle(pilot)
        assert app.backend.node_states == [(marked, "cordoned")]
        assert table.marked == set()


async def test_in_place_updates_and_offline_transitions() -> None:
    app = demo_app(start="nodes")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#node-table", VirtualTable)
        await pilot.press("down", "down")
        key = table.cursor_key
        backend = app.backend
        kept = table.row("worker-00001")
        beat = table._line("worker-00001").split()[-1]
        backend.nodes[5] = backend.nodes[5]._replace(online=False, cpu_usage=0.0)
        backend.clock.now += 5  # within the heartbeat timeout: still alive
        app.action_refresh()
        await settle(pilot)
        assert table.cursor_key == key  # rows update in place; the cursor stays put
        assert table.row("worker-00005").status == "offline"
        assert table.row("worker-00001") is kept  # an unchanged node keeps its row
        assert table._line("worker-00001").split()[-1] != beat  # but its BEAT age moved with the clock
        backend.nodes.append(backend.nodes[0]._replace(node_id="worker-new"))  # a node joins: the whole list
        app.action_refresh()
        await settle(pilot)
        assert table.row("worker-new") is not None and table.total_count == len(backend.nodes)
        await pilot.press("slash", *"status:offline", "enter")
        assert set(map(str, table.visible_keys())) == {"worker-00005", "worker-00007"}


async def test_ten_thousand_nodes_page_through() -> None:
    app = demo_app(start="nodes", nodes=10_000)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        table = app.screen.query_one("#node-table", VirtualTable)
        assert table.row_count == 10_000
        for _ in range(5):
            await pilot.press("pagedown")
        assert table.cursor > 5 * 20
        await pilot.press("end")
        assert table.cursor == 9_999 and table.cursor_key == "worker-09999"
        await pilot.press("home")
        assert table.cursor == 0
        app.backend.change_nodes(0.1, 1)
        app.action_refresh()
        await settle(pilot)
        assert table.row("worker-00001").node == app.backend.nodes[1]


async def test_a_pool_without_node_list_and_a_viewer() -> None:
    app = demo_app(start="nodes", role="operator")
    original = app.backend.refresh

    async def no_nodes():
        snap = await original()
        snap.nodes = NodeList(False, [])
        return snap

    app.backend.refresh = no_nodes  # type: ignore[method-assign]
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        empty = app.screen.query_one("#node-empty", Static)
        assert empty.display and "does not list nodes" in str(empty.render())
        await pilot.press("c")
        await settle(pilot)
        assert not isinstance(app.screen, ConfirmScreen)
        assert app.backend.node_states == []


async def test_filter_input_is_plain_text() -> None:
    app = demo_app(start="nodes")
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await pilot.press("slash", *"rack1-node03", "enter")
        table = app.screen.query_one("#node-table", VirtualTable)
        assert list(map(str, table.visible_keys())) == ["worker-00002"]
        assert app.screen.query_one("#node-filter", Input).value == "rack1-node03"


async def test_an_expired_session_asks_for_the_password_over_the_current_screen() -> None:
    from hivemind_tui.services.errors import SessionExpiredError
    from hivemind_tui.ui.screens.login import LoginScreen

    app = demo_app(start="nodes")
    original = app.backend.refresh
    expired = {"once": True}

    async def refresh():
        if expired.pop("once", False):
            raise SessionExpiredError("the session expired; log in again")
        return await original()

    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.backend.refresh = refresh  # type: ignore[method-assign]
        app.action_refresh()
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        app.screen.query_one("#password", Input).value = "wrong"
        app.screen.query_one("#password", Input).focus()
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, LoginScreen)
        app.screen.query_one("#password", Input).value = "demo"
        await pilot.press("enter")
        await settle(pilot)
        assert isinstance(app.screen, NodesScreen)  # back where it was
        assert app.screen.query_one("#node-table", VirtualTable).row_count == 12


def test_a_drained_node_that_still_beats_shows_draining_not_offline() -> None:

    from hivemind_tui.ui.screens.nodes import NodeRow
    from tests.ui.demo import demo_nodes

    drained = demo_nodes(10)[9]._replace(online=False, state="draining", running_tasks=0)
    assert NodeRow(drained, alive=True).status == "draining"
    assert NodeRow(drained, alive=False).status == "offline"
    assert NodeRow(drained._replace(state="active"), alive=True).status == "offline"


async def test_a_section_shows_a_snapshot_once_when_it_becomes_current_and_again_after_it_was_away(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Textual resumes a new screen more than once and its mount asks too: each showed the whole snapshot
    (50,000 nodes walked three times in the monitor's first display). A screen that comes back shows it
    again: its ages moved on meanwhile."""
    shown: list[object] = []
    show = NodesScreen.show
    monkeypatch.setattr(NodesScreen, "show", lambda self, snap: (shown.append(snap), show(self, snap))[1])
    app = demo_app()
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.paused = True  # no refresh brings a new snapshot meanwhile
        await pilot.press("n")
        await settle(pilot)
        assert isinstance(app.screen, NodesScreen)
        assert shown == [app.snapshot]
        await pilot.press("d")
        await settle(pilot)
        await pilot.press("n")
        await settle(pilot)
        assert shown == [app.snapshot, app.snapshot]


def test_rows_are_kept_for_unchanged_nodes_and_made_for_the_others() -> None:
    from hivemind_tui.ui.screens.nodes import NodeRow, rows_of
    from tests.ui.demo import demo_nodes

    nodes = [n._replace(last_heartbeat=1000.0 + i) for i, n in enumerate(demo_nodes(6))]
    rows, made = rows_of(nodes, {}, now=1010.0, timeout=60.0)
    assert list(rows) == [n.node_id for n in nodes] and made == list(rows.values())
    assert all(row.alive for row in rows.values())

    later = list(nodes)
    later[1] = nodes[1]._replace(cpu_usage=nodes[1].cpu_usage + 1)  # its figures moved
    later[2] = nodes[2]._replace()  # a new object, equal to the last one
    later.append(nodes[5]._replace(node_id="joined"))
    del later[3]  # gone
    # By this time the first node's heartbeat (1000) is older than the timeout; the others' are not.
    again, made = rows_of(later, rows, now=1060.5, timeout=60.0)
    assert list(again) == [n.node_id for n in later]
    assert again[nodes[0].node_id] == NodeRow(nodes[0], alive=False)
    assert again[nodes[1].node_id].node is later[1]
    assert again[nodes[2].node_id] is rows[nodes[2].node_id]
    assert again[nodes[4].node_id] is rows[nodes[4].node_id]
    assert again["joined"] == NodeRow(later[-1], alive=True)
    assert made == [again[nodes[0].node_id], again[nodes[1].node_id], again["joined"]]
