"""Without colour (NO_COLOR) a choice still reads as what it is: `[ ]` unchecked, `[x]` checked."""

from __future__ import annotations

import html
import re

import pytest

from hivemind_tui.ui.screens.vpn import AddPeerScreen
from tests.ui.demo_shots import demo_app, settle


def screen_text(svg: str) -> str:
    return html.unescape("".join(re.findall(r">([^<]*)</text>", svg))).replace("\xa0", " ")


async def test_the_keep_key_choice_reads_without_colour(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    app = demo_app(start="vpn")
    async with app.run_test(size=(110, 35)) as pilot:
        await settle(pilot)
        await pilot.press("a")
        await settle(pilot)
        assert isinstance(app.screen, AddPeerScreen)
        assert "[ ] Keep the private key" in screen_text(app.export_screenshot())
        await pilot.press("tab", "tab", "space")
        await settle(pilot)
        assert "[x] Keep the private key" in screen_text(app.export_screenshot())
