"""Pilot tests of the console against a real pool process: login, sections, help, pause, outage, roles."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from textual.widgets import Input, Static

from hivemind_tui.ui.app import HivemindApp
from hivemind_tui.ui.screens.dashboard import DashboardScreen
from hivemind_tui.ui.screens.help import HelpScreen
from hivemind_tui.ui.screens.login import LoginScreen
from hivemind_tui.ui.screens.nodes import NodesScreen
from hivemind_tui.ui.screens.tasks import TasksScreen
from hivemind_tui.ui.screens.vpn import VpnScreen
from tests.helpers import free_port
from tests.ui.conftest import PoolProcess, make_app
from tests.ui.demo_shots import settle as settle_workers


async def settle(pilot, app: HivemindApp) -> None:
    await settle_workers(pilot)


async def wait_until(pilot, condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await pilot.pause(0.05)


async def log_in(pilot, app: HivemindApp, user: str, password: str, address: str | None = None) -> None:
    screen = app.screen
    assert isinstance(screen, LoginScreen)
    if address is not None:
        screen.query_one("#address", Input).value = address
    screen.query_one("#user", Input).value = user
    screen.query_one("#password", Input).value = password
    screen.query_one("#password", Input).focus()
    await pilot.press("enter")


def error_text(app: HivemindApp) -> str:
    return str(app.screen.query_one("#login-error", Static).render())


async def test_login_failures_then_success_and_sections(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        assert isinstance(app.screen, LoginScreen)
        assert "admin-password" in str(app.screen.query_one("#login-hint", Static).render())
        await log_in(pilot, app, "admin", "wrong")
        await wait_until(pilot, lambda: "Wrong user name or password" in error_text(app))
        await log_in(pilot, app, "admin", "x", address=f"127.0.0.1:{free_port()}")
        await wait_until(pilot, lambda: "Cannot reach" in error_text(app))
        assert isinstance(app.screen, LoginScreen)  # the form stays usable
        await log_in(pilot, app, "admin", "", address=pool.address)
        await wait_until(pilot, lambda: "all needed" in error_text(app))
        await log_in(pilot, app, "admin", pool.admin_password, address=pool.address)
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.nodes is not None)
        await settle(pilot, app)
        assert "Balance" in str(app.screen.query_one("#card-balance", Static).render())
        for key, screen_type in (("n", NodesScreen), ("t", TasksScreen), ("v", VpnScreen), ("d", DashboardScreen)):
            await pilot.press(key)
            await settle(pilot, app)
            assert isinstance(app.screen, screen_type), key
        await pilot.press("question_mark")
        await settle(pilot, app)
        assert isinstance(app.screen, HelpScreen)
        text = str(app.screen.query_one("#help-text", Static).render())
        assert "Dashboard" in text and "Pause" in text and "Quit" in text
        await pilot.press("escape")
        await pilot.press("ctrl+p")
        await settle(pilot, app)
        await pilot.press(*"Nodes")
        await pilot.pause(0.3)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, NodesScreen))


async def test_pause_and_remembered_session(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await log_in(pilot, app, "admin", pool.admin_password)
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.press("p")
        assert app.paused
        before = app.snapshot
        await pilot.pause(1.5)  # three refresh intervals
        assert app.snapshot is before
        await pilot.press("p")
        await wait_until(pilot, lambda: app.snapshot is not before)
    again = make_app(pool, tmp_path)  # "remember me" was on: no login screen this time
    async with again.run_test(size=(100, 30)) as pilot:
        await settle(pilot, again)
        assert isinstance(again.screen, DashboardScreen)


async def test_not_remembered_by_ctrl_r_and_log_in_by_click(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        screen = app.screen
        assert isinstance(screen, LoginScreen) and screen.remember
        await pilot.press("ctrl+r")  # priority binding: works while the password field has the focus
        assert not screen.remember and "[ ]" in str(screen.query_one("#remember", Static).render())
        screen.query_one("#password", Input).value = pool.admin_password
        await pilot.click("#login")
        await wait_until(pilot, lambda: isinstance(app.screen, DashboardScreen))
        assert screen.query_one("#password", Input).value == ""  # the first login stays below, emptied
    again = make_app(pool, tmp_path)  # not remembered: the login screen again
    async with again.run_test(size=(100, 30)) as pilot:
        await settle(pilot, again)
        assert isinstance(again.screen, LoginScreen)


async def test_pool_killed_and_restarted_while_the_dashboard_is_open(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot, app)
        await log_in(pilot, app, "admin", pool.admin_password)
        await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.nodes is not None)
        nodes_before = app.snapshot.nodes
        await asyncio.to_thread(pool.kill)
        banner = app.screen.query_one("#banner")
        await wait_until(pilot, lambda: banner.display, timeout=20)
        assert "cannot be reached" in str(banner.render())
        assert app.snapshot.nodes is nodes_before  # the last known data stays on screen
        await asyncio.to_thread(pool.restart)
        await wait_until(pilot, lambda: not banner.display and app.backend.connection.status == "connected", timeout=30)
        assert isinstance(app.screen, DashboardScreen)


async def test_readonly_and_viewer_change_nothing(pool: PoolProcess, tmp_path: Path) -> None:
    pool.cli("pool", "add-user", "vic", "--role", "viewer", "--password-stdin", stdin="vic-pass-1\n")
    for overrides, user, password in (({"readonly": True}, "admin", pool.admin_password), ({}, "vic", "vic-pass-1")):
        app = make_app(pool, tmp_path / user, **overrides)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await log_in(pilot, app, user, password)
            await wait_until(pilot, lambda a=app: a.snapshot is not None)
            assert app.readonly and app.backend.role == "viewer"
            await pilot.press("u")
            await settle(pilot, app)
            assert isinstance(app.screen, DashboardScreen)  # no upload screen
            await pilot.press("n")
            await settle(pilot, app)
            await pilot.press("c")
            await settle(pilot, app)
            assert isinstance(app.screen, NodesScreen)  # no confirmation: cordon is refused
            await pilot.press("v")
            await settle(pilot, app)
            await pilot.press("a")
            await settle(pilot, app)
            assert isinstance(app.screen, VpnScreen)
            assert "only admins" in str(app.screen.query_one("#vpn-status", Static).render())


async def test_login_timeout_has_its_own_message(pool: PoolProcess, tmp_path: Path) -> None:
    from tests.proxy import FaultProxy

    proxy = await FaultProxy(pool.port).start()
    proxy.mode = "drop"  # connections open, nothing ever answers
    app = make_app(pool, tmp_path)
    try:
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await log_in(pilot, app, "admin", pool.admin_password, address=proxy.address)
            await wait_until(pilot, lambda: "did not answer in time" in error_text(app), timeout=20)
            assert isinstance(app.screen, LoginScreen)
    finally:
        await proxy.close()


async def test_the_console_path_paints_login_before_the_services_load(pool: PoolProcess, tmp_path: Path) -> None:
    """What `hivemind-tui` builds: a deferred backend that becomes the live one after the first frame."""
    from hivemind_tui.core.datadir import DataDir
    from hivemind_tui.ui.startup import DeferredBackend
    from tests.conftest import fast_settings

    settings = fast_settings(tmp_path / "console", refresh_interval=0.5, rpc_deadline=1.0)
    data = DataDir(settings.data_path).ensure("tokens")
    for round_ in range(2):
        backend = DeferredBackend(settings, data, pool.address, True, [data.root])
        app = HivemindApp(backend)  # type: ignore[arg-type]
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            if round_ == 0:
                assert isinstance(app.screen, LoginScreen) and backend.username == ""
                await log_in(pilot, app, "admin", pool.admin_password)
            await wait_until(pilot, lambda a=app: a.snapshot is not None and a.snapshot.nodes is not None)
            assert isinstance(app.screen, DashboardScreen) and backend.role == "admin"
        # The second round starts from the remembered session, read without the services.


async def test_a_hivemind_restart_asks_for_the_password_over_the_current_screen(tmp_path: Path) -> None:
    """HiveMind draws a new signing key at every start: every token dies, and its task list for a dead token
    is empty. The console notices, and asks for the password over the screen it was on."""
    pool = PoolProcess(tmp_path / "hm-data", "--hivemind-compat", "--workers", "0")
    try:
        app = make_app(pool, tmp_path)
        async with app.run_test(size=(100, 30)) as pilot:
            await settle(pilot, app)
            await log_in(pilot, app, "admin", pool.admin_password)
            await wait_until(pilot, lambda: app.snapshot is not None and app.snapshot.tasks is not None)
            await pilot.press("t")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "TasksScreen")
            await asyncio.to_thread(pool.kill)
            await asyncio.to_thread(pool.restart)
            # Pushed, the login screen is composed a moment later: its fields are there once it is.
            await wait_until(pilot, lambda: isinstance(app.screen, LoginScreen) and bool(app.screen.query("#user")), 30)
            await log_in(pilot, app, "admin", pool.admin_password)
            await wait_until(pilot, lambda: type(app.screen).__name__ == "TasksScreen")  # back where it was

            # A pool without roles: the VPN (this host's, not the pool's) is the operator's to change...
            await pilot.press("v")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "VpnScreen")
            assert app.screen._may_change(quiet=True)  # type: ignore[attr-defined]
            # ...and node states cannot be changed at all, which is what the console says.
            await pilot.press("n")
            await wait_until(pilot, lambda: type(app.screen).__name__ == "NodesScreen")
            await pilot.press("c")
            await wait_until(
                pilot, lambda: any("this pool cannot change node states" in str(n.message) for n in app._notifications)
            )
    finally:
        pool.stop()
