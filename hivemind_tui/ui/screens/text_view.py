"""A modal that shows a text (a config, a QR code, a plan), copies it (`y`) and exports it to a file (0600).

With `qr_data`, `s` shows that data as a QR code alone on the screen, big enough to scan.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from textual import on, work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Input, Static

from hivemind_tui.core.errors import HivemindError
from hivemind_tui.ui.format import plain
from hivemind_tui.ui.hive import hive_of
from hivemind_tui.ui.screens.qr_view import QrScreen
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors


class TextViewScreen(ReportsWorkerErrors, ModalScreen[None]):
    CSS_PATH = "text_view.tcss"
    BINDINGS = [
        Binding("escape", "dismiss", "Close"),
        Binding("y", "copy", "Copy"),
        Binding("e", "export", "Export"),
        Binding("s", "scan", "QR only"),
    ]

    def __init__(
        self,
        title: str,
        text: str,
        copy_text: str | None = None,
        export: Callable[[Path, str], Awaitable[None]] | None = None,
        default_path: str = "",
        qr_data: str | None = None,
    ) -> None:
        super().__init__()
        self._title = title
        self._text = text
        self._copy = copy_text if copy_text is not None else text
        self._export = export
        self._default = default_path
        self._qr_data = qr_data

    def compose(self) -> ComposeResult:
        with Vertical(id="view-box"):
            yield Static(f"[b]{plain(self._title)}[/]", id="view-title")
            with VerticalScroll(id="view-scroll"):
                yield Static(self._text, id="view-text", markup=False)
            yield Input(self._default, id="export-path", placeholder="export to this path (0600), enter to write")
            hints = "y copy · " + ("e export · " if self._export else "") + ("s QR only · " if self._qr_data else "")
            hints += "escape close"
            yield Static(hints, id="view-hints")

    def on_mount(self) -> None:
        self.query_one("#export-path", Input).display = False

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "scan":
            return self._qr_data is not None
        if action == "export":
            return self._export is not None
        return True

    def action_scan(self) -> None:
        if self._qr_data is not None:
            self.app.push_screen(QrScreen(self._title, self._qr_data))

    def action_copy(self) -> None:
        hive_of(self).copy(self._copy, self._title.lower())

    def action_export(self) -> None:
        if self._export is None:
            return
        field = self.query_one("#export-path", Input)
        field.display = True
        field.focus()

    @on(Input.Submitted, "#export-path")
    def _export_to(self, event: Input.Submitted) -> None:
        if event.value.strip():
            self.write(Path(event.value.strip()).expanduser())

    @work(group="export", exit_on_error=False, description="write")
    async def write(self, path: Path) -> None:
        assert self._export is not None
        try:
            await self._export(path, self._copy)
        except (HivemindError, OSError) as exc:
            self.notify(f"export failed: {exc}", severity="error")
            return
        self.notify(f"written to {path} (0600)")
        self.query_one("#export-path", Input).display = False
