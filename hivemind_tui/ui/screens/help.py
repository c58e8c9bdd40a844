"""`?`: the keys of the screen it was opened from, then the app-wide ones, then the focused widget's own
(cursor movement and the like), each group once."""

from __future__ import annotations

from typing import Any

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen, Screen
from textual.widgets import Static

from hivemind_tui.ui.format import plain


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "Close")]

    def __init__(self, over: Screen[Any]) -> None:
        super().__init__()
        self._over = over

    def compose(self) -> ComposeResult:
        ours = _own_actions(type(self._over)) | _own_actions(type(self.app))
        groups: dict[str, dict[str, str]] = {"screen": {}, "app": {}, "widget": {}}
        seen: set[str] = set()
        for active in self._over.active_bindings.values():
            binding = active.binding
            key = binding.key_display or self.app.get_key_display(binding)
            if not binding.description or key in seen:
                continue
            seen.add(key)
            # Textual's own bindings (focus, copy, scrolling, the palette) come last.
            mine = binding.action in ours
            groups["widget" if not mine else "app" if active.node is self.app else "screen"][key] = binding.description
        title = type(self._over).__name__.removesuffix("Screen")
        headings = {"screen": f"{title}: keys", "app": "Everywhere", "widget": "Also"}
        lines: list[str] = []
        for source, rows in groups.items():
            if rows:
                lines.append(f"[b]{headings[source]}[/b]")
                lines += [f"  [b]{plain(k):<12}[/b] {plain(d)}" for k, d in rows.items()]
                lines.append("")
        lines.append("[dim]escape closes this help · ctrl+p: sections, refresh interval, theme, logout[/]")
        with VerticalScroll(id="help-box"):
            yield Static("\n".join(lines), id="help-text")


def _own_actions(cls: type) -> set[str]:
    """The actions of bindings that this project's classes declare (not those Textual's bases bring)."""
    return {
        binding.action
        for klass in cls.__mro__
        if klass.__module__.startswith("hivemind_tui")
        for binding in klass.__dict__.get("BINDINGS", [])
        if isinstance(binding, Binding)
    }
