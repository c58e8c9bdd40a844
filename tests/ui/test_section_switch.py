"""Showing a section does the work of what changed only: the footer makes its keys again only when the
bindings it shows change, and the stylesheet is parsed again only when the theme changed. Each was a part of
the node monitor's first display with 50,000 nodes (~100 and ~60 ms)."""

from __future__ import annotations

import pytest
from textual.color import Color
from textual.css.stylesheet import Stylesheet
from textual.widgets._footer import FooterKey

from hivemind_tui.ui.widgets.footer import ConsoleFooter
from tests.ui.demo_shots import demo_app, keys, record_calls, settle


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


async def test_a_sections_first_display_parses_and_styles_nothing_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every screen's styles come with the app's, and a new section's screen counts as styled with the
    current theme: Textual parsed every source and styled every widget again, three times, at each section's
    first display (~25-60 ms of the node monitor's)."""
    app = demo_app(nodes=50)
    async with app.run_test(size=(120, 30)) as pilot:
        await settle(pilot)
        reparsed = record_calls(monkeypatch, Stylesheet, "reparse", lambda stylesheet: None)
        await keys("n", "t", "v", "d")(pilot)
        assert not reparsed


async def test_a_section_shown_before_a_change_of_theme_takes_the_new_theme() -> None:
    app = demo_app(nodes=50)
    async with app.run_test(size=(120, 30)) as pilot:
        await keys("n", "d")(pilot)
        dark_background = app.screen.styles.background
        app.theme = "textual-light"
        await keys("n")(pilot)
        assert app.screen.styles.background == Color.parse(app.current_theme.background)
        assert app.screen.styles.background != dark_background
