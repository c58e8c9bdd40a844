"""A Static's new text lays the screen out exactly when it can change the Static's size."""

from __future__ import annotations

from textual.app import App, ComposeResult
from textual.containers import Horizontal
from textual.widgets import Static

from hivemind_tui.ui.static_text import ShownTexts, size_may_change


class Panels(App[None]):
    CSS = "#auto { width: auto; } #fixed { height: 3; } #wrapping { width: 20; }"

    def compose(self) -> ComposeResult:
        with Horizontal(id="row"):
            yield Static("", id="auto")
        yield Static("one\ntwo\nthree", id="fixed")
        yield Static("twelve chars", id="wrapping")


async def test_size_changes_are_told_from_text_that_only_repaints() -> None:
    app = Panels()
    async with app.run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        auto, fixed, wrapping = (app.query_one(f"#{name}", Static) for name in ("auto", "fixed", "wrapping"))
        # Empty, a width that follows its text is 0 wide: any text may widen it.
        assert size_may_change(auto, "", " ↑ 1/3 ")
        ShownTexts(app).set("#auto", " ↑ 1/3 ")
        await pilot.pause()
        assert auto.size.width == 7
        assert not size_may_change(auto, " ↑ 1/3 ", " ↑ 2/3 ")
        assert size_may_change(auto, " ↑ 2/3 ", " ↑ 10/30 ")
        # A fixed height and a width from the screen: no text changes its size.
        assert not size_may_change(fixed, "one\ntwo\nthree", "one line now")
        # A height that follows the text: the lines as wrapped at its width (20 cells).
        assert not size_may_change(wrapping, "twelve chars", "[b]twelve[/] chars")
        assert size_may_change(wrapping, "twelve chars", "twelve chars\nand a line")
        assert size_may_change(wrapping, "twelve chars", "twenty-four characters!!")
        assert not size_may_change(wrapping, "twenty-four characters!!", "twenty-four characters??")
