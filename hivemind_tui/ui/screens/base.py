"""What every section shares: the header, the outage banner, the footer, and the app's snapshot."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.screen import Screen

from hivemind_tui.services.monitor import ClusterSnapshot
from hivemind_tui.ui.hive import hive_of, watch_app
from hivemind_tui.ui.static_text import ShownTexts
from hivemind_tui.ui.widgets.footer import ConsoleFooter
from hivemind_tui.ui.widgets.header import ConsoleHeader, OutageBanner
from hivemind_tui.ui.worker_errors import ReportsWorkerErrors

if TYPE_CHECKING:
    from hivemind_tui.ui.app import HivemindApp


class Section(ReportsWorkerErrors, Screen[None]):
    """A section: subclasses yield their body from `body()` and render snapshots in `show()`."""

    def __init__(self) -> None:
        super().__init__()
        self._texts = ShownTexts(self)
        # The snapshot on screen since the screen last became current: Textual resumes a new screen more
        # than once, and its mount asks too; the node monitor walked 50,000 nodes for each (its first display,
        # 8 fresh processes of each: median 836 ms showing four times, 679 ms showing once).
        self._shown_snapshot: ClusterSnapshot | None = None

    @property
    def hive(self) -> HivemindApp:
        return hive_of(self)

    def set_text(self, selector: str, text: str) -> None:
        """Update a Static only when its text changes, laying the screen out only when its size may change:
        most refreshes change little (an idle console repaints a few figures and the clock)."""
        self._texts.set(selector, text)

    def compose(self) -> ComposeResult:
        yield ConsoleHeader()
        yield OutageBanner(id="banner")
        yield from self.body()
        yield ConsoleFooter()

    def body(self) -> ComposeResult:
        yield from ()

    def on_mount(self) -> None:
        watch_app(self, "snapshot", self._snapshot, init=False)
        if self.hive.snapshot is not None:
            self.call_after_refresh(self._show_latest)

    def _snapshot(self, snap: ClusterSnapshot | None) -> None:
        if snap is not None and self.is_current:
            self._show_snapshot(snap)

    def _show_latest(self) -> None:
        snap = self.hive.snapshot
        if snap is not None and snap is not self._shown_snapshot:
            self._show_snapshot(snap)

    def _show_snapshot(self, snap: ClusterSnapshot) -> None:
        self._shown_snapshot = snap
        self.show(snap)

    def on_screen_resume(self) -> None:
        self._show_latest()

    def on_screen_suspend(self) -> None:
        self._shown_snapshot = None  # shown again when it comes back: its ages and clocks moved on meanwhile

    def show(self, snap: ClusterSnapshot) -> None:
        """Render the latest snapshot (called on the event loop; no I/O here)."""
