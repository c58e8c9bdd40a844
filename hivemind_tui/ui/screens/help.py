"""`?`: every binding of the screen it was opened from, app-wide ones included."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, over: Screen[Any]) -> None:
        super().__init__()
        self._over = over

    def compose(self) -> ComposeResult:
        rows: dict[str, str] = {}
        for active in self._over.active_bindings.values():
            binding = active.binding
            if binding.description:
                rows.setdefault(binding.key_display or self.app.get_key_display(binding), binding.description)
        title = type(self._over).__name__.removesuffix("Screen")
        lines = [f"[b]{title}: keys[/b]", ""] + [f"  [b]{k:<12}[/b] {d}" for k, d in rows.items()]
        lines += [
            "",
            "  [b]ctrl+p      [/b] command palette (sections, refresh interval, theme, logout)",
            "",
            "[dim]escape closes this help[/]",
        ]
        with VerticalScroll(id="help-box"):
            yield Static("\n".join(lines), id="help-text")
