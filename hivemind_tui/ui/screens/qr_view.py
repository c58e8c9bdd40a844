"""A peer's config as a QR code alone on the screen, black on white, sized to what the terminal has.

Half blocks (square modules) when the code fits; sextants when it does not, which fit a full config into
a 100x30 terminal; else the size it needs, so the operator knows how far to grow the window.
"""

from __future__ import annotations

from rich.text import Text
from textual import events
from textual.app import ComposeResult
from textual.binding import Binding
from textual.screen import Screen
from textual.widgets import Static

from hivemind_tui.core import qr

QR_STYLE = "#000000 on #ffffff"
"""Fixed colours, not the theme's: scanners want dark modules on a light ground."""


class QrScreen(Screen[None]):
    CSS_PATH = "qr_view.tcss"
    BINDINGS = [Binding("escape", "dismiss", "Close")]

    def __init__(self, title: str, data: str) -> None:
        super().__init__()
        self._title = title
        # Made once: a resize only picks the one that fits.
        self._drawings = qr.drawings(data, dark=True)

    def compose(self) -> ComposeResult:
        yield Static(id="qr-code")
        yield Static(f"{self._title} · scan with the WireGuard app · escape close", id="qr-hint", markup=False)

    def on_resize(self, event: events.Resize) -> None:
        self._draw(event.size.width, event.size.height - 1)

    def on_mount(self) -> None:
        self._draw(self.size.width, self.size.height - 1)

    def _draw(self, columns: int, rows: int) -> None:
        code = self.query_one("#qr-code", Static)
        drawing = qr.pick(self._drawings, columns, rows)
        if drawing is None:
            smallest = self._drawings[-1]
            code.update(Text(f"the QR code needs {smallest.columns}x{smallest.rows + 1}: enlarge the terminal"))
            return
        code.update(Text(drawing.text, style=QR_STYLE))
