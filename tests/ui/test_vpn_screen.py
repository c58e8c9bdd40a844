"""The VPN screen on the real WireGuard service: add, show, rekey, revoke; others see only their own."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from textual.widgets import Input, Static

from hivemind_tui.ui.screens.confirm import ConfirmScreen
from hivemind_tui.ui.screens.qr_view import QrScreen
from hivemind_tui.ui.screens.text_view import TextViewScreen
from hivemind_tui.ui.screens.vpn import AddPeerScreen, VpnScreen
from hivemind_tui.ui.widgets.toggle import Toggle
from hivemind_tui.ui.widgets.virtual_table import VirtualTable
from tests.terminal_paint import png, screen_cells
from tests.ui.conftest import PoolProcess, make_app
from tests.ui.demo_shots import settle
from tests.ui.test_console import log_in, wait_until
from tests.unit.test_qr import decode


def vpn_init(data: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "hivemind_tui", "--data-dir", str(data), "vpn", "init"],
        check=True,
        capture_output=True,
        env={"VPN_SERVER_IP": "vpn.example.org", "PATH": "/usr/bin:/bin"},
    )


async def test_admin_adds_shows_rekeys_and_revokes(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path)
    vpn_init(app.backend.data_dir.root)
    async with app.run_test(size=(110, 40)) as pilot:
        await settle(pilot)
        await log_in(pilot, app, "admin", pool.admin_password)
        await wait_until(pilot, lambda: app.snapshot is not None)
        exports = app.backend.data_dir.root / "exports"  # the default target of exports, private
        assert exports.is_dir() and exports.stat().st_mode & 0o777 == 0o700
        await pilot.press("v")
        await settle(pilot)
        assert isinstance(app.screen, VpnScreen)
        assert "vpn.example.org" in str(app.screen.query_one("#vpn-server", Static).render())
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AddPeerScreen)
        app.screen.query_one("#peer-name", Input).value = "bad\tname"
        await pilot.press("enter")
        await settle(pilot)
        assert "control" in str(app.screen.query_one("#peer-error", Static).render())
        app.screen.query_one("#peer-name", Input).value = "laptop"
        app.screen.query_one("#peer-keep", Toggle).value = True
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewScreen))
        text = str(app.screen.query_one("#view-text", Static).render())
        assert "PrivateKey = " in text and "Endpoint = vpn.example.org:51820" in text and "█" in text
        await pilot.press("e")
        export = tmp_path / "laptop.conf"
        app.screen.query_one("#export-path", Input).value = str(export)
        await pilot.press("enter")
        await wait_until(pilot, lambda: export.exists())
        assert export.stat().st_mode & 0o777 == 0o600
        await pilot.press("escape")
        await settle(pilot)
        table = app.screen.query_one("#vpn-peers", VirtualTable)
        assert list(table.visible_keys()) == ["laptop"]
        await pilot.press("enter")  # the key was kept: its config again
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewScreen))
        assert "PrivateKey" in str(app.screen.query_one("#view-text", Static).render())
        await pilot.press("escape", "k")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewScreen))
        rekeyed = str(app.screen.query_one("#view-text", Static).render())
        assert rekeyed != text
        await pilot.press("escape", "x")
        await settle(pilot)
        assert isinstance(app.screen, ConfirmScreen)
        await pilot.press("y")
        await wait_until(pilot, lambda: app.screen.query_one("#vpn-peers", VirtualTable).row_count == 0)


async def test_others_see_their_own_peers_and_why_actions_are_disabled(pool: PoolProcess, tmp_path: Path) -> None:
    pool.cli("pool", "add-user", "olga", "--password-stdin", stdin="olga-pass-1\n")
    app = make_app(pool, tmp_path)
    vpn_init(app.backend.data_dir.root)
    wg = app.backend.wireguard
    await app.backend.store.open()
    await wg.add("olga-phone", "olga", actor="test")
    await wg.add("admin-laptop", "admin", actor="test")
    await app.backend.store.close()
    async with app.run_test(size=(110, 40)) as pilot:
        await settle(pilot)
        await log_in(pilot, app, "olga", "olga-pass-1")
        await wait_until(pilot, lambda: app.snapshot is not None)
        await pilot.press("v")
        await settle(pilot)
        table = app.screen.query_one("#vpn-peers", VirtualTable)
        assert list(table.visible_keys()) == ["olga-phone"]
        assert "only admins change the VPN" in str(app.screen.query_one("#vpn-status", Static).render())
        for key in ("a", "k", "x", "c", "A"):
            await pilot.press(key)
            await settle(pilot)
            assert isinstance(app.screen, VpnScreen), key


async def test_qr_only_view_decodes_at_100x30_and_asks_for_room_at_60x20(pool: PoolProcess, tmp_path: Path) -> None:
    app = make_app(pool, tmp_path)
    vpn_init(app.backend.data_dir.root)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        await log_in(pilot, app, "admin", pool.admin_password)
        await wait_until(pilot, lambda: app.snapshot is not None)
        made = await app.backend.vpn_add("phone-of-ops", (), True)
        await pilot.press("v")
        await wait_until(pilot, lambda: isinstance(app.screen, VpnScreen) and bool(app.screen.query(VirtualTable)))
        await wait_until(pilot, lambda: app.screen.query_one(VirtualTable).row_count == 1)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, TextViewScreen))
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, QrScreen))
        await settle(pilot)
        assert decode(png(screen_cells(app)), tmp_path) == made.config
        await pilot.resize_terminal(60, 20)
        await settle(pilot)
        assert "enlarge the terminal" in str(app.screen.query_one("#qr-code", Static).render())
        await pilot.press("escape")
        await settle(pilot)
        assert isinstance(app.screen, TextViewScreen)
