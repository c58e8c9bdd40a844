"""A yes/no question that names exactly what will happen; `n` and escape say no."""

from __future__ import annotations

from collections.abc import Callable

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Static

from hivemind_tui.ui.format import plain


class ConfirmScreen(ModalScreen[bool]):
    CSS_PATH = "confirm.tcss"
    BINDINGS = [Binding("y", "answer(True)", "Yes"), Binding("n,escape", "answer(False)", "No")]

    def __init__(self, question: str, details: list[str]) -> None:
        super().__init__()
        self._question = question
        self._details = details

    def compose(self) -> ComposeResult:
        shown = self._details[:12] + ([f"… and {len(self._details) - 12} more"] if len(self._details) > 12 else [])
        with Vertical(id="confirm-box"):
            yield Static(f"[b]{plain(self._question)}[/b]", id="question")
            yield Static("\n".join(f"  • {plain(d)}" for d in shown), id="details")
            with Horizontal(id="buttons"):
                yield Button("Yes (y)", id="yes", variant="error")
                yield Button("No (n)", id="no", variant="primary")

    def on_mount(self) -> None:
        self.query_one("#no", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(event.button.id == "yes")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)


def on_yes(action: Callable[[], object]) -> Callable[[bool | None], None]:
    """A `push_screen` callback that runs `action` (usually a worker) only when the answer was yes."""

    def answered(yes: bool | None) -> None:
        if yes:
            action()

    return answered
