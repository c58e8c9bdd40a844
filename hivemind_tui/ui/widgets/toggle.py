"""A yes/no choice drawn as `[x]` or `[ ]` text, so it reads the same without colour (NO_COLOR), where a
Checkbox draws an unchecked box as an `X` that only its colour tells apart."""

from __future__ import annotations

from textual.binding import Binding
from textual.reactive import reactive
from textual.widgets import Static

from hivemind_tui.ui.format import plain


class Toggle(Static, can_focus=True):
    DEFAULT_CSS = """
    Toggle { height: 1; width: auto; }
    Toggle:focus { text-style: bold; background: $accent 30%; }
    """
    BINDINGS = [Binding("space,enter", "flip", "Toggle", show=False)]

    value: reactive[bool] = reactive(False)

    def __init__(self, label: str, value: bool = False, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self._label = label
        self.set_reactive(Toggle.value, value)

    def render(self) -> str:
        return ("\\[x] " if self.value else "\\[ ] ") + plain(self._label)

    def action_flip(self) -> None:
        self.value = not self.value

    def on_click(self) -> None:
        self.action_flip()
