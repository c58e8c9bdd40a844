"""`:` opens a prompt that jumps to a section, a task or a node by name or id (the k9s habit)."""

from __future__ import annotations

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Input, Static

SECTIONS = ("dashboard", "tasks", "nodes", "vpn")


class JumpScreen(ModalScreen[str | None]):
    CSS_PATH = "jump.tcss"
    BINDINGS = [Binding("escape", "dismiss(None)", "Cancel")]

    def compose(self) -> ComposeResult:
        with Vertical(id="jump-box"):
            yield Static("Jump to a section (dashboard, tasks, nodes, vpn), a task id or a node id", id="jump-hint")
            yield Input(placeholder=":", id="jump-input")

    @on(Input.Submitted, "#jump-input")
    def _submitted(self, event: Input.Submitted) -> None:
        self.dismiss(event.value.strip() or None)


def resolve(target: str, task_ids: set[str], node_ids: set[str]) -> tuple[str, str] | None:
    """What `target` names: ("section", name), ("task", id) or ("node", id); a section may be abbreviated."""
    word = target.lower().lstrip(":")
    sections = [s for s in SECTIONS if s.startswith(word)] if word else []
    if len(sections) == 1:
        return "section", sections[0]
    if target in task_ids:
        return "task", target
    if target in node_ids:
        return "node", target
    return None
