"""Scrollables whose growth repaints them, not the whole screen."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.style import Style
from textual.cache import LRUCache
from textual.geometry import Size
from textual.reactive import Reactive
from textual.strip import Strip
from textual.widgets import Log

if TYPE_CHECKING:
    from textual.widget import Widget

    _Scrollable = Widget
else:
    # A plain mixin at run time: Textual takes a widget's default CSS along its first widget base, so a
    # Widget subclass in front would hide ScrollView's and Log's.
    _Scrollable = object


class GrowsInPlace(_Scrollable):
    """Textual lays the whole screen out at any change of a virtual size: the tasks screen at every task
    submitted (a row more), a followed log at every line. A scrollable sized by its screen (`1fr` or a fixed
    height, never `auto`: its own region does not follow its content) updates its scrollbars and repaints
    itself instead; a scrollbar that comes or goes still lays the screen out (Textual's own reactive).
    Put it first among the bases."""

    virtual_size: Reactive[Size] = Reactive(Size(0, 0), layout=False)

    def watch_virtual_size(self, size: Size) -> None:
        if self.container_size:  # laid out already (before that, the layout sets the scrollbars)
            self._scroll_update(size)


PAINTED_LINES = 256
"""Painted lines a log keeps: a tall screen's rows twice over (Textual's `Log` would keep 1,024)."""
MEASURED_ON_THE_LOOP = 1_000
"""Lines of one write a log measures where they are written; more go to Textual's thread worker."""


class GrowingLog(GrowsInPlace, Log):
    """The task's log and the full-screen log, which gain a line a second while a task is followed."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._render_line_cache: LRUCache[int, Strip] = LRUCache(PAINTED_LINES)

    def _render_line_strip(self, y: int, rich_style: Style) -> Strip:
        """Textual's `Log` stores a painted line in its line cache only while text is selected, and reads the
        cache only while none is: every line on screen was painted again at every repaint (a followed log
        repaints each second), each time with new styles for its selection offsets, which turned over Rich's
        style cache. A painted line is kept until its text, the styles or the selection change (`Log` drops
        the cache then), as Textual meant."""
        if self.text_selection is not None:
            return super()._render_line_strip(y, rich_style)
        painted = self._render_line_cache.get(y)
        if painted is None:
            painted = self._render_line_cache[y] = super()._render_line_strip(y, rich_style)
        return painted

    def _update_size(self, updates: int, lines: list[str]) -> None:  # type: ignore[override]  # its caller drops the worker
        """Textual's `Log` measures each write's lines in a thread worker of its own, so that a large write does
        not hold the loop: a followed log made a worker (with its context and a job for the executor's threads)
        every second. A few lines take microseconds to measure, and are measured here."""
        if len(lines) > MEASURED_ON_THE_LOOP:
            super()._update_size(updates, lines)
        elif lines:
            self._update_maximum_width(updates, max(cell_len(self._process_line(line)) for line in lines))

    def on_unmount(self) -> None:
        """A removed widget is a reference cycle (with its screen) that waits for the collector, which a
        console with a large heap runs a minute or more apart: the lines go now, not with it. An hour of a
        followed log is megabytes, and the soak opened and closed one every 90 s."""
        self.clear()
