"""The footer makes its keys again only when the bindings it shows change: showing a screen changes them
about seven times in a row, and each set of keys is made, mounted and styled (a sixth of the node monitor's
first display with 50,000 nodes)."""

from __future__ import annotations

import pytest
from textual.widgets._footer import FooterKey

from hivemind_tui.ui.widgets.footer import ConsoleFooter
from tests.ui.demo_shots import demo_app, record_calls, settle


def shown_keys(footer: ConsoleFooter) -> list[FooterKey]:
    return list(footer.query(FooterKey))


async def test_showing_a_screen_makes_its_footer_keys_once(monkeypatch: pytest.MonkeyPatch) -> None:
    app = demo_app(nodes=50)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        made = record_calls(monkeypatch, FooterKey, "__init__", lambda key, *args, **kwargs: None)
        await pilot.press("n")
        await settle(pilot)
        footer = app.screen.query_one(ConsoleFooter)
        keys = shown_keys(footer)
        assert "Cordon" in [key.description for key in keys]  # the node monitor's own keys
        assert len(made) < 2 * len(keys), f"{len(made)} footer keys made to show {len(keys)}"

        app.screen.refresh_bindings()  # a change that leaves the bindings as they were
        await settle(pilot)
        assert shown_keys(footer) == keys  # the very same widgets

        await pilot.press("d")
        await settle(pilot)
        descriptions = [key.description for key in shown_keys(app.screen.query_one(ConsoleFooter))]
        assert descriptions and "Cordon" not in descriptions
