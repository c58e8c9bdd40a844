"""An unexpected error in a worker is logged with its traceback, shown, and ends the screen's busy state."""

from __future__ import annotations

import logging

import pytest
from textual.widgets import Input, Static

from hivemind_tui.core.config import Settings
from hivemind_tui.ui.app import HivemindApp
from tests.ui.demo import DemoBackend
from tests.ui.demo_shots import settle


class BrokenStoreBackend(DemoBackend):
    """As with a console.db written by a newer version: opening the store fails outright."""

    async def login(self, address: str, username: str, password: str, remember: bool) -> None:
        raise RuntimeError("console.db has schema version 9, newer than this program knows (6)")


async def test_an_unexpected_login_error_is_logged_shown_and_ends_the_busy_state(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = HivemindApp(BrokenStoreBackend(Settings(refresh_interval=3600.0), logged_in=False), deterministic=True)
    async with app.run_test(size=(100, 30)) as pilot:
        await settle(pilot)
        app.screen.query_one("#password", Input).value = "demo"
        with caplog.at_level(logging.ERROR):
            await pilot.press("enter")
            await settle(pilot)
        assert "logging in" not in str(app.screen.query_one("#login-error", Static).render())
        assert "failed unexpectedly" in str(app.screen.query_one("#login-error", Static).render())
        toasts = [n.message for n in app._notifications]
        assert any("schema version 9" in m and "RuntimeError" in m for m in toasts), toasts
        logged = [r for r in caplog.records if r.exc_info and "schema version 9" in str(r.exc_info[1])]
        assert logged, "no traceback in the log"
        await pilot.press("enter")  # not stuck: the next attempt runs (and fails the same way)
        await settle(pilot)
        assert len([n for n in app._notifications if "schema version 9" in n.message]) == 2
